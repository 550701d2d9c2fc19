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
	link := testVeth(t, nl, "m0", false)
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

// AddAltName and DelAltName trust the link as the caller last read it and
// send no dump; a stale read still ends in the right answer: EEXIST tells
// "added meanwhile" from "another link's", and a name or link gone
// meanwhile is not an error.
func TestAltNamesFromSnapshot(t *testing.T) {
	h, nl := testHandle(t)
	for _, name := range []string{"a0", "b0"} {
		la := netlink.NewLinkAttrs()
		la.Name = name
		if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "p"}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) plan.Link {
		t.Helper()
		l, err := nl.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := h.LinkByIndex(l.Attrs().Index)
		if err != nil {
			t.Fatal(err)
		}
		return pl
	}
	stale := read("a0") // no altnames yet
	if err := nl.LinkAddAltName(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: read("b0").Index}}, "eni-other"); err != nil {
		t.Fatal(err)
	}
	add := []struct {
		name string
		link plan.Link
		want AltNameResult
	}{
		{"device-number-1", stale, AltNameAdded},
		{"device-number-1", stale, AltNamePresent}, // added by the row above: EEXIST, then read afresh
		{"device-number-1", read("a0"), AltNamePresent},
		{"eni-other", stale, AltNameTaken},
	}
	for _, tc := range add {
		if got, err := h.AddAltName(tc.link, tc.name); err != nil || got != tc.want {
			t.Errorf("AddAltName(%v, %s) = %v, %v; want %v", tc.link.AltNames, tc.name, got, err, tc.want)
		}
	}
	if !read("a0").HasAltName("device-number-1") {
		t.Fatalf("a0 altnames: %v", read("a0").AltNames)
	}
	gone := plan.Link{Index: 99999, Name: "gone", AltNames: []string{"x"}}
	if _, err := h.AddAltName(gone, "y"); err == nil {
		t.Error("AddAltName on a missing link: no error")
	}
	del := []struct {
		name string
		link plan.Link
		want bool
	}{
		{"eni-other", stale, false}, // not listed on a0: another link's name is never touched
		{"device-number-1", read("a0"), true},
		{"device-number-1", read("a0"), false}, // already gone: not asked
		{"x", gone, false},                     // the link left
	}
	for _, tc := range del {
		if got, err := h.DelAltName(tc.link, tc.name); err != nil || got != tc.want {
			t.Errorf("DelAltName(%v, %s) = %v, %v; want %v", tc.link.AltNames, tc.name, got, err, tc.want)
		}
	}
	if !read("b0").HasAltName("eni-other") {
		t.Error("b0 lost its altname")
	}
}
