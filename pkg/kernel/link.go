package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/linkwait"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// ErrNoLink means the namespace has no link of that name or index.
var ErrNoLink = errors.New("no such link")

// linkOf is the one conversion of a netlink link into plan data.
func linkOf(l netlink.Link) plan.Link {
	a := l.Attrs()
	out := plan.Link{
		Index: a.Index, Name: a.Name, Alias: a.Alias, Kind: l.Type(),
		AltNames: a.AltNames, Up: a.Flags&net.FlagUp != 0,
	}
	if len(a.HardwareAddr) > 0 {
		out.MAC = a.HardwareAddr.String()
	}
	return out
}

// Links lists the namespace's links.
func (h *Handle) Links() ([]plan.Link, error) {
	links, err := retryDump(h.nl.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := make([]plan.Link, 0, len(links))
	for _, l := range links {
		out = append(out, linkOf(l))
	}
	return out, nil
}

// LinkByName returns the link called name (current name or altname), or
// an error wrapping ErrNoLink.
func (h *Handle) LinkByName(name string) (plan.Link, error) {
	l, err := h.nl.LinkByName(name)
	if err != nil {
		return plan.Link{}, linkError(name, err)
	}
	return linkOf(l), nil
}

// LinkByIndex returns the link with this index, or an error wrapping
// ErrNoLink.
func (h *Handle) LinkByIndex(index int) (plan.Link, error) {
	l, err := h.nl.LinkByIndex(index)
	if err != nil {
		return plan.Link{}, linkError(fmt.Sprintf("#%d", index), err)
	}
	return linkOf(l), nil
}

func linkError(which string, err error) error {
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || isGone(err) {
		return fmt.Errorf("link %s: %w", which, ErrNoLink)
	}
	return fmt.Errorf("look up link %s: %w", which, err)
}

// WaitLink waits, event-driven and bounded by ctx, for the link called
// name to exist and be up (package linkwait).
func (h *Handle) WaitLink(ctx context.Context, name string) (plan.Link, error) {
	l, err := linkwait.Wait(ctx, h.nsfd, h.nl, name)
	if err != nil {
		return plan.Link{}, err
	}
	return linkOf(l), nil
}
