package plugin

import (
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/netnstest"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// rejectsNetns makes a namespace with an up veth "eth0" addressed
// 10.0.1.25/24 and a main default route via 10.0.1.1, as an ENI plugin
// leaves it, and returns the CNI_NETNS path and a handle into it. Needs root
// (skips otherwise); everything goes with the namespace in t.Cleanup.
func rejectsNetns(t *testing.T) (string, *netlink.Handle, netlink.Link) {
	t.Helper()
	nsh, nl := netnstest.New(t)
	link := testENI(t, nl, "eth0", "peer0", "", "10.0.1.25/24")
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP("10.0.1.1").To4()}); err != nil {
		t.Fatal(err)
	}
	return netnsPath(nsh), nl, link
}

// runVerb runs one verb in process as the ECS agent would (standalone,
// cniVersion 0.3.0, IMDS off), with the result on stdout discarded.
func runVerb(t *testing.T, verb, netnsPath string) error {
	t.Helper()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	stdout := os.Stdout
	os.Stdout = devnull
	defer func() { os.Stdout = stdout }()
	p := &Plugin{StateDir: t.TempDir()}
	args := &skel.CmdArgs{ContainerID: "c", IfName: "eth0", Netns: netnsPath,
		StdinData: []byte(`{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","imds":{"enabled":false}}`)}
	switch verb {
	case "ADD":
		return p.Add(args)
	case "CHECK":
		return p.Check(args)
	case "DEL":
		return p.Del(args)
	}
	t.Fatalf("unknown verb %s", verb)
	return nil
}

// ourRoutes lists the routes of ours (protocol 236) in every table.
func ourRoutes(t *testing.T, nl *netlink.Handle) []netlink.Route {
	t.Helper()
	routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: plan.Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	return routes
}

// A main table holding a route of a type that is not a reject (here an
// AnyIP "local" route, `ip route add local 10.9.0.0/24 dev lo table main`)
// must not be copied into our table: only blackhole, unreachable and
// prohibit routes are. Copying it made every ADD fail with code 5 ("add
// route unicast 10.9.0.0/24 table 10000: invalid argument").
func TestAddCopiesOnlyRejectRoutes(t *testing.T) {
	path, nl, _ := rejectsNetns(t)
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	_, anyIP, _ := net.ParseCIDR("10.9.0.0/24")
	if err := nl.RouteAdd(&netlink.Route{Dst: anyIP, LinkIndex: lo.Attrs().Index, Type: unix.RTN_LOCAL,
		Scope: netlink.SCOPE_HOST, Table: unix.RT_TABLE_MAIN}); err != nil {
		t.Fatal(err)
	}
	_, thrown, _ := net.ParseCIDR("10.8.0.0/16")
	if err := nl.RouteAdd(&netlink.Route{Dst: thrown, Type: unix.RTN_THROW, Table: unix.RT_TABLE_MAIN}); err != nil {
		t.Fatal(err)
	}
	_, imds, _ := net.ParseCIDR("169.254.169.254/32")
	if err := nl.RouteAdd(&netlink.Route{Dst: imds, Type: unix.RTN_BLACKHOLE, Table: unix.RT_TABLE_MAIN}); err != nil {
		t.Fatal(err)
	}

	if err := runVerb(t, "ADD", path); err != nil {
		t.Fatalf("ADD with a local and a throw route in main: %v", err)
	}
	var copies []string
	for _, r := range ourRoutes(t, nl) {
		if r.Type != unix.RTN_UNICAST {
			copies = append(copies, fmt.Sprintf("type %d %s", r.Type, r.Dst))
		}
	}
	if len(copies) != 1 || copies[0] != fmt.Sprintf("type %d 169.254.169.254/32", unix.RTN_BLACKHOLE) {
		t.Fatalf("copies of main routes in our table: %q, want only the blackhole", copies)
	}
	if err := runVerb(t, "CHECK", path); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := runVerb(t, "DEL", path); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if left := ourRoutes(t, nl); len(left) != 0 {
		t.Fatalf("DEL left routes: %v", left)
	}
}

// A reject route keeps its metric when copied. Main may hold a fallback
// "unreachable default" at a high metric (a common guard, e.g.
// `ip route add unreachable default metric 4278198272`) and two rejects for
// one destination at different metrics; copied at metric 0, the first
// collided with the table's own default route and the second with the
// first (EEXIST), so every ADD failed with code 5 — and had it succeeded,
// the copy would have outranked the default route it only backs up.
func TestAddKeepsRejectMetrics(t *testing.T) {
	path, nl, _ := rejectsNetns(t)
	_, dflt, _ := net.ParseCIDR("0.0.0.0/0")
	_, blocked, _ := net.ParseCIDR("10.7.0.0/16")
	for _, r := range []netlink.Route{
		{Dst: dflt, Type: unix.RTN_UNREACHABLE, Priority: 4278198272, Table: unix.RT_TABLE_MAIN},
		{Dst: blocked, Type: unix.RTN_BLACKHOLE, Priority: 50, Table: unix.RT_TABLE_MAIN},
		{Dst: blocked, Type: unix.RTN_UNREACHABLE, Priority: 60, Table: unix.RT_TABLE_MAIN},
	} {
		if err := nl.RouteAdd(&r); err != nil {
			t.Fatalf("main %v: %v", r, err)
		}
	}

	if err := runVerb(t, "ADD", path); err != nil {
		t.Fatalf("ADD with metric'd reject routes in main: %v", err)
	}
	copies := map[string]bool{}
	for _, r := range ourRoutes(t, nl) {
		if r.Type != unix.RTN_UNICAST {
			copies[fmt.Sprintf("type %d %s metric %d", r.Type, r.Dst, r.Priority)] = true
		}
	}
	for _, want := range []string{
		fmt.Sprintf("type %d 0.0.0.0/0 metric 4278198272", unix.RTN_UNREACHABLE),
		fmt.Sprintf("type %d 10.7.0.0/16 metric 50", unix.RTN_BLACKHOLE),
		fmt.Sprintf("type %d 10.7.0.0/16 metric 60", unix.RTN_UNREACHABLE),
	} {
		if !copies[want] {
			t.Errorf("copy %q missing; copies: %v", want, copies)
		}
	}
	// Traffic from the ENI address still leaves via the table's default
	// route: the copied fallback does not outrank it.
	res, err := nl.RouteGetWithOptions(net.ParseIP("192.0.2.9"), &netlink.RouteGetOptions{SrcAddr: net.ParseIP("10.0.1.25")})
	if err != nil || len(res) != 1 || !res[0].Gw.Equal(net.ParseIP("10.0.1.1")) || res[0].Table != 10000 {
		t.Fatalf("route get 192.0.2.9 from 10.0.1.25: %v %v, want via 10.0.1.1 table 10000", res, err)
	}
	// A retried ADD converges (the read-back equals the plan) and CHECK
	// finds every copy.
	before := len(ourRoutes(t, nl))
	if err := runVerb(t, "ADD", path); err != nil {
		t.Fatalf("second ADD: %v", err)
	}
	if after := len(ourRoutes(t, nl)); after != before {
		t.Fatalf("second ADD changed the route count %d -> %d", before, after)
	}
	if err := runVerb(t, "CHECK", path); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := runVerb(t, "DEL", path); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if left := ourRoutes(t, nl); len(left) != 0 {
		t.Fatalf("DEL left routes: %v", left)
	}
}
