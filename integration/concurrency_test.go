package integration

// Reliability: concurrent invocations (issue 4, scenario 7).

import (
	"fmt"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
)

// TestConcurrent50Namespaces: 50 ADDs at once, one per namespace, then 50
// DELs at once. Every namespace gets exactly its own rule and routes (table
// 10000, its own address and gateway) and nothing else; then nothing.
func TestConcurrent50Namespaces(t *testing.T) {
	rep := scenario(t, "C1", "50 ADDs in parallel on 50 namespaces, then 50 DELs")
	h.RequireRoot(t)
	const n = 50
	type task struct {
		ns  *h.Netns
		nl  *netlink.Handle
		add *plug
		del *plug
	}
	tasks := make([]*task, n)
	for i := range tasks {
		ns := h.NewNetns(t)
		eni := h.NewENI(t)
		eni.MoveInto(t, ns, "eth0", []string{fmt.Sprintf("10.70.%d.10/24", i)}, fmt.Sprintf("10.70.%d.1", i))
		tasks[i] = &task{ns: ns, nl: ns.Handle(t)}
	}
	start := time.Now()
	for _, tk := range tasks {
		tk.add = startPlugin(t, cniEnv("ADD", tk.ns, "eth0"), relConf(`"linkTimeout":"30s"`))
	}
	var slowest time.Duration
	for i, tk := range tasks {
		r := tk.add.wait(t, time.Minute)
		r.MustSucceed(t, fmt.Sprintf("ADD #%d", i))
		slowest = max(slowest, r.Duration)
	}
	addWall := time.Since(start)
	for i, tk := range tasks {
		rules, routes := h.Ours(t, tk.nl)
		equalSets(t, fmt.Sprintf("namespace #%d rules", i), sortedRules(rules), []string{fmt.Sprintf("from 10.70.%d.10/32 lookup 10000 prio 10000", i)})
		equalSets(t, fmt.Sprintf("namespace #%d routes", i), routeSet(routes), []string{
			fmt.Sprintf("table 10000 default via 10.70.%d.1", i),
			fmt.Sprintf("table 10000 10.70.%d.0/24 src 10.70.%d.10", i, i),
		})
	}
	start = time.Now()
	for _, tk := range tasks {
		tk.del = startPlugin(t, cniEnv("DEL", tk.ns, "eth0"), relConf(""))
	}
	for i, tk := range tasks {
		tk.del.wait(t, time.Minute).MustSucceed(t, fmt.Sprintf("DEL #%d", i))
	}
	delWall := time.Since(start)
	var nss []*h.Netns
	var plugs []*plug
	for _, tk := range tasks {
		nss = append(nss, tk.ns)
		plugs = append(plugs, tk.add, tk.del)
	}
	assertNoResidue(t, nss, plugs...)
	rep.add("50 concurrent ADDs: all exit 0 in %s wall (slowest %s), each namespace exactly its own 1 rule + 2 routes; 50 concurrent DELs: all exit 0 in %s; nothing left",
		addWall.Round(time.Millisecond), slowest.Round(time.Millisecond), delWall.Round(time.Millisecond))
}

// TestConcurrentInterfacesOneNamespace: interfaces of one namespace
// configured by concurrent invocations (ECS runs one vpc-eni + our plugin
// per ENI): each gets its own table and only its own rules and routes,
// whoever wins the namespace lock; the DELs, also concurrent, leave nothing.
// Repeated to shake out orderings.
func TestConcurrentInterfacesOneNamespace(t *testing.T) {
	rep := scenario(t, "C2", "interfaces of one namespace configured by concurrent invocations")
	h.RequireRoot(t)
	for _, tc := range []struct {
		ifaces, rounds int
	}{{2, 20}, {8, 3}} {
		t.Run(fmt.Sprintf("%d interfaces x %d rounds", tc.ifaces, tc.rounds), func(t *testing.T) {
			ns := h.NewNetns(t)
			nl := ns.Handle(t)
			names := make([]string, tc.ifaces)
			for i := range names {
				names[i] = fmt.Sprintf("eth%d", i)
				eni := h.NewENI(t)
				eni.MoveInto(t, ns, names[i], []string{fmt.Sprintf("10.71.%d.10/24", i)})
				// One main default route per ENI, told apart by metric (as
				// ec2-net-utils does on the host).
				ns.IP(t, "route", "add", "default", "via", fmt.Sprintf("10.71.%d.1", i), "dev", names[i], "metric", fmt.Sprint(512+i))
			}
			tablesSeen := map[string]map[int]bool{}
			var maxWall time.Duration
			for round := range tc.rounds {
				start := time.Now()
				plugs := runConcurrently(t, ns, "ADD", names, relConf(`"linkTimeout":"30s"`))
				maxWall = max(maxWall, time.Since(start))
				rules, routes := h.Ours(t, nl)
				if len(rules) != tc.ifaces || len(routes) != 2*tc.ifaces {
					t.Fatalf("round %d: %d rules %d routes, want %d and %d: %q", round, len(rules), len(routes), tc.ifaces, 2*tc.ifaces, h.RuleStrings(rules))
				}
				tables := map[int]bool{}
				for i, name := range names {
					l, err := nl.LinkByName(name)
					if err != nil {
						t.Fatal(err)
					}
					// The interface's address points at a table whose routes
					// all go through this interface.
					var table int
					for _, r := range rules {
						if r.Src.IP.String() == fmt.Sprintf("10.71.%d.10", i) {
							table = r.Table
						}
					}
					if table == 0 || tables[table] {
						t.Fatalf("round %d: %s has table %d (tables so far %v)", round, name, table, tables)
					}
					tables[table] = true
					for _, r := range routes {
						if r.Table == table && r.LinkIndex != l.Attrs().Index {
							t.Fatalf("round %d: table %d of %s holds a route through link %d", round, table, name, r.LinkIndex)
						}
					}
					if tablesSeen[name] == nil {
						tablesSeen[name] = map[int]bool{}
					}
					tablesSeen[name][table] = true
				}
				dels := runConcurrently(t, ns, "DEL", names, relConf(""))
				assertNoResidue(t, []*h.Netns{ns}, append(plugs, dels...)...)
			}
			distinct := map[int]bool{}
			for _, ts := range tablesSeen {
				for tb := range ts {
					distinct[tb] = true
				}
			}
			rep.add("%d interfaces, %d rounds of concurrent ADDs then concurrent DELs: each round %d distinct tables (%d distinct over all rounds), each holding only its interface's routes; slowest round of ADDs %s; nothing left after each DEL round",
				tc.ifaces, tc.rounds, tc.ifaces, len(distinct), maxWall.Round(time.Millisecond))
		})
	}
}

// runConcurrently starts one invocation per interface back to back (a
// process start takes ~1 ms, an invocation several: they overlap) and waits
// for all; each must succeed.
func runConcurrently(t *testing.T, ns *h.Netns, verb string, names []string, conf []byte) []*plug {
	t.Helper()
	plugs := make([]*plug, len(names))
	for i, name := range names {
		plugs[i] = startPlugin(t, cniEnv(verb, ns, name), conf)
	}
	for i, p := range plugs {
		p.wait(t, time.Minute).MustSucceed(t, fmt.Sprintf("%s %s", verb, names[i]))
	}
	return plugs
}
