package plan

import (
	"cmp"
	"net/netip"
	"slices"
)

// Routing protocols (rtnetlink RTPROT_*) whose main routes are never
// carried into a policy table: the kernel's own (connected prefixes, already
// the table's on-link routes) and router advertisements (they expire, a
// copy would not).
const (
	protoKernel = 2
	protoRA     = 9
)

// MainRoute is a unicast route of the main table that is not ours, with the
// rtnetlink protocol that installed it.
type MainRoute struct {
	Route
	Protocol int
}

// MainRoutesVia selects the main routes the traffic of the link at
// linkIndex may need in its policy table: unicast, through that link alone,
// not the default route (the gateway is decided apart), not kernel- or
// RA-made, not link-local or multicast destinations.
func MainRoutesVia(main []MainRoute, linkIndex int) []Route {
	var out []Route
	for _, m := range main {
		r := m.Route
		if r.Type != Unicast || r.LinkIndex != linkIndex || r.Dst.Bits() == 0 ||
			m.Protocol == protoKernel || m.Protocol == protoRA || m.Protocol == Protocol ||
			r.Dst.Addr().IsLinkLocalUnicast() || r.Dst.Addr().IsMulticast() {
			continue
		}
		out = append(out, Route{Dst: r.Dst.Masked(), Type: Unicast, Gateway: r.Gateway, OnLink: r.OnLink, Metrics: r.Metrics})
	}
	return out
}

// MainDefaultsVia selects main's default routes through the link at
// linkIndex alone, whatever made them (a router advertisement's too): the
// table's default route takes its metrics from them (Interface.Defaults).
func MainDefaultsVia(main []MainRoute, linkIndex int) []Route {
	var out []Route
	for _, m := range main {
		r := m.Route
		if r.Type == Unicast && r.LinkIndex == linkIndex && r.Dst.Bits() == 0 && m.Protocol != Protocol {
			out = append(out, Route{Dst: r.Dst, Type: Unicast, Gateway: r.Gateway, Metrics: r.Metrics})
		}
	}
	return out
}

// linkCopies decides which of ifc.Routes (prevResult) and ifc.MainRoutes
// the table carries: a route of a family the interface sources, whose
// destination none of the table's own routes (own, blocks) has, and whose
// next hop differs from the one the table would choose for that
// destination without it. So a route via the table's default gateway is
// not copied (the table already sends it there), while
// "10.100.0.0/16 via 10.0.1.254" is. A main route no route of the table
// covers is not copied either: the lookup falls through to main, which
// has it. mirrored[i] tells a copy that comes from main only (not
// demanded by CHECK).
func linkCopies(ifc Interface, own, blocks []Route, families map[Family]bool) (copies []Route, mirrored []bool) {
	type cand struct {
		r      Route
		mirror bool
	}
	var cands []cand
	for _, r := range ifc.Routes {
		cands = append(cands, cand{r, false})
	}
	for _, r := range ifc.MainRoutes {
		cands = append(cands, cand{r, true})
	}
	// Least specific first: a copy can be the covering route of a more
	// specific one. Stable, so prevResult wins a tie with main.
	slices.SortStableFunc(cands, func(a, b cand) int { return cmp.Compare(a.r.Dst.Bits(), b.r.Dst.Bits()) })
	table := append(slices.Clone(own), blocks...)
	for _, c := range cands {
		r := Route{
			Table: ifc.Table, Dst: c.r.Dst.Masked(), Type: Unicast, Scope: ScopeUniverse,
			LinkIndex: ifc.Index, Gateway: c.r.Gateway, OnLink: c.r.OnLink, Metrics: c.r.Metrics,
		}
		if !r.Gateway.IsValid() {
			r.Scope = linkScope(r.Dst)
		}
		if !r.Dst.IsValid() || r.Dst.Bits() == 0 || !families[r.Family()] ||
			(r.Gateway.IsValid() && FamilyOf(r.Gateway) != r.Family()) ||
			hasDst(table, r.Dst) {
			continue
		}
		if cov := covering(table, r.Dst); sameHop(cov, r) || (cov == nil && c.mirror) {
			continue
		}
		table = append(table, r)
		copies = append(copies, r)
		mirrored = append(mirrored, c.mirror)
	}
	return copies, mirrored
}

func hasDst(routes []Route, dst netip.Prefix) bool {
	for _, r := range routes {
		if r.Dst == dst {
			return true
		}
	}
	return false
}

// covering returns the most specific route of routes whose destination
// contains all of dst (nil when none does): where the table would send
// dst without a route of its own.
func covering(routes []Route, dst netip.Prefix) *Route {
	var best *Route
	for i, r := range routes {
		if r.Family() != FamilyOf(dst.Addr()) || r.Dst.Bits() > dst.Bits() || !r.Dst.Contains(dst.Addr()) {
			continue
		}
		if best == nil || r.Dst.Bits() > best.Dst.Bits() {
			best = &routes[i]
		}
	}
	return best
}

// sameHop reports whether the covering route c already sends traffic where
// and as r would: the same type, link, gateway and metrics (a route whose
// only difference is "mtu 1300" is still carried).
func sameHop(c *Route, r Route) bool {
	return c != nil && c.Type == r.Type && c.LinkIndex == r.LinkIndex && c.Gateway == r.Gateway && c.Metrics == r.Metrics
}

// markOnLink sets OnLink on every gateway route whose gateway no direct
// (gateway-less unicast) route of the same link in routes covers: the
// kernel refuses such a route with ENETUNREACH otherwise, e.g. the default
// route of a /32 address whose gateway lies outside it. IPv6 link-local
// gateways are always reachable through their link and stay as they are.
func markOnLink(routes []Route) []Route {
	for i, r := range routes {
		if !r.Gateway.IsValid() || r.OnLink || (r.Gateway.Is6() && r.Gateway.IsLinkLocalUnicast()) {
			continue
		}
		routes[i].OnLink = !coveredDirect(routes, r.LinkIndex, r.Gateway)
	}
	return routes
}

func coveredDirect(routes []Route, linkIndex int, gw netip.Addr) bool {
	for _, d := range routes {
		if d.Type == Unicast && !d.Gateway.IsValid() && d.LinkIndex == linkIndex && d.Dst.Contains(gw) {
			return true
		}
	}
	return false
}

// RouteOwner decides which interface a prevResult route goes through,
// given each sandbox interface's addresses (CNI routes name no interface):
// the one whose address prefixes hold the gateway, when exactly one does;
// with a sole interface also a default or gateway-less route (a /32
// address's default via a gateway outside it). -1 when the route cannot be
// placed, and is not used: among several interfaces a gateway-less route or
// a link-local gateway; any other route whose gateway no prefix holds (main
// reaches that gateway through whichever link it is on, and the copy of
// main's route is what the table then carries).
func RouteOwner(r Route, addrs [][]netip.Prefix) int {
	if len(addrs) == 1 && (!r.Gateway.IsValid() || r.Dst.Bits() == 0) {
		return 0
	}
	owner := -1
	if !r.Gateway.IsValid() {
		return owner
	}
	for i, ps := range addrs {
		for _, p := range ps {
			if p.Masked().Contains(r.Gateway) {
				if owner != -1 && owner != i {
					return -1
				}
				owner = i
			}
		}
	}
	return owner
}

// InstalledSubnets returns the on-link routes of ours through a link in a
// table, as the Subnets they were built from. CHECK with IMDS uses them in
// place of the metadata it does not fetch, so that its default route gets
// the on-link decision ADD made.
func InstalledSubnets(ours []Route, table, linkIndex int) []Subnet {
	var out []Subnet
	for _, r := range ours {
		if r.Table == table && r.LinkIndex == linkIndex && r.Type == Unicast && !r.Gateway.IsValid() {
			out = append(out, Subnet{Prefix: r.Dst, Src: r.Src})
		}
	}
	return out
}
