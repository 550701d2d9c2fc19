package kernel

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// TestOnLinkAndCopiesReadBack: onlink default routes (IPv4 /32 and IPv6
// /128 with gateways outside) and a copied route apply and read back equal
// to the plan, so CHECK and a retried ADD see them as present; ReadState
// reports main's routes with their protocol and foreign objects per table.
func TestOnLinkAndCopiesReadBack(t *testing.T) {
	h, nl := testHandle(t)
	link := testVeth(t, nl, "k1", true, "10.9.3.10/32", "2001:db8:3::10/128")
	onlinkMain := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: plan.IPNet(netip.MustParsePrefix("10.100.0.0/16")),
		Gw: netip.MustParseAddr("10.9.3.254").AsSlice(), Flags: int(netlink.FLAG_ONLINK), Protocol: 4}
	if err := nl.RouteAdd(onlinkMain); err != nil {
		t.Fatal(err)
	}
	foreign := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: plan.IPNet(netip.MustParsePrefix("10.8.0.0/16")), Table: 10002, Protocol: 4}
	if err := nl.RouteAdd(foreign); err != nil {
		t.Fatal(err)
	}
	st, err := h.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := st.Foreign[10002]; !ok || f.String() != "route 10.8.0.0/16 proto static (4)" {
		t.Fatalf("foreign in 10002: %+v", st.Foreign)
	}
	ifc := plan.Interface{Name: "k1", Index: link.Attrs().Index, Table: 10001, Priority: 10001,
		Gateways: []netip.Addr{netip.MustParseAddr("10.9.3.1"), netip.MustParseAddr("2001:db8:3::1")}}
	ifc.Sources, ifc.Subnets = plan.AddressFacts([]netip.Prefix{netip.MustParsePrefix("10.9.3.10/32"), netip.MustParsePrefix("2001:db8:3::10/128")})
	ifc.MainRoutes = plan.MainRoutesVia(st.MainRoutes, ifc.Index)
	if len(ifc.MainRoutes) != 1 || !ifc.MainRoutes[0].OnLink {
		t.Fatalf("main routes via k1: %+v (all: %+v)", ifc.MainRoutes, st.MainRoutes)
	}
	want, err := plan.Build([]plan.Interface{ifc}, st.MainRejects)
	if err != nil {
		t.Fatal(err)
	}
	var onlink []string
	for _, r := range want.Routes {
		if r.OnLink {
			onlink = append(onlink, r.String())
		}
	}
	if got := strings.Join(onlink, "; "); got != strings.ReplaceAll("route 0.0.0.0/0 via 10.9.3.1 dev #N onlink table 10001; route ::/0 via 2001:db8:3::1 dev #N onlink table 10001; route 10.100.0.0/16 via 10.9.3.254 dev #N onlink table 10001", "#N", fmt.Sprintf("#%d", ifc.Index)) {
		t.Fatalf("onlink routes: %s", got)
	}
	if _, err := h.Apply(plan.Compute(want, nil, nil)); err != nil {
		t.Fatal(err)
	}
	st, err = h.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if d := plan.Compute(want, st.OurRules, st.OurRoutes); !d.Empty() {
		t.Fatalf("read-back differs from the plan:\nwant %v\nhave %v", want.Routes, st.OurRoutes)
	}
}
