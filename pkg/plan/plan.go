// Package plan computes, as plain data, the policy routing one network
// namespace should hold for a set of interfaces. It performs no I/O: the
// caller gathers facts (config, prevResult or link state, IMDS) and applies
// the result with a netlink diff (package kernel).
package plan

import (
	"fmt"
	"net/netip"
	"sort"
)

// Protocol is the rtnetlink protocol number stamped on every rule and route
// this plugin installs. It is how DEL, CHECK and GC recognise "ours" without
// looking at addresses. 236 (0xEC, "EC2") is not assigned in the kernel's
// rtnetlink.h nor in iproute2's rt_protos; conf/iproute2/rt_protos.d names it.
const Protocol = 236

// Kernel table IDs and rule priorities that policy routing must never claim.
const (
	TableUnspec  = 0   // "any table" in netlink requests
	TableCompat  = 252 // legacy alias for tables above 255 in rtmsg
	TableDefault = 253
	TableMain    = 254
	TableLocal   = 255

	PriorityLocal   = 0     // the "from all lookup local" rule
	PriorityMain    = 32766 // the "from all lookup main" rule
	PriorityDefault = 32767 // the "from all lookup default" rule

	// MaxTable is the largest table ID the kernel accepts (u32 minus the
	// reserved value used by some tools as "unset").
	MaxTable = 1<<32 - 2
	// MaxPriority bounds rule priorities (FRA_PRIORITY is a u32).
	MaxPriority = 1<<32 - 1
)

// DefaultTableBase matches amazon-ec2-net-utils (10000 + 100*card + device), so
// operators find the same table numbers they already know.
const DefaultTableBase = 10000

// Family is an address family, kept as the netlink constants so that callers
// need no translation.
type Family int

const (
	V4 Family = 2  // unix.AF_INET
	V6 Family = 10 // unix.AF_INET6
)

func (f Family) String() string {
	if f == V6 {
		return "ipv6"
	}
	return "ipv4"
}

// FamilyOf returns the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return V4
	}
	return V6
}

// RouteType mirrors the rtnetlink route types the plugin deals with.
type RouteType int

const (
	Unicast     RouteType = 1 // RTN_UNICAST
	Blackhole   RouteType = 6 // RTN_BLACKHOLE
	Unreachable RouteType = 7 // RTN_UNREACHABLE
	Prohibit    RouteType = 8 // RTN_PROHIBIT
)

// IsReject reports whether t is blackhole, unreachable or prohibit: the
// route types that block traffic and are copied from main.
func (t RouteType) IsReject() bool {
	return t == Blackhole || t == Unreachable || t == Prohibit
}

func (t RouteType) String() string {
	switch t {
	case Blackhole:
		return "blackhole"
	case Unreachable:
		return "unreachable"
	case Prohibit:
		return "prohibit"
	}
	return "unicast"
}

// Scope mirrors the rtnetlink scopes used here.
type Scope int

const (
	ScopeUniverse Scope = 0   // RT_SCOPE_UNIVERSE
	ScopeLink     Scope = 253 // RT_SCOPE_LINK
)

// Rule is one "from <Src> lookup <Table> priority <Priority>" policy rule.
type Rule struct {
	Src      netip.Prefix
	Table    int
	Priority int
}

// Family of the rule.
func (r Rule) Family() Family { return FamilyOf(r.Src.Addr()) }

func (r Rule) String() string {
	return fmt.Sprintf("rule from %s lookup %d priority %d", r.Src, r.Table, r.Priority)
}

// Route is one route in a policy table. LinkIndex is 0 for reject routes.
type Route struct {
	Table     int
	Dst       netip.Prefix
	Type      RouteType
	Scope     Scope
	LinkIndex int
	Gateway   netip.Addr // invalid when directly connected
	Src       netip.Addr // preferred source; invalid when unset
	// Metric (RTA_PRIORITY) is set on reject routes only, copied from the
	// main route they duplicate: a reject keeps its rank against the
	// table's own routes (a fallback "unreachable default metric N" must
	// not outrank, nor collide with, the default route). 0 elsewhere: the
	// plugin's own routes take the kernel's default metric.
	Metric int
	// OnLink (RTNH_F_ONLINK) makes the kernel take Gateway as directly
	// reachable through the link although no route of the table covers it
	// (a /32 address with its gateway outside, see Build).
	OnLink bool
	// Metrics (mtu, advmss, ...) are those of the route this one stands
	// for: the default route's and the copies' (see Build, linkCopies).
	Metrics Metrics
}

// Family of the route.
func (r Route) Family() Family { return FamilyOf(r.Dst.Addr()) }

func (r Route) String() string { return r.Format(nil) }

// Format renders the route as String does, naming its link with linkName
// (nil, or "" from it: "#index").
func (r Route) Format(linkName func(index int) string) string {
	s := fmt.Sprintf("route %s", r.Dst)
	if r.Type != Unicast {
		s = fmt.Sprintf("route %s %s", r.Type, r.Dst)
	}
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	if r.LinkIndex != 0 {
		name := ""
		if linkName != nil {
			name = linkName(r.LinkIndex)
		}
		if name == "" {
			name = fmt.Sprintf("#%d", r.LinkIndex)
		}
		s += " dev " + name
	}
	if r.OnLink {
		s += " onlink"
	}
	if r.Scope == ScopeLink {
		s += " scope link"
	}
	if r.Src.IsValid() {
		s += " src " + r.Src.String()
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	if m := r.Metrics.String(); m != "" {
		s += " " + m
	}
	return s + fmt.Sprintf(" table %d", r.Table)
}

// Subnet is an on-link prefix of an interface, with the address that should
// be the preferred source for it (invalid when none should be set).
type Subnet struct {
	Prefix netip.Prefix
	Src    netip.Addr
}

// Interface holds every fact the plan needs about one interface.
type Interface struct {
	Name     string
	Index    int
	Table    int
	Priority int
	Sources  []netip.Prefix // one rule each: addresses as /32 or /128, delegated prefixes as they are
	Subnets  []Subnet       // one link-scope route each
	Gateways []netip.Addr   // at most one per family: the default route's next hop
	// Routes are the prevResult's other routes through this interface
	// (Dst, Gateway): carried into the table where they change the next
	// hop (see Build), and verified by CHECK.
	Routes []Route
	// MainRoutes are the main table's routes through the link (see
	// MainRoutesVia): carried like Routes, but never demanded by CHECK,
	// since main may gain routes after ADD (Plan.Mirrored).
	MainRoutes []Route
	// Defaults are the default routes through the link whose metrics the
	// table's default route takes (defaultMetrics): prevResult's placed on
	// this interface, then main's (MainDefaultsVia, added by Resolve and
	// Verify).
	Defaults []Route
}

// Plan is the complete wanted state for a set of interfaces.
type Plan struct {
	Rules  []Rule
	Routes []Route
	// Mirrored lists the routes of Routes copied from the main table at
	// ADD time: ADD installs them, CHECK does not report them missing.
	Mirrored []Route
}

// Tables returns the distinct tables the plan uses, ascending.
func (p Plan) Tables() []int {
	seen := map[int]bool{}
	var out []int
	for _, r := range p.Routes {
		if !seen[r.Table] {
			seen[r.Table] = true
			out = append(out, r.Table)
		}
	}
	for _, r := range p.Rules {
		if !seen[r.Table] {
			seen[r.Table] = true
			out = append(out, r.Table)
		}
	}
	sort.Ints(out)
	return out
}

// Build computes the wanted rules and routes. rejects are the blackhole,
// unreachable and prohibit routes of the main table: they are copied into
// every policy table so that, e.g., vpc-eni's IMDS block keeps applying to
// traffic sourced from the ENI (a "from <addr>" rule would otherwise bypass
// it through the table's default route).
func Build(ifaces []Interface, rejects []Route) (Plan, error) {
	var p Plan
	for _, ifc := range ifaces {
		if err := validateInterface(ifc); err != nil {
			return Plan{}, err
		}
		families := map[Family]bool{}
		for _, src := range dedupPrefixes(ifc.Sources) {
			p.Rules = append(p.Rules, Rule{Src: src.Masked(), Table: ifc.Table, Priority: ifc.Priority})
			families[FamilyOf(src.Addr())] = true
		}
		var own []Route
		for _, sn := range dedupSubnets(ifc.Subnets) {
			own = append(own, Route{
				Table: ifc.Table, Dst: sn.Prefix.Masked(), Type: Unicast, Scope: linkScope(sn.Prefix),
				LinkIndex: ifc.Index, Src: sn.Src,
			})
			families[FamilyOf(sn.Prefix.Addr())] = true
		}
		for _, gw := range ifc.Gateways {
			fam := FamilyOf(gw)
			own = append(own, Route{
				Table: ifc.Table, Dst: defaultPrefix(fam), Type: Unicast, Scope: ScopeUniverse,
				LinkIndex: ifc.Index, Gateway: gw, Metrics: defaultMetrics(ifc.Defaults, gw),
			})
			families[fam] = true
		}
		blocks := tableRejects(ifc.Table, rejects, families)
		copies, mirrored := linkCopies(ifc, own, blocks, families)
		routes := markOnLink(append(own, copies...))
		for i, m := range mirrored {
			if m {
				p.Mirrored = append(p.Mirrored, routes[len(own)+i])
			}
		}
		p.Routes = append(p.Routes, routes...)
		p.Routes = append(p.Routes, blocks...)
	}
	return p, nil
}

// tableRejects copies main's reject routes of the given families into
// table.
func tableRejects(table int, rejects []Route, families map[Family]bool) []Route {
	var out []Route
	for _, rj := range rejects {
		// Only the three reject types are blocks to carry. Any other
		// non-unicast route in main (an AnyIP "local" route, throw,
		// multicast) is not one, and a local route copied without its
		// device is refused by the kernel (EINVAL), failing ADD.
		if !rj.Type.IsReject() || !families[rj.Family()] {
			continue
		}
		out = append(out, Route{Table: table, Dst: rj.Dst.Masked(), Type: rj.Type, Metric: rj.Metric})
	}
	return out
}

func validateInterface(ifc Interface) error {
	if err := ValidateTable(ifc.Table); err != nil {
		return fmt.Errorf("interface %s: %w", ifc.Name, err)
	}
	if err := ValidatePriority(ifc.Priority); err != nil {
		return fmt.Errorf("interface %s: %w", ifc.Name, err)
	}
	if ifc.Index <= 0 {
		return fmt.Errorf("interface %s: no link index", ifc.Name)
	}
	seen := map[Family]bool{}
	for _, gw := range ifc.Gateways {
		f := FamilyOf(gw)
		if seen[f] {
			return fmt.Errorf("interface %s: more than one %s gateway", ifc.Name, f)
		}
		seen[f] = true
	}
	return nil
}

// ValidateTable rejects the kernel's reserved tables.
func ValidateTable(t int) error {
	switch {
	case t == TableUnspec, t == TableCompat, t == TableDefault, t == TableMain, t == TableLocal:
		return fmt.Errorf("table %d is reserved by the kernel", t)
	case t < 0 || t > MaxTable:
		return fmt.Errorf("table %d is out of range 1..%d", t, MaxTable)
	}
	return nil
}

// ValidatePriority rejects the priorities of the kernel's default rules.
func ValidatePriority(p int) error {
	switch {
	case p == PriorityLocal, p == PriorityMain, p == PriorityDefault:
		return fmt.Errorf("priority %d belongs to a kernel default rule", p)
	case p < 0 || p > MaxPriority:
		return fmt.Errorf("priority %d is out of range 1..%d", p, MaxPriority)
	}
	return nil
}

// linkScope is the scope of an on-link route: IPv6 has no route scopes (the
// kernel reports every IPv6 route as universe), IPv4 marks it link.
func linkScope(p netip.Prefix) Scope {
	if FamilyOf(p.Addr()) == V6 {
		return ScopeUniverse
	}
	return ScopeLink
}

func defaultPrefix(f Family) netip.Prefix {
	if f == V6 {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
}

func dedupPrefixes(in []netip.Prefix) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, p := range in {
		p = p.Masked()
		if !p.IsValid() || seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	return out
}

func dedupSubnets(in []Subnet) []Subnet {
	seen := map[netip.Prefix]bool{}
	var out []Subnet
	for _, s := range in {
		p := s.Prefix.Masked()
		if !p.IsValid() || seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, Subnet{Prefix: p, Src: s.Src})
	}
	return out
}

// HostPrefix returns the /32 or /128 prefix of a single address.
func HostPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

// AddressFacts derives an interface's rule sources and subnets from its
// addresses (CIDR form, as prevResult or the link reports them). IPv6 subnet
// routes carry no preferred source: the kernel rejects a prefsrc that is
// still tentative (DAD), and the source rule already pins the table.
func AddressFacts(addrs []netip.Prefix) (sources []netip.Prefix, subnets []Subnet) {
	for _, a := range addrs {
		sources = append(sources, HostPrefix(a.Addr()))
		// A host address (/32, /128) still gets its host route: every
		// interface then owns a route through its link, which is how a
		// retried ADD and DEL find the interface's table.
		sn := Subnet{Prefix: a.Masked()}
		if FamilyOf(a.Addr()) == V4 {
			sn.Src = a.Addr().Unmap()
		}
		subnets = append(subnets, sn)
	}
	return sources, subnets
}

// AllocateTable returns the table for an interface: existing when the
// interface already owns one (a retried ADD), else the lowest table at or
// above base that nothing in the namespace uses. used holds every table
// referenced by any rule or route, ours or not.
func AllocateTable(base int, existing int, used map[int]bool) (int, error) {
	if existing != 0 {
		return existing, nil
	}
	for t := base; t <= MaxTable && t < base+maxTableProbe; t++ {
		if used[t] || ValidateTable(t) != nil {
			continue
		}
		return t, nil
	}
	return 0, fmt.Errorf("no free routing table in %d..%d", base, base+maxTableProbe-1)
}

// maxTableProbe bounds table allocation: far more interfaces than an EC2
// instance can attach (the largest types support ~100 ENIs).
const maxTableProbe = 4096
