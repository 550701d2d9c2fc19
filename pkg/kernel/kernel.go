// Package kernel reads and changes policy routing inside one network
// namespace through a netlink handle bound to it, so the calling thread never
// switches namespaces. It translates between netlink objects and the plain
// data of package plan.
package kernel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// dumpAttempts bounds retries of a dump the kernel flagged as interrupted
// (NLM_F_DUMP_INTR: the table changed while it was being read). Concurrent
// plugins in other namespaces cannot cause this, only writers in this one,
// so a handful of attempts is plenty; the same bound netlinksafe uses.
const dumpAttempts = 10

// Handle is a netlink handle bound to one network namespace.
type Handle struct {
	nl   *netlink.Handle
	nsfd int // the namespace, for link-event subscriptions (WaitLink)
}

// NewHandle binds a netlink handle to the namespace open at fd. The caller
// keeps fd open for the Handle's lifetime.
func NewHandle(fd uintptr) (*Handle, error) {
	h, err := netlink.NewHandleAt(netns.NsHandle(int(fd)), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket in namespace: %w", err)
	}
	return &Handle{nl: h, nsfd: int(fd)}, nil
}

// Close releases the netlink socket.
func (h *Handle) Close() { h.nl.Close() }

// retryDump runs a netlink dump until the kernel returns it uninterrupted.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for range dumpAttempts {
		var out []T
		out, err = dump()
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("netlink dump still interrupted after %d attempts: %w", dumpAttempts, err)
}

// State is what the plugin sees of one namespace's policy routing.
type State struct {
	OurRules  []plan.Rule  // rules stamped with plan.Protocol
	OurRoutes []plan.Route // routes stamped with plan.Protocol, any table
	// OurTableByLink maps a link index to the table of ours holding routes
	// through it: how a retried ADD or a DEL finds an interface's table.
	OurTableByLink map[int]int
	UsedTables     map[int]bool // every table any rule or route references
	MainRejects    []plan.Route // blackhole/unreachable/prohibit routes in main
	// MainRoutes are main's unicast routes that are not ours: what a
	// table may need to carry for its link (plan.MainRoutesVia).
	MainRoutes []plan.MainRoute
	// Foreign holds, per table, one rule or route in it that is not ours:
	// a table ADD must not claim (plan.Resolve).
	Foreign map[int]plan.Foreign
}

// Observed is the state as the input of package plan's decisions.
func (st *State) Observed() plan.Observed {
	return plan.Observed{
		OursByLink: st.OurTableByLink, Used: st.UsedTables, Foreign: st.Foreign, Orphans: plan.OrphanTables(st.OurRules, st.OurRoutes, st.OurTableByLink),
		MainRejects: st.MainRejects, Main: st.MainRoutes, Rules: st.OurRules, Routes: st.OurRoutes,
	}
}

// ReadState dumps rules and routes of both families once.
func (h *Handle) ReadState() (*State, error) {
	rules, err := retryDump(func() ([]netlink.Rule, error) {
		return h.nl.RuleListFiltered(netlink.FAMILY_ALL, nil, 0)
	})
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	st := &State{OurTableByLink: map[int]int{}, UsedTables: map[int]bool{}, Foreign: map[int]plan.Foreign{}}
	for _, r := range rules {
		st.addRule(r)
	}
	for _, r := range routes {
		st.addRoute(r)
	}
	return st, nil
}

func (st *State) addRule(r netlink.Rule) {
	if r.Table > 0 {
		st.UsedTables[r.Table] = true
	}
	if int(r.Protocol) != plan.Protocol {
		st.noteForeign(r.Table, int(r.Protocol), func() string { return fmt.Sprintf("rule from %v lookup %d", ruleSrc(r), r.Table) })
		return
	}
	if pr, ok := ruleFromNetlink(r); ok {
		st.OurRules = append(st.OurRules, pr)
	}
}

func (st *State) addRoute(r netlink.Route) {
	st.UsedTables[r.Table] = true
	pr, ok := routeFromNetlink(r)
	if !ok {
		return
	}
	if int(r.Protocol) == plan.Protocol {
		st.OurRoutes = append(st.OurRoutes, pr)
		if pr.LinkIndex != 0 {
			st.OurTableByLink[pr.LinkIndex] = pr.Table
		}
		return
	}
	st.noteForeign(r.Table, int(r.Protocol), func() string {
		if pr.Type != plan.Unicast {
			return fmt.Sprintf("route %s %s", pr.Type, pr.Dst)
		}
		return "route " + pr.Dst.String()
	})
	switch {
	case r.Table != unix.RT_TABLE_MAIN:
	case pr.Type.IsReject():
		st.MainRejects = append(st.MainRejects, pr)
	case pr.Type == plan.Unicast && len(r.MultiPath) == 0:
		st.MainRoutes = append(st.MainRoutes, plan.MainRoute{Route: pr, Protocol: int(r.Protocol)})
	}
}

// noteForeign records the first foreign object seen in a table other than
// the kernel's own; what is rendered only then.
func (st *State) noteForeign(table, proto int, what func() string) {
	if table <= 0 || plan.ValidateTable(table) != nil {
		return
	}
	if _, ok := st.Foreign[table]; !ok {
		st.Foreign[table] = plan.Foreign{What: what(), Protocol: proto}
	}
}

func ruleSrc(r netlink.Rule) string {
	if r.Src == nil {
		return "all"
	}
	return r.Src.String()
}

func ruleFromNetlink(r netlink.Rule) (plan.Rule, bool) {
	if r.Src == nil {
		return plan.Rule{}, false
	}
	p, ok := plan.PrefixFromIPNet(*r.Src)
	if !ok {
		return plan.Rule{}, false
	}
	return plan.Rule{Src: p, Table: r.Table, Priority: r.Priority}, true
}

func routeFromNetlink(r netlink.Route) (plan.Route, bool) {
	out := plan.Route{Table: r.Table, Type: plan.RouteType(r.Type), Scope: plan.Scope(r.Scope), LinkIndex: r.LinkIndex}
	if r.Dst != nil {
		p, ok := plan.PrefixFromIPNet(*r.Dst)
		if !ok {
			return plan.Route{}, false
		}
		out.Dst = p
	} else {
		switch r.Family {
		case unix.AF_INET6:
			out.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		case unix.AF_INET:
			out.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		default:
			return plan.Route{}, false
		}
	}
	if out.Type != plan.Unicast {
		// The kernel attaches IPv6 reject routes to lo; they have no link.
		out.LinkIndex = 0
		out.Scope = plan.ScopeUniverse
		// Rejects are copied with their metric (see plan.Route.Metric);
		// unicast routes leave it 0 so the kernel's IPv6 default (1024)
		// never makes a read-back differ from the plan.
		out.Metric = r.Priority
	}
	if a, ok := netip.AddrFromSlice(r.Gw); ok {
		out.Gateway = a.Unmap()
		out.OnLink = r.Flags&unix.RTNH_F_ONLINK != 0
	}
	if a, ok := netip.AddrFromSlice(r.Src); ok {
		out.Src = a.Unmap()
	}
	out.Metrics = plan.Metrics{
		MTU: r.MTU, MTULock: r.MTULock, AdvMSS: r.AdvMSS, HopLimit: r.Hoplimit, InitCwnd: r.InitCwnd, InitRwnd: r.InitRwnd,
	}
	return out, true
}

func ruleToNetlink(r plan.Rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = int(r.Family())
	nr.Src = plan.IPNet(r.Src)
	nr.Table = r.Table
	nr.Priority = r.Priority
	nr.Protocol = plan.Protocol
	return nr
}

func routeToNetlink(r plan.Route) *netlink.Route {
	nr := &netlink.Route{
		Family:    int(r.Family()),
		Table:     r.Table,
		Dst:       plan.IPNet(r.Dst),
		Type:      int(r.Type),
		Scope:     netlink.Scope(r.Scope),
		LinkIndex: r.LinkIndex,
		Priority:  r.Metric,
		Protocol:  plan.Protocol,
		MTU:       r.Metrics.MTU,
		MTULock:   r.Metrics.MTULock,
		AdvMSS:    r.Metrics.AdvMSS,
		Hoplimit:  r.Metrics.HopLimit,
		InitCwnd:  r.Metrics.InitCwnd,
		InitRwnd:  r.Metrics.InitRwnd,
	}
	if r.Gateway.IsValid() {
		nr.Gw = r.Gateway.AsSlice()
	}
	if r.OnLink {
		nr.Flags = unix.RTNH_F_ONLINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	return nr
}

// Change records one applied change so it can be undone.
type Change struct {
	Added   bool
	Rule    *plan.Rule
	Route   *plan.Route
	Summary string
}

// Apply performs a diff: removals first (rules before routes so no rule
// points at a half-emptied table), then additions (routes before rules so a
// rule never sends traffic to an incomplete table). On error every addition
// made by this call is undone before returning, so a failed ADD leaves the
// namespace as it found it minus stale objects of ours.
func (h *Handle) Apply(d plan.Diff) ([]Change, error) {
	var done []Change
	for _, r := range d.DelRules {
		if err := h.DelRule(r); err != nil {
			return done, fmt.Errorf("remove %s: %w", r, err)
		}
		done = append(done, Change{Rule: &r, Summary: "-" + r.String()})
	}
	for _, r := range d.DelRoutes {
		if err := h.DelRoute(r); err != nil {
			return done, fmt.Errorf("remove %s: %w", r, err)
		}
		done = append(done, Change{Route: &r, Summary: "-" + r.String()})
	}
	for _, r := range d.AddRoutes {
		if err := h.nl.RouteAdd(routeToNetlink(r)); err != nil {
			h.Undo(done)
			return nil, fmt.Errorf("add %s: %w", r, err)
		}
		done = append(done, Change{Added: true, Route: &r, Summary: "+" + r.String()})
	}
	for _, r := range d.AddRules {
		if err := h.nl.RuleAdd(ruleToNetlink(r)); err != nil {
			h.Undo(done)
			return nil, fmt.Errorf("add %s: %w", r, err)
		}
		done = append(done, Change{Added: true, Rule: &r, Summary: "+" + r.String()})
	}
	return done, nil
}

// Undo removes, in reverse order, what Apply added. Removals are not
// restored: they were stale objects of ours.
func (h *Handle) Undo(done []Change) {
	for i := len(done) - 1; i >= 0; i-- {
		c := done[i]
		if !c.Added {
			continue
		}
		if c.Rule != nil {
			_ = h.DelRule(*c.Rule)
		}
		if c.Route != nil {
			_ = h.DelRoute(*c.Route)
		}
	}
}

// DelRule removes one rule of ours; an already missing rule is not an error.
func (h *Handle) DelRule(r plan.Rule) error {
	if err := h.nl.RuleDel(ruleToNetlink(r)); err != nil && !isGone(err) {
		return err
	}
	return nil
}

// DelRoute removes one route of ours; an already missing route is not an
// error (the kernel flushes a link's routes when the link leaves).
func (h *Handle) DelRoute(r plan.Route) error {
	if err := h.nl.RouteDel(routeToNetlink(r)); err != nil && !isGone(err) {
		return err
	}
	return nil
}

func isGone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

// LinkAddrs returns the link's global-scope addresses in CIDR form, the
// standalone (ECS) source of addresses. Link-local addresses never source
// routed traffic and are skipped; tentative IPv6 addresses are kept.
func (h *Handle) LinkAddrs(link plan.Link) ([]netip.Prefix, error) {
	// AddrList filters by the index alone.
	ref := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: link.Index, Name: link.Name}}
	addrs, err := retryDump(func() ([]netlink.Addr, error) {
		return h.nl.AddrList(ref, netlink.FAMILY_ALL)
	})
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", link.Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if a.Scope != unix.RT_SCOPE_UNIVERSE || a.IPNet == nil {
			continue
		}
		p, ok := plan.PrefixFromIPNet(*a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// MainGateways returns, per family, the gateway of the main table's default
// route through the link: where the ENI plugin said the subnet router is.
func (h *Handle) MainGateways(linkIndex int) ([]netip.Addr, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.nl.RouteListFiltered(netlink.FAMILY_ALL,
			&netlink.Route{Table: unix.RT_TABLE_MAIN, LinkIndex: linkIndex},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return nil, fmt.Errorf("list main routes: %w", err)
	}
	var out []netip.Addr
	seen := map[plan.Family]bool{}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		gw, ok := netip.AddrFromSlice(r.Gw)
		if !ok {
			continue
		}
		gw = gw.Unmap()
		if f := plan.FamilyOf(gw); !seen[f] {
			seen[f] = true
			out = append(out, gw)
		}
	}
	return out, nil
}
