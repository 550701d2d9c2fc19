package kernel

import (
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// The ownership mark is the link alias: Links reports it as plain data,
// SetAlias sets and clears it, and it follows the link through a rename.
func TestLinksAndAliasMark(t *testing.T) {
	h, nl := testHandle(t)
	la := netlink.NewLinkAttrs()
	la.Name = "m0"
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "m0p"}); err != nil {
		t.Fatal(err)
	}
	link, _ := nl.LinkByName("m0")
	idx := link.Attrs().Index
	mark := plan.Attachment{ContainerID: "c", IfName: "eth0"}.Mark("m0")
	if err := h.SetAlias(idx, mark); err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetName(link, "renamed"); err != nil {
		t.Fatal(err)
	}
	find := func() plan.Link {
		t.Helper()
		links, err := h.Links()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Index == idx {
				return l
			}
		}
		t.Fatalf("link #%d not listed: %+v", idx, links)
		return plan.Link{}
	}
	if l := find(); l.Name != "renamed" || l.Alias != mark || l.MAC != link.Attrs().HardwareAddr.String() {
		t.Errorf("after rename: %+v, want alias %q", l, mark)
	}
	if err := h.SetAlias(idx, ""); err != nil {
		t.Fatal(err)
	}
	if l := find(); l.Alias != "" {
		t.Errorf("alias not cleared: %q", l.Alias)
	}
	if err := h.SetAlias(99999, mark); err != nil {
		t.Errorf("SetAlias on a gone link: %v", err)
	}
}
