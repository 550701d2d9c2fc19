package linkwait

import (
	"errors"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// linkMsg builds the link notification the kernel sends: an ifinfomsg for
// index with its name, up or not, and (moved) IFLA_NEW_NETNSID.
func linkMsg(typ uint16, index int32, name string, up, moved bool) syscall.NetlinkMessage {
	ifi := nl.NewIfInfomsg(unix.AF_UNSPEC)
	ifi.Index = index
	if up {
		ifi.Flags = unix.IFF_UP
	}
	data := ifi.Serialize()
	data = append(data, nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)).Serialize()...)
	if moved {
		data = append(data, nl.NewRtAttr(unix.IFLA_NEW_NETNSID, nl.Uint32Attr(0)).Serialize()...)
	}
	return syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: typ, Len: uint32(unix.SizeofNlMsghdr + len(data))}, Data: data}
}

// TestWaiterDecision: the events a waiting ADD for eth0 sees, and how each
// sequence ends: up (found), gone (ErrGone, code 11), or still waiting.
func TestWaiterDecision(t *testing.T) {
	const seen = 7 // eth0, seen down before the events
	newl := func(i int32, name string, up bool) syscall.NetlinkMessage {
		return linkMsg(unix.RTM_NEWLINK, i, name, up, false)
	}
	dell := func(i int32, name string, moved bool) syscall.NetlinkMessage {
		return linkMsg(unix.RTM_DELLINK, i, name, false, moved)
	}
	for _, c := range []struct {
		name   string
		events []syscall.NetlinkMessage
		want   string // "up", "gone", "waiting"
	}{
		{"comes up", []syscall.NetlinkMessage{newl(seen, "eth0", true)}, "up"},
		{"deleted", []syscall.NetlinkMessage{dell(seen, "eth0", false)}, "gone"},
		{"moved out", []syscall.NetlinkMessage{newl(seen, "eth0", false), dell(seen, "eth0", true)}, "gone"},
		// vpc-eni's DEL: ip link set eth0 name ecsxyz; ip link set ecsxyz netns 1.
		{"renamed, then moved out", []syscall.NetlinkMessage{newl(seen, "ecsxyz", false), dell(seen, "ecsxyz", true)}, "gone"},
		{"renamed, then deleted", []syscall.NetlinkMessage{newl(seen, "ecsxyz", false), dell(seen, "ecsxyz", false)}, "gone"},
		{"renamed, NEWLINK naming another namespace", []syscall.NetlinkMessage{newl(seen, "ecsxyz", false), linkMsg(unix.RTM_NEWLINK, seen, "ecsxyz", false, true)}, "gone"},
		{"renamed away, stays", []syscall.NetlinkMessage{newl(seen, "ecsxyz", false)}, "waiting"},
		{"renamed away and back, up", []syscall.NetlinkMessage{newl(seen, "ecsxyz", false), newl(seen, "eth0", true)}, "up"},
		// Another link takes the name: it is the one tracked now; the
		// old one leaving does not end the wait, the new one does.
		{"replaced, old leaves", []syscall.NetlinkMessage{newl(seen, "ecsxyz", false), newl(9, "eth0", false), dell(seen, "ecsxyz", true)}, "waiting"},
		{"replaced, new leaves", []syscall.NetlinkMessage{newl(seen, "ecsxyz", false), newl(9, "eth0", false), dell(9, "eth0", false)}, "gone"},
		{"another link leaves", []syscall.NetlinkMessage{dell(8, "eth1", true), newl(8, "eth1", true)}, "waiting"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := waiter{name: "eth0", tracked: seen}
			got := "waiting"
			for _, m := range c.events {
				link, done, err := w.event(m)
				switch {
				case errors.Is(err, ErrGone):
					got = "gone"
				case err != nil:
					t.Fatalf("event: %v", err)
				case done && link.Attrs().Name == "eth0":
					got = "up"
				case done:
					t.Fatalf("done with %v", link.Attrs())
				}
				if got != "waiting" {
					break
				}
			}
			if got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}

// TestWaiterNothingSeen: before a link was seen under the name, no other
// link's departure ends the wait.
func TestWaiterNothingSeen(t *testing.T) {
	w := waiter{name: "eth0"}
	for _, m := range []syscall.NetlinkMessage{
		linkMsg(unix.RTM_DELLINK, 5, "ecsxyz", false, true),
		linkMsg(unix.RTM_NEWLINK, 6, "tmp", false, false),
	} {
		if _, done, err := w.event(m); done || err != nil {
			t.Fatalf("event ended the wait: %v %v", done, err)
		}
	}
}
