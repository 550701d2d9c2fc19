package kernel

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/netnstest"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

func testHandle(t *testing.T) (*Handle, *netlink.Handle) {
	t.Helper()
	nsh, nl := netnstest.New(t)
	h, err := NewHandle(uintptr(nsh))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, nl
}

// testVeth adds a veth named name (peer name+"p") in nl's namespace with
// addrs (no DAD, so IPv6 ones are usable at once) and, if up, sets it up.
func testVeth(t *testing.T, nl *netlink.Handle, name string, up bool, addrs ...string) netlink.Link {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
	link, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		addr.Flags = 0x02 // IFA_F_NODAD
		if err := nl.AddrAdd(link, addr); err != nil {
			t.Fatal(err)
		}
	}
	if up {
		if err := nl.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	return link
}

func TestApplyReadBackUndo(t *testing.T) {
	h, nl := testHandle(t)
	link := testVeth(t, nl, "k0", true, "10.9.0.5/24")
	// Foreign objects sharing source, table and priority, other protocol.
	foreign := netlink.NewRule()
	foreign.Src = &net.IPNet{IP: net.ParseIP("10.9.0.5").To4(), Mask: net.CIDRMask(32, 32)}
	foreign.Table, foreign.Priority = 10000, 500
	if err := nl.RuleAdd(foreign); err != nil {
		t.Fatal(err)
	}
	_, bh, _ := net.ParseCIDR("169.254.169.254/32")
	if err := nl.RouteAdd(&netlink.Route{Dst: bh, Type: int(plan.Blackhole), Table: 254}); err != nil {
		t.Fatal(err)
	}

	st, err := h.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.OurRules)+len(st.OurRoutes) != 0 || !st.UsedTables[10000] || len(st.MainRejects) != 1 {
		t.Fatalf("initial state: %+v", st)
	}
	ifc := plan.Interface{Name: "k0", Index: link.Attrs().Index, Table: 10001, Priority: 10001,
		Gateways: []netip.Addr{netip.MustParseAddr("10.9.0.1")}}
	ifc.Sources, ifc.Subnets = plan.AddressFacts([]netip.Prefix{netip.MustParsePrefix("10.9.0.5/24")})
	want, err := plan.Build([]plan.Interface{ifc}, st.MainRejects)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := h.Apply(plan.Compute(want, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 4 { // rule, default, on-link, blackhole copy
		t.Fatalf("changes: %+v", changes)
	}
	st, err = h.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if d := plan.Compute(want, st.OurRules, st.OurRoutes); !d.Empty() {
		t.Fatalf("read-back differs from the plan: %+v", d)
	}
	if st.OurTableByLink[link.Attrs().Index] != 10001 {
		t.Fatalf("table by link: %v", st.OurTableByLink)
	}
	h.Undo(changes)
	st, err = h.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.OurRules)+len(st.OurRoutes) != 0 {
		t.Fatalf("undo left: %+v %+v", st.OurRules, st.OurRoutes)
	}
	rules, _ := nl.RuleList(netlink.FAMILY_V4)
	found := false
	for _, r := range rules {
		found = found || (r.Priority == 500 && r.Table == 10000)
	}
	if !found {
		t.Fatal("foreign rule was removed")
	}
}
