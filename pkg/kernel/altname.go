package kernel

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AltNameResult says what AddAltName did.
type AltNameResult int

const (
	// AltNameAdded: the name was added by this call.
	AltNameAdded AltNameResult = iota
	// AltNamePresent: the link already had it (someone else added it).
	AltNamePresent
	// AltNameTaken: another link in the namespace uses the name.
	AltNameTaken
)

// AddAltName adds name as an alternative name of the link with this index
// (`ip link property add dev X altname name`). A name the link already has
// is not an error; neither is one taken by another link.
func (h *Handle) AddAltName(index int, name string) (AltNameResult, error) {
	link, err := h.nl.LinkByIndex(index)
	if err != nil {
		return 0, fmt.Errorf("link #%d: %w", index, err)
	}
	if slices.Contains(link.Attrs().AltNames, name) {
		return AltNamePresent, nil
	}
	if err := h.nl.LinkAddAltName(link, name); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// Raced with another writer, or the name is another link's.
			if l, err := h.nl.LinkByIndex(index); err == nil && slices.Contains(l.Attrs().AltNames, name) {
				return AltNamePresent, nil
			}
			return AltNameTaken, nil
		}
		return 0, fmt.Errorf("add altname %s to %s: %w", name, link.Attrs().Name, err)
	}
	return AltNameAdded, nil
}

// DelAltName removes name from the link with this index if the link still
// has it; a missing link or name is not an error. It reports whether it
// removed something.
func (h *Handle) DelAltName(index int, name string) (bool, error) {
	link, err := h.nl.LinkByIndex(index)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || isGone(err) {
			return false, nil
		}
		return false, fmt.Errorf("link #%d: %w", index, err)
	}
	if !slices.Contains(link.Attrs().AltNames, name) {
		return false, nil
	}
	if err := h.nl.LinkDelAltName(link, name); err != nil {
		if isGone(err) {
			return false, nil
		}
		return false, fmt.Errorf("remove altname %s from %s: %w", name, link.Attrs().Name, err)
	}
	return true, nil
}

// SetAlias sets (or with "" clears) the alias of the link with this index;
// a link that is gone is not an error.
func (h *Handle) SetAlias(index int, alias string) error {
	link, err := h.nl.LinkByIndex(index)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || isGone(err) {
			return nil
		}
		return fmt.Errorf("link #%d: %w", index, err)
	}
	if err := h.nl.LinkSetAlias(link, alias); err != nil && !isGone(err) {
		return fmt.Errorf("set alias of %s: %w", link.Attrs().Name, err)
	}
	return nil
}
