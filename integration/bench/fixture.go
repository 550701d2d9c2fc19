package main

import (
	"encoding/json"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
)

// The identical input both plugins get: one veth "ENI" in a fresh netns,
// renamed eth1, addressed, up, with a main default route via the subnet
// router, as vpc-eni (or host-device + static IPAM) leaves it.
const (
	ifName  = "eth1"
	eniAddr = "10.1.2.10/24"
	eniGW   = "10.1.2.1"
)

// fixture is one fresh namespace for one plugin's ADD (and DEL).
type fixture struct {
	ns  *h.Netns
	eni *h.ENI
}

// newFixture creates a namespace; with eni it also creates a veth ENI, and
// with moved it puts the ENI into the namespace fully configured.
func newFixture(sc *scope, eni, moved bool) *fixture {
	f := &fixture{ns: h.NewNetns(sc)}
	if eni {
		f.eni = h.NewENI(sc)
		if moved {
			f.eni.MoveInto(sc, f.ns, ifName, []string{eniAddr}, eniGW)
		}
	}
	return f
}

// prevResult is what the ENI plugin before us in a chain returned.
func (f *fixture) prevResult() map[string]any {
	mac := ""
	if f.eni != nil {
		mac = f.eni.MAC.String()
	}
	return map[string]any{
		"cniVersion": "1.0.0",
		"interfaces": []map[string]any{{"name": ifName, "mac": mac, "sandbox": f.ns.Path}},
		"ips":        []map[string]any{{"interface": 0, "address": eniAddr, "gateway": eniGW}},
	}
}

// conf renders the network configuration for plugin typ ("ec2-policy-routes"
// or "sbr") with extra top-level keys.
func (f *fixture) conf(typ string, extra map[string]any) []byte {
	c := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "bench",
		"type":       typ,
		"prevResult": f.prevResult(),
	}
	for k, v := range extra {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return b
}

// arrival moves the ENI into the namespace the way vpc-eni does (move,
// rename, address, up), in-process over netlink so the moment it becomes
// usable is known precisely. Prepare it before the plugin starts; fire is
// the scenario's timer.
type arrival struct {
	f   *fixture
	nsh netns.NsHandle
	nl  *netlink.Handle
}

func prepareArrival(sc *scope, f *fixture) *arrival {
	nsh, err := netns.GetFromPath(f.ns.Path)
	if err != nil {
		sc.Fatalf("open %s: %v", f.ns.Path, err)
	}
	sc.Cleanup(func() { _ = nsh.Close() })
	return &arrival{f: f, nsh: nsh, nl: f.ns.Handle(sc)}
}

// fire moves and configures the link and returns the time (CLOCK_MONOTONIC
// ns) just before the final "set up": from then on the plugin's wait can
// complete.
func (a *arrival) fire() (int64, error) {
	link, err := netlink.LinkByName(a.f.eni.Name)
	if err != nil {
		return 0, fmt.Errorf("lookup %s: %w", a.f.eni.Name, err)
	}
	if err := netlink.LinkSetNsFd(link, int(a.nsh)); err != nil {
		return 0, fmt.Errorf("move %s: %w", a.f.eni.Name, err)
	}
	l, err := a.nl.LinkByName(a.f.eni.Name)
	if err != nil {
		return 0, fmt.Errorf("lookup moved %s: %w", a.f.eni.Name, err)
	}
	if err := a.nl.LinkSetName(l, ifName); err != nil {
		return 0, fmt.Errorf("rename: %w", err)
	}
	addr, err := netlink.ParseAddr(eniAddr)
	if err != nil {
		return 0, err
	}
	if err := a.nl.AddrAdd(l, addr); err != nil {
		return 0, fmt.Errorf("address: %w", err)
	}
	t := mono()
	if err := a.nl.LinkSetUp(l); err != nil {
		return 0, fmt.Errorf("set up: %w", err)
	}
	return t, nil
}

// policyObjects counts what a plugin left in the namespace: rules other
// than the kernel's three defaults, and routes outside main and local.
func policyObjects(sc *scope, f *fixture) (rules, routes int) {
	nl := f.ns.Handle(sc)
	rs, err := nl.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		sc.Fatalf("rules: %v", err)
	}
	for _, r := range rs {
		if r.Table != 253 && r.Table != 254 && r.Table != 255 {
			rules++
		}
	}
	rt, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		sc.Fatalf("routes: %v", err)
	}
	for _, r := range rt {
		if r.Table != 254 && r.Table != 255 {
			routes++
		}
	}
	return rules, routes
}
