package kernel

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// TestMetricsRoundTrip (issue 22.6): main's route metrics are read, a
// table's routes are installed with them and read back equal (a retried
// ADD converges), and a metric changed in the plan is applied by the diff.
func TestMetricsRoundTrip(t *testing.T) {
	h, nl := testHandle(t)
	link := testVeth(t, nl, "m0", true, "10.0.3.10/24", "2001:db8:3::10/64")
	idx := link.Attrs().Index
	mainRoutes := []*netlink.Route{
		{LinkIndex: idx, Gw: netip.MustParseAddr("10.0.3.1").AsSlice(), MTU: 1500, AdvMSS: 1460},
		{LinkIndex: idx, Dst: plan.IPNet(netip.MustParsePrefix("10.100.0.0/16")), Gw: netip.MustParseAddr("10.0.3.254").AsSlice(), MTU: 1300, MTULock: true, Protocol: 4},
		{LinkIndex: idx, Dst: plan.IPNet(netip.MustParsePrefix("2001:db8:100::/48")), Gw: netip.MustParseAddr("2001:db8:3::fe").AsSlice(), MTU: 1400, Hoplimit: 9, InitCwnd: 10, InitRwnd: 20, Protocol: 4},
	}
	for _, r := range mainRoutes {
		if err := nl.RouteAdd(r); err != nil {
			t.Fatalf("main route %v: %v", r, err)
		}
	}
	st, err := h.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	ifc := plan.Interface{Name: "m0", Index: idx}
	ifc.Sources, ifc.Subnets = plan.AddressFacts([]netip.Prefix{netip.MustParsePrefix("10.0.3.10/24"), netip.MustParsePrefix("2001:db8:3::10/64")})
	ifc.Gateways = []netip.Addr{netip.MustParseAddr("10.0.3.1"), netip.MustParseAddr("2001:db8:3::1")}
	res, err := plan.Resolve(plan.Settings{TableBase: plan.DefaultTableBase}, []plan.Candidate{{Interface: ifc}}, st.Observed())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Apply(plan.Compute(res.Plan, nil, nil)); err != nil {
		t.Fatal(err)
	}
	st, err = h.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if d := plan.Compute(res.Plan, st.OurRules, st.OurRoutes); !d.Empty() {
		t.Fatalf("read-back differs from the plan: +%v -%v", d.AddRoutes, d.DelRoutes)
	}
	for dst, want := range map[string]string{
		"0.0.0.0/0":         "mtu 1500 lock false advmss 1460 hoplimit 0 initcwnd 0 initrwnd 0",
		"10.100.0.0/16":     "mtu 1300 lock true advmss 0 hoplimit 0 initcwnd 0 initrwnd 0",
		"2001:db8:100::/48": "mtu 1400 lock false advmss 0 hoplimit 9 initcwnd 10 initrwnd 20",
	} {
		if got := tableMetrics(t, nl, dst); got != want {
			t.Errorf("table 10000 %s: %s, want %s", dst, got, want)
		}
	}
	// main's default route changes its mtu: the next ADD replaces ours.
	mainRoutes[0].MTU = 9001
	if err := nl.RouteReplace(mainRoutes[0]); err != nil {
		t.Fatal(err)
	}
	if st, err = h.ReadState(); err != nil {
		t.Fatal(err)
	}
	res2, err := plan.Resolve(plan.Settings{TableBase: plan.DefaultTableBase}, []plan.Candidate{{Interface: ifc}}, st.Observed())
	if err != nil {
		t.Fatal(err)
	}
	rules, routes := st.Observed().InTables(res2.Managed)
	if _, err := h.Apply(plan.Compute(res2.Plan, rules, routes)); err != nil {
		t.Fatal(err)
	}
	if got := tableMetrics(t, nl, "0.0.0.0/0"); got != "mtu 9001 lock false advmss 1460 hoplimit 0 initcwnd 0 initrwnd 0" {
		t.Fatalf("default route not converged: %s", got)
	}
}

// tableMetrics reads, straight from the kernel, the metrics of the route
// to dst in table 10000.
func tableMetrics(t *testing.T, nl *netlink.Handle, dst string) string {
	t.Helper()
	routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 10000}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		d := "0.0.0.0/0"
		if r.Dst != nil {
			d = r.Dst.String()
		}
		if d == dst {
			return fmt.Sprintf("mtu %d lock %v advmss %d hoplimit %d initcwnd %d initrwnd %d", r.MTU, r.MTULock, r.AdvMSS, r.Hoplimit, r.InitCwnd, r.InitRwnd)
		}
	}
	t.Fatalf("no route to %s in table 10000", dst)
	return ""
}
