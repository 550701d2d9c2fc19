// Package linkwait waits, event-driven and bounded by a context, for a link
// to exist and be administratively up inside a network namespace.
//
// This is the fix for the ec2-net-utils bug this project exists for: its
// start path polled /sys/class/net with `sleep 0.1` forever. Here the order is
// subscribe to RTNLGRP_LINK first, then look at current state, then sleep in
// the kernel until an event or the context's deadline: no polling, no missed
// event between the look and the wait, and nothing left running afterwards.
// (One look before subscribing serves the common case, a link already up,
// without the subscription.)
package linkwait

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/blocking"
)

// ErrGone means the link existed in the namespace and then left it (deleted,
// or moved to another namespace) before it came up.
var ErrGone = errors.New("link left the network namespace")

// Wait returns the link named name once it exists and has IFF_UP set. h must
// be bound to the namespace whose fd is nsfd. It returns ctx.Err() (wrapped)
// when the context ends first, and ErrGone when the link it saw leaves.
func Wait(ctx context.Context, nsfd int, h *netlink.Handle, name string) (netlink.Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := waiter{name: name}
	// Fast path: the ENI plugin ran first, so the link is usually up
	// already; one lookup then, and no subscription (a socket made inside
	// the namespace: ~50 µs warm, more in a fresh process).
	if link, done, err := w.lookup(h); done || err != nil {
		return link, err
	}
	blocking.Ahead(ctx) // about to wait: let SIGTERM end it (see package blocking)
	sock, err := nl.SubscribeAt(netns.NsHandle(nsfd), netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_LINK)
	if err != nil {
		return nil, fmt.Errorf("subscribe to link events: %w", err)
	}
	// The socket sits in the Go netpoller: closing it wakes a blocked
	// Receive, which is how the deadline and SIGTERM end the wait.
	var once sync.Once
	closeSock := func() { once.Do(sock.Close) }
	defer closeSock()
	stop := context.AfterFunc(ctx, closeSock)
	defer stop()

	// Subscribed first, then look again, so any change after this look
	// arrives as an event.
	if link, done, err := w.lookup(h); done || err != nil {
		return link, err
	}
	for {
		msgs, _, err := sock.Receive()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if errors.Is(err, unix.ENOBUFS) {
			// Events were dropped: current state is the truth.
			if link, done, err := w.lookup(h); done || err != nil {
				return link, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read link events: %w", err)
		}
		for _, m := range msgs {
			if link, done, err := w.event(m); done || err != nil {
				return link, err
			}
		}
	}
}

// waiter decides, from lookups and link events, when the wait ends. Once a
// link is seen under the name, its index is kept through a rename: vpc-eni's
// DEL renames the ENI (eth0 → ecs<mac>) and then moves it to the host, and
// the move is an event for the index only. (A link that later takes the
// name replaces it as the one tracked.)
type waiter struct {
	name    string
	tracked int // index of the link last seen under name, not up; 0: none yet
}

func (w *waiter) lookup(h *netlink.Handle) (netlink.Link, bool, error) {
	link, err := h.LinkByName(w.name)
	if err != nil {
		if !isNotFound(err) {
			return nil, false, fmt.Errorf("look up link %s: %w", w.name, err)
		}
		if w.tracked == 0 {
			return nil, false, nil
		}
		// The name is free: the tracked link left, or was renamed away
		// and is still here (then keep waiting for the name).
		if _, err := h.LinkByIndex(w.tracked); err != nil {
			if isNotFound(err) {
				return nil, false, ErrGone
			}
			return nil, false, fmt.Errorf("look up link #%d (was %s): %w", w.tracked, w.name, err)
		}
		return nil, false, nil
	}
	return w.consider(link)
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

func (w *waiter) consider(link netlink.Link) (netlink.Link, bool, error) {
	if link.Attrs().Flags&net.FlagUp != 0 {
		return link, true, nil
	}
	w.tracked = link.Attrs().Index
	return nil, false, nil
}

func (w *waiter) event(m syscall.NetlinkMessage) (netlink.Link, bool, error) {
	switch m.Header.Type {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
	default:
		return nil, false, nil
	}
	if len(m.Data) < unix.SizeofIfInfomsg {
		return nil, false, nil
	}
	ifi := nl.DeserializeIfInfomsg(m.Data)
	idx := int(ifi.Index)
	// The tracked link deleted, or moved to another namespace: the move
	// is a DELLINK here carrying IFLA_NEW_NETNSID (a NEWLINK carrying it
	// is taken the same way). Whatever it is called by now.
	if w.tracked != 0 && idx == w.tracked && (m.Header.Type == unix.RTM_DELLINK || movedAway(m.Data)) {
		return nil, false, ErrGone
	}
	if m.Header.Type == unix.RTM_DELLINK {
		return nil, false, nil
	}
	hdr := unix.NlMsghdr(m.Header)
	link, err := netlink.LinkDeserialize(&hdr, m.Data)
	if err != nil {
		return nil, false, nil //nolint:nilerr // an undecodable notification carries nothing to act on
	}
	if link.Attrs().Name == w.name {
		return w.consider(link)
	}
	return nil, false, nil // another link, or the tracked one renamed away: still tracked
}

// movedAway reports whether a link message names the namespace the link
// moved to (IFLA_NEW_NETNSID).
func movedAway(data []byte) bool {
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfInfomsg:])
	if err != nil {
		return false
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.IFLA_NEW_NETNSID {
			return true
		}
	}
	return false
}
