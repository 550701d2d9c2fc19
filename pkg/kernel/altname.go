package kernel

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
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

// AddAltName adds name as an alternative name of link
// (`ip link property add dev X altname name`), link as last read: a name it
// already lists is not asked again, so the common ADD sends one request per
// new name and no link dump. A name the link already has is not an error;
// neither is one taken by another link (told apart, on EEXIST, by reading
// the link afresh).
func (h *Handle) AddAltName(link plan.Link, name string) (AltNameResult, error) {
	if link.HasAltName(name) {
		return AltNamePresent, nil
	}
	if err := h.nl.LinkAddAltName(byIndex(link.Index), name); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// Raced with another writer, or the name is another link's.
			if l, err := h.LinkByIndex(link.Index); err == nil && l.HasAltName(name) {
				return AltNamePresent, nil
			}
			return AltNameTaken, nil
		}
		return 0, fmt.Errorf("add altname %s to %s: %w", name, link.Name, err)
	}
	return AltNameAdded, nil
}

// byIndex names a link for a request that addresses it by index alone
// (altname, alias): no dump of the link to build it.
func byIndex(index int) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
}

// DelAltName removes name from link, as last read, if it lists it; a link
// or name gone meanwhile is not an error. It reports whether it removed
// something.
func (h *Handle) DelAltName(link plan.Link, name string) (bool, error) {
	if !link.HasAltName(name) {
		return false, nil
	}
	if err := h.nl.LinkDelAltName(byIndex(link.Index), name); err != nil {
		if isGone(err) {
			return false, nil
		}
		return false, fmt.Errorf("remove altname %s from %s: %w", name, link.Name, err)
	}
	return true, nil
}

// SetAlias sets (or with "" clears) the alias of the link with this index;
// a link that is gone is not an error.
func (h *Handle) SetAlias(index int, alias string) error {
	if err := h.nl.LinkSetAlias(byIndex(index), alias); err != nil && !isGone(err) {
		return fmt.Errorf("set alias of link #%d: %w", index, err)
	}
	return nil
}
