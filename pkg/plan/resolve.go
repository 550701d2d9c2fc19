package plan

import (
	"fmt"
	"slices"
)

// Foreign describes one object in a table that is not ours: what it is and
// the rtnetlink protocol that installed it, for naming it in a refusal.
type Foreign struct {
	What     string // e.g. "route 10.9.0.0/16", "rule from 192.0.2.7/32"
	Protocol int
}

func (f Foreign) String() string {
	return fmt.Sprintf("%s proto %s", f.What, ProtocolName(f.Protocol))
}

// Observed is what the verbs' decisions read of the namespace: one snapshot
// taken under the namespace lock, as plain data.
type Observed struct {
	OursByLink  map[int]int     // link index -> our table holding a route through it
	Used        map[int]bool    // tables any rule or route references, ours or not
	Foreign     map[int]Foreign // per table: one rule or route in it that is not ours
	Orphans     map[int]bool    // our tables no link's route holds any more
	MainRejects []Route         // blackhole/unreachable/prohibit routes of main
	Main        []MainRoute     // main's unicast routes that are not ours
	Rules       []Rule          // ours (plan.Protocol), every table
	Routes      []Route         // ours (plan.Protocol), every table
}

// InTables filters our rules and routes down to those in the given tables.
func (o Observed) InTables(tables map[int]bool) ([]Rule, []Route) {
	var rules []Rule
	var routes []Route
	for _, r := range o.Rules {
		if tables[r.Table] {
			rules = append(rules, r)
		}
	}
	for _, r := range o.Routes {
		if tables[r.Table] {
			routes = append(routes, r)
		}
	}
	return rules, routes
}

// OrphanTables returns our tables (of rules and routes) that no longer hold
// a route through any link (byLink: link index -> our table): their
// interface left the namespace (the kernel flushed its routes), so whatever
// is left of ours there is garbage any DEL may reap.
func OrphanTables(rules []Rule, routes []Route, byLink map[int]int) map[int]bool {
	linked := map[int]bool{}
	for _, t := range byLink {
		linked[t] = true
	}
	out := map[int]bool{}
	for _, r := range rules {
		if !linked[r.Table] {
			out[r.Table] = true
		}
	}
	for _, r := range routes {
		if !linked[r.Table] {
			out[r.Table] = true
		}
	}
	return out
}

// Settings are the configuration values the table decisions depend on.
type Settings struct {
	TableBase int
	Priority  int // 0: each rule's priority is its table number
}

// RulePriority is the priority of the rules for an interface using table:
// the configured priority, else the table number (ec2-net-utils' choice).
func (s Settings) RulePriority(table int) int {
	if s.Priority != 0 {
		return s.Priority
	}
	return table
}

// Candidate is one interface ADD configures: its facts and, with IMDS, the
// table the ENI's numbering fixes (0 without).
type Candidate struct {
	Interface
	IMDSTable int
}

// Resolution is ADD's wanted state.
type Resolution struct {
	Interfaces []Interface // with Table, Priority and MainRoutes decided
	Plan       Plan
	// Managed are the tables whose objects of ours converge to Plan: the
	// plan's, the orphans, and the tables the interfaces leave.
	Managed map[int]bool
	Notes   []string // decisions worth the log line's note (a table moved)
}

// Refusal is a decision that the configuration cannot be honoured in this
// namespace: CNI code 7, the message naming the field or table.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return r.Reason }

func refuse(format string, a ...any) error { return &Refusal{Reason: fmt.Sprintf(format, a...)} }

// Resolve decides ADD's wanted state: each interface's table and priority
// (or a *Refusal), the routes it carries, and the tables to converge. Any
// other error (no free table) is transient.
func Resolve(s Settings, cands []Candidate, obs Observed) (Resolution, error) {
	var res Resolution
	if err := distinctLinks(cands); err != nil {
		return res, err
	}
	used := cloneSet(obs.Used)
	for _, c := range cands {
		ifc := c.Interface
		table, note, err := chooseTable(s, c, obs, used)
		if err != nil {
			return Resolution{}, err
		}
		if note != "" {
			res.Notes = append(res.Notes, note)
		}
		used[table] = true
		ifc.Table, ifc.Priority = table, s.RulePriority(table)
		if s.Priority == 0 {
			if table >= PriorityMain {
				return Resolution{}, refuse("interface %s: table %d as rule priority would sit after the main rule (%d) and never match; lower tableBase or set priority",
					ifc.Name, table, PriorityMain)
			}
		}
		ifc.MainRoutes = MainRoutesVia(obs.Main, ifc.Index)
		ifc.Defaults = slices.Concat(ifc.Defaults, MainDefaultsVia(obs.Main, ifc.Index))
		res.Interfaces = append(res.Interfaces, ifc)
	}
	p, err := Build(res.Interfaces, obs.MainRejects)
	if err != nil {
		return Resolution{}, &Refusal{Reason: err.Error()}
	}
	res.Plan = p
	res.Managed = managedTables(p, res.Interfaces, obs)
	return res, nil
}

// distinctLinks refuses two selected interfaces that are one link (e.g.
// "interfaces": ["eth0","eth0"], or a prevResult naming it twice): they
// would get two tables and duplicate rules.
func distinctLinks(cands []Candidate) error {
	seen := map[int]string{}
	for _, c := range cands {
		if prev, ok := seen[c.Index]; ok {
			return refuse("%s and %s name one link (#%d): list each interface once (config interfaces, prevResult interfaces)", prev, c.Name, c.Index)
		}
		seen[c.Index] = c.Name
	}
	return nil
}

// chooseTable picks an interface's table. With IMDS numbering the table is
// fixed: refused when another link's routes of ours or a foreign object
// are in it (they would share it). Without, a link keeps the table it has
// while that table is in the range tableBase allocates from (a retried ADD
// converges); otherwise, e.g. after tableBase changed, it moves to the
// lowest free table from tableBase, which never holds a foreign object.
func chooseTable(s Settings, c Candidate, obs Observed, used map[int]bool) (int, string, error) {
	existing := obs.OursByLink[c.Index]
	if c.IMDSTable != 0 {
		if err := imdsTableFree(c, obs); err != nil {
			return 0, "", err
		}
		return c.IMDSTable, movedNote(c.Name, existing, c.IMDSTable, fmt.Sprintf("IMDS numbering from tableBase %d", s.TableBase)), nil
	}
	if existing >= s.TableBase && existing < s.TableBase+maxTableProbe {
		return existing, keptNote(c.Name, existing, s.TableBase, used), nil
	}
	t, err := AllocateTable(s.TableBase, 0, used)
	if err != nil {
		return 0, "", fmt.Errorf("interface %s: %w", c.Name, err)
	}
	return t, movedNote(c.Name, existing, t, fmt.Sprintf("tableBase %d", s.TableBase)), nil
}

// keptNote explains a kept table that a fresh ADD would not choose (e.g.
// tableBase lowered, or a lower table freed by another link's DEL): a
// retried ADD does not renumber a table still in tableBase's range.
func keptNote(name string, table, base int, used map[int]bool) string {
	others := cloneSet(used)
	delete(others, table)
	fresh, err := AllocateTable(base, 0, others)
	if err != nil || fresh == table {
		return ""
	}
	return fmt.Sprintf("interface %s keeps table %d, inside tableBase %d's range (a fresh ADD would choose %d; DEL and ADD to renumber)",
		name, table, base, fresh)
}

func imdsTableFree(c Candidate, obs Observed) error {
	for idx, tb := range obs.OursByLink {
		if tb == c.IMDSTable && idx != c.Index {
			return refuse("interface %s: table %d (from IMDS numbering) already holds this plugin's routes for link #%d; use one numbering per namespace (imds.enabled) or a different tableBase",
				c.Name, c.IMDSTable, idx)
		}
	}
	// A foreign object added to our table after ADD is tolerated (it is
	// not ours to judge); one there before we claim the table is refused.
	if f, ok := obs.Foreign[c.IMDSTable]; ok && obs.OursByLink[c.Index] != c.IMDSTable {
		return refuse("interface %s: table %d (from IMDS numbering) already holds %s, which is not this plugin's; choose a tableBase whose tables are free, or move that owner's routes",
			c.Name, c.IMDSTable, f)
	}
	return nil
}

func movedNote(name string, from, to int, why string) string {
	if from == 0 || from == to {
		return ""
	}
	return fmt.Sprintf("interface %s moved from table %d to %d (%s)", name, from, to, why)
}

func managedTables(p Plan, ifaces []Interface, obs Observed) map[int]bool {
	managed := cloneSet(obs.Orphans)
	for _, tb := range p.Tables() {
		managed[tb] = true
	}
	for _, ifc := range ifaces {
		if old := obs.OursByLink[ifc.Index]; old != 0 {
			managed[old] = true
		}
	}
	return managed
}

func cloneSet(m map[int]bool) map[int]bool {
	out := make(map[int]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// protoNames are iproute2's names for the rtnetlink protocols an operator
// meets (rt_protos).
var protoNames = map[int]string{
	0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
	10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
	17: "mrouted", 18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis",
	188: "ospf", 189: "rip", 192: "eigrp", Protocol: "ec2-policy-routes",
}

// ProtocolName renders an rtnetlink protocol as iproute2 does, with the
// number ("static (4)", or "200" when it has no name).
func ProtocolName(p int) string {
	if n, ok := protoNames[p]; ok {
		return fmt.Sprintf("%s (%d)", n, p)
	}
	return fmt.Sprint(p)
}
