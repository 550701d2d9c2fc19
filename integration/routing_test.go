package integration

// Routing correctness (issue 12 items 1, 2, 4, 5, 7, 8, 9): what the table
// of each ENI must carry, checked with ENI-sourced `ip route get` in real
// namespaces; and the refusals that keep a table ours alone.

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
)

// prevResult1 is a 1.1.0 result for one interface inside ns.
func prevResult1(ns *h.Netns, ifname, ips, routes string) string {
	return fmt.Sprintf(`{"cniVersion":"1.1.0","interfaces":[{"name":%q,"sandbox":%q}],"ips":[%s],"routes":[%s]}`,
		ifname, ns.Path, ips, routes)
}

// chainConfWith is our config in a 1.1.0 chain with extra fields (IMDS off
// unless extra sets it).
func chainConfWith(prev, extra string) []byte {
	if !strings.Contains(extra, `"imds"`) {
		extra += `,"imds":{"enabled":false}`
	}
	return []byte(`{"cniVersion":"1.1.0","name":"task","type":"ec2-policy-routes","linkTimeout":"5s"` + extra + `,"prevResult":` + prev + `}`)
}

// egress asserts where the kernel sends dst for traffic sourced from src:
// `ip route get <dst> from <src>` names hop (e.g. "via 10.0.2.1 dev eth1").
func egress(t *testing.T, ns *h.Netns, src, dst, hop string) {
	t.Helper()
	args := []string{"ip", "route", "get", dst, "from", src}
	if strings.Contains(dst, ":") {
		args = []string{"ip", "-6", "route", "get", dst, "from", src}
	}
	got, err := ns.Exec(args...)
	if err != nil || !strings.Contains(got, hop+" ") {
		t.Fatalf("%s: %v %q, want %q", strings.Join(args, " "), err, got, hop)
	}
}

// TestRouteTwoChainedENIsOwnGateways: two ENIs chained into one namespace,
// the second's gateway given in ips, only in routes, or only in routes
// with IMDS enabled; each ENI's traffic leaves via its own gateway, IPv6
// via its link-local gateway.
func TestRouteTwoChainedENIsOwnGateways(t *testing.T) {
	rep := scenario(t, "RT1", "two ENIs chained in one netns egress via their own gateways (gateway from ips, from routes, with IMDS)")
	for _, mode := range []string{"ips", "routes", "routes-imds"} {
		t.Run(mode, func(t *testing.T) {
			ns := h.NewNetns(t)
			nl := ns.Handle(t)
			e0, e1 := h.NewENI(t), h.NewENI(t)
			e0.SetMAC(t, "0a:1e:00:00:12:01")
			e1.SetMAC(t, "0a:1e:00:00:12:02")
			e0.MoveInto(t, ns, "eth0", []string{"10.0.1.10/24"}, "10.0.1.1")
			e1.MoveInto(t, ns, "eth1", []string{"10.0.2.10/24", "2001:db8:2::10/64"})
			prev0 := prevResult1(ns, "eth0", `{"address":"10.0.1.10/24","gateway":"10.0.1.1"}`, `{"dst":"0.0.0.0/0","gw":"10.0.1.1"}`)
			prev1 := prevResult1(ns, "eth1", `{"address":"10.0.2.10/24","gateway":"10.0.2.1"},{"address":"2001:db8:2::10/64"}`, `{"dst":"::/0","gw":"fe80::1"}`)
			if mode != "ips" {
				prev1 = prevResult1(ns, "eth1", `{"address":"10.0.2.10/24"},{"address":"2001:db8:2::10/64"}`,
					`{"dst":"0.0.0.0/0","gw":"10.0.2.1"},{"dst":"::/0","gw":"fe80::1"}`)
			}
			extra := ""
			if mode == "routes-imds" {
				fake := imdsfake.New(imdsPrimaryMAC,
					imdsfake.ENI{MAC: "0a:1e:00:00:12:01", DeviceNumber: 1, LocalIPv4s: []string{"10.0.1.10"}, SubnetIPv4: "10.0.1.0/24"},
					imdsfake.ENI{MAC: "0a:1e:00:00:12:02", DeviceNumber: 2, LocalIPv4s: []string{"10.0.2.10"}, IPv6s: []string{"2001:db8:2::10"},
						SubnetIPv4: "10.0.2.0/24", SubnetIPv6: []string{"2001:db8:2::/64"}})
				extra = fmt.Sprintf(`,"imds":{"endpoint":%q}`, imdsfake.Start(t, fake))
			}
			env := func(verb, ifname string) h.Env {
				e := imdsEnv(t, verb, ns, ifname)
				imdsStatePath(t, e)
				return e
			}
			for _, c := range []struct{ ifname, prev string }{{"eth0", prev0}, {"eth1", prev1}} {
				r, _ := runPlugin(t, env("ADD", c.ifname), chainConfWith(c.prev, extra))
				r.MustSucceed(t, "ADD "+c.ifname)
			}
			egress(t, ns, "10.0.1.10", "8.8.8.8", "via 10.0.1.1 dev eth0")
			egress(t, ns, "10.0.2.10", "8.8.8.8", "via 10.0.2.1 dev eth1")
			egress(t, ns, "2001:db8:2::10", "2001:db8:99::1", "via fe80::1 dev eth1")
			for _, c := range []struct{ ifname, prev string }{{"eth0", prev0}, {"eth1", prev1}} {
				r, _ := runPlugin(t, env("CHECK", c.ifname), chainConfWith(c.prev, extra))
				r.MustSucceed(t, "CHECK "+c.ifname)
			}
			for _, c := range []struct{ ifname, prev string }{{"eth1", prev1}, {"eth0", prev0}} {
				r, _ := runPlugin(t, env("DEL", c.ifname), chainConfWith(c.prev, extra))
				r.MustSucceed(t, "DEL "+c.ifname)
			}
			assertNothingOurs(t, nl)
			rep.add("%s: 8.8.8.8 from each ENI via its own gateway and dev, IPv6 via fe80::1 dev eth1; CHECK passes; DEL leaves nothing", mode)
		})
	}
}

// TestRouteMoreSpecificViaOtherHop: a route through the ENI via another
// next hop than the default gateway — from the chain's IPAM (prevResult
// and main) or only in main (standalone) — is carried into the ENI's
// table; one via the default gateway is not; CHECK demands the prevResult
// copies, tolerates main routes added later, and the next ADD carries them.
func TestRouteMoreSpecificViaOtherHop(t *testing.T) {
	rep := scenario(t, "RT2", "a more specific route through the ENI via another next hop is carried into its table")
	t.Run("chained", func(t *testing.T) {
		ns := h.NewNetns(t)
		nl := ns.Handle(t)
		eni := h.NewENI(t)
		chain := h.NewChain(t, "task", "1.1.0",
			hostDeviceConf(eni.Name, `{"address":"10.0.1.10/24","gateway":"10.0.1.1"}`,
				`{"dst":"0.0.0.0/0","gw":"10.0.1.1"},{"dst":"10.100.0.0/16","gw":"10.0.1.254"},{"dst":"203.0.113.0/24","gw":"10.0.1.1"}`),
			ourConf)
		chain.MustRun(t, "add", "task", ns)
		_, routes := h.Ours(t, nl)
		equalSets(t, "routes", routeSet(routes), []string{
			"table 10000 default via 10.0.1.1",
			"table 10000 10.0.1.0/24 src 10.0.1.10",
			"table 10000 10.100.0.0/16 via 10.0.1.254",
		})
		egress(t, ns, "10.0.1.10", "10.100.1.1", "via 10.0.1.254 dev eth0")
		egress(t, ns, "10.0.1.10", "203.0.113.7", "via 10.0.1.1 dev eth0")
		chain.MustRun(t, "check", "task", ns)
		// The prevResult copy deleted by hand: CHECK names it.
		ns.IP(t, "route", "del", "10.100.0.0/16", "table", "10000")
		if out, err := chain.Run(t, "check", "task", ns); err == nil || !strings.Contains(out, "10.100.0.0/16 via 10.0.1.254") {
			t.Fatalf("CHECK without the copy: %v %s", err, out)
		}
		// A main route through the ENI added after ADD: CHECK does not
		// demand it (only the deleted copy is named); the next ADD
		// carries it and restores the copy.
		ns.IP(t, "route", "add", "10.101.0.0/16", "via", "10.0.1.253", "dev", "eth0")
		if out, _ := chain.Run(t, "check", "task", ns); strings.Contains(out, "10.101.0.0/16") || !strings.Contains(out, "10.100.0.0/16") {
			t.Fatalf("CHECK must name only the deleted prevResult copy: %s", out)
		}
		prev := prevResult1(ns, "eth0", `{"address":"10.0.1.10/24","gateway":"10.0.1.1"}`, `{"dst":"0.0.0.0/0","gw":"10.0.1.1"},{"dst":"10.100.0.0/16","gw":"10.0.1.254"}`)
		runDirect(t, "ADD", ns, "eth0", chainConfWith(prev, "")).MustSucceed(t, "re-ADD")
		egress(t, ns, "10.0.1.10", "10.100.1.1", "via 10.0.1.254 dev eth0")
		egress(t, ns, "10.0.1.10", "10.101.1.1", "via 10.0.1.253 dev eth0")
		chain.MustRun(t, "check", "task", ns)
		chain.MustRun(t, "del", "task", ns)
		assertNothingOurs(t, nl)
		rep.add("chained: 10.100.0.0/16 via 10.0.1.254 carried, 203.0.113.0/24 via the default gateway not; CHECK names a deleted copy, tolerates a later main route; re-ADD carries it; DEL leaves nothing")
	})
	t.Run("standalone", func(t *testing.T) {
		ns := h.NewNetns(t)
		nl := ns.Handle(t)
		eni := h.NewENI(t)
		eni.MoveInto(t, ns, "eth0", []string{"10.0.1.10/24"}, "10.0.1.1")
		ns.IP(t, "route", "add", "10.100.0.0/16", "via", "10.0.1.254", "dev", "eth0", "proto", "static")
		mainBefore := h.MainRoutes(t, nl)
		runDirect(t, "ADD", ns, "eth0", conf11("")).MustSucceed(t, "ADD")
		egress(t, ns, "10.0.1.10", "10.100.1.1", "via 10.0.1.254 dev eth0")
		egress(t, ns, "10.0.1.10", "8.8.8.8", "via 10.0.1.1 dev eth0")
		runDirect(t, "CHECK", ns, "eth0", conf11("")).MustSucceed(t, "CHECK")
		if got := h.MainRoutes(t, nl); strings.Join(got, "\n") != strings.Join(mainBefore, "\n") {
			t.Fatalf("main changed: %q", got)
		}
		runDirect(t, "DEL", ns, "eth0", conf11("")).MustSucceed(t, "DEL")
		assertNothingOurs(t, nl)
		rep.add("standalone: main's 10.100.0.0/16 via 10.0.1.254 dev eth0 carried; main unchanged; DEL leaves nothing")
	})
}

// TestRouteHostAddressOnLinkGateway: a /32 address whose gateway is
// outside it (main: default via the gateway onlink), standalone and
// chained: ADD succeeds with an onlink default in the table.
func TestRouteHostAddressOnLinkGateway(t *testing.T) {
	rep := scenario(t, "RT3", "/32 address with an on-link gateway (default via gw dev eth0 onlink)")
	for _, mode := range []string{"standalone", "chained"} {
		t.Run(mode, func(t *testing.T) {
			ns := h.NewNetns(t)
			nl := ns.Handle(t)
			eni := h.NewENI(t)
			eni.MoveInto(t, ns, "eth0", []string{"10.0.3.10/32"})
			ns.IP(t, "route", "add", "default", "via", "10.0.3.1", "dev", "eth0", "onlink")
			conf := conf11("")
			if mode == "chained" {
				conf = chainConfWith(prevResult1(ns, "eth0", `{"address":"10.0.3.10/32","gateway":"10.0.3.1"}`, ""), "")
			}
			runDirect(t, "ADD", ns, "eth0", conf).MustSucceed(t, "ADD")
			if got := ns.IP(t, "route", "show", "table", "10000"); !strings.Contains(got, "default via 10.0.3.1 dev eth0 proto 236 onlink") &&
				!strings.Contains(got, "default via 10.0.3.1 dev eth0 proto ec2-policy-routes onlink") {
				t.Fatalf("table 10000:\n%s", got)
			}
			egress(t, ns, "10.0.3.10", "8.8.8.8", "via 10.0.3.1 dev eth0 table 10000")
			runDirect(t, "CHECK", ns, "eth0", conf).MustSucceed(t, "CHECK")
			runDirect(t, "ADD", ns, "eth0", conf).MustSucceed(t, "retried ADD")
			if ru, rt := oursCount(t, nl); ru != 1 || rt != 2 {
				t.Fatalf("retried ADD: %d rules %d routes", ru, rt)
			}
			runDirect(t, "DEL", ns, "eth0", conf).MustSucceed(t, "DEL")
			assertNothingOurs(t, nl)
			rep.add("%s: ADD ok, table default via 10.0.3.1 onlink, 8.8.8.8 from 10.0.3.10 via it; CHECK and retried ADD converge", mode)
		})
	}
}

// TestRouteRefusals: a priority after the main rule and a link listed
// twice are refused with code 7 naming the field; nothing is installed.
func TestRouteRefusals(t *testing.T) {
	rep := scenario(t, "RT4", "refused: priority after the main rule, one interface listed twice (config or prevResult)")
	ns := h.NewNetns(t)
	nl := ns.Handle(t)
	eni := h.NewENI(t)
	eni.MoveInto(t, ns, "eth0", []string{"10.0.1.10/24"}, "10.0.1.1")
	twice := fmt.Sprintf(`{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":%q},{"name":"eth0","sandbox":%q}],"ips":[{"address":"10.0.1.10/24","interface":0},{"address":"10.0.1.10/24","interface":1}]}`, ns.Path, ns.Path)
	for _, c := range []struct {
		name string
		conf []byte
		msg  []string
	}{
		{"priority 40000", conf11(`"priority":40000`), []string{"priority 40000 is after the main rule (32766)"}},
		{"interfaces listed twice", conf11(`"interfaces":["eth0","eth0"]`), []string{`interfaces[1]: "eth0" is already interfaces[0]`}},
		{"prevResult naming eth0 twice", chainConfWith(twice, ""), []string{"eth0 and eth0 name one link"}},
	} {
		r, p := runPlugin(t, cniEnv("ADD", ns, "eth0"), c.conf)
		mustFail(t, r, c.name, 7, c.msg...)
		assertNoResidue(t, []*h.Netns{ns}, p)
		rep.add("%s: code 7 %q, nothing installed", c.name, r.Err.Msg)
	}
	assertNothingOurs(t, nl)
}

// TestRouteForeignObjectInIMDSTable: IMDS numbering picks a table a
// foreign route (or rule) already uses: ADD refuses with code 7 naming the
// table and the owner's protocol, installs nothing and leaves the foreign
// objects; without IMDS the allocation steps over such a table.
func TestRouteForeignObjectInIMDSTable(t *testing.T) {
	rep := scenario(t, "RT5", "a foreign route or rule in the IMDS-numbered table: refused (code 7), never shared")
	for _, foreign := range [][]string{
		{"route", "add", "10.9.0.0/16", "dev", "eth0", "table", "10002", "proto", "static"},
		{"rule", "add", "from", "192.0.2.7/32", "lookup", "10002", "priority", "700", "proto", "boot"},
	} {
		t.Run(foreign[0], func(t *testing.T) {
			ns := h.NewNetns(t)
			nl := ns.Handle(t)
			eni := h.NewENI(t)
			eni.SetMAC(t, "0a:1e:00:00:12:11")
			eni.MoveInto(t, ns, "eth0", []string{"10.0.5.10/24"}, "10.0.5.1")
			ns.IP(t, foreign...)
			before := foreignState(t, nl)
			fake := imdsfake.New(imdsPrimaryMAC, imdsfake.ENI{MAC: "0a:1e:00:00:12:11", DeviceNumber: 2, InterfaceID: "eni-0ccc000000000012a",
				LocalIPv4s: []string{"10.0.5.10"}, SubnetIPv4: "10.0.5.0/24"})
			env := imdsEnv(t, "ADD", ns, "eth0")
			imdsStatePath(t, env)
			r, p := runPlugin(t, env, imdsConf(t, imdsfake.Start(t, fake), ""))
			owner := map[string]string{"route": "route 10.9.0.0/16 proto static (4)", "rule": "rule from 192.0.2.7/32 lookup 10002 proto boot (3)"}[foreign[0]]
			mustFail(t, r, "ADD into a foreign table", 7, "table 10002", owner)
			assertNoResidue(t, []*h.Netns{ns}, p)
			equalSets(t, "foreign state", foreignState(t, nl), before)
			// Without IMDS the table is never picked: 10000 is free.
			runDirect(t, "ADD", ns, "eth0", conf11(`"tableBase":10002`)).MustSucceed(t, "ADD without IMDS")
			rules, _ := h.Ours(t, nl)
			if len(rules) != 1 || rules[0].Table != 10003 {
				t.Fatalf("allocation with tableBase 10002: %q", h.RuleStrings(rules))
			}
			runDirect(t, "DEL", ns, "eth0", conf11(`"tableBase":10002`)).MustSucceed(t, "DEL")
			equalSets(t, "foreign state after DEL", foreignState(t, nl), before)
			rep.add("foreign %s: code 7 %q; without IMDS from tableBase 10002 the plugin took 10003", foreign[0], r.Err.Msg)
		})
	}
}

// TestRouteReAddOtherTableBase: a re-ADD with another tableBase moves the
// link's rules and routes to the new table (allocated, or IMDS-numbered)
// and says so in the log line's note; nothing stays in the old table.
func TestRouteReAddOtherTableBase(t *testing.T) {
	rep := scenario(t, "RT6", "re-ADD with another tableBase converges to the new table, noted in the log")
	for _, withIMDS := range []bool{false, true} {
		t.Run(map[bool]string{false: "allocated", true: "imds"}[withIMDS], func(t *testing.T) {
			ns := h.NewNetns(t)
			nl := ns.Handle(t)
			eni := h.NewENI(t)
			eni.SetMAC(t, "0a:1e:00:00:12:21")
			eni.MoveInto(t, ns, "eth0", []string{"10.0.6.10/24"}, "10.0.6.1")
			env := imdsEnv(t, "ADD", ns, "eth0")
			record := imdsStatePath(t, env)
			conf := func(base int) []byte { return conf11(`"tableBase":` + strconv.Itoa(base)) }
			from, to := 10000, 20000
			if withIMDS {
				fake := imdsfake.New(imdsPrimaryMAC, imdsfake.ENI{MAC: "0a:1e:00:00:12:21", DeviceNumber: 1, LocalIPv4s: []string{"10.0.6.10"}, SubnetIPv4: "10.0.6.0/24"})
				url := imdsfake.Start(t, fake)
				conf = func(base int) []byte {
					return []byte(strings.Replace(string(imdsConf(t, url, "")), `"linkTimeout"`, `"tableBase":`+strconv.Itoa(base)+`,"linkTimeout"`, 1))
				}
				from, to = 10001, 20001
			}
			r0, _ := runPlugin(t, env, conf(10000))
			r0.MustSucceed(t, "ADD with tableBase 10000")
			if rules, _ := h.Ours(t, nl); len(rules) != 1 || rules[0].Table != from {
				t.Fatalf("first ADD: %q", h.RuleStrings(rules))
			}
			r, p := runPlugin(t, env, conf(20000))
			r.MustSucceed(t, "re-ADD with tableBase 20000")
			rules, routes := h.Ours(t, nl)
			for _, ru := range rules {
				if ru.Table != to || ru.Priority != to {
					t.Fatalf("rules after re-ADD: %q", h.RuleStrings(rules))
				}
			}
			for _, rt := range routes {
				if rt.Table != to {
					t.Fatalf("routes after re-ADD: %q", routeSet(routes))
				}
			}
			egress(t, ns, "10.0.6.10", "8.8.8.8", fmt.Sprintf("via 10.0.6.1 dev eth0 table %d", to))
			lines := logReadAll(t, p.LogFile)
			want := fmt.Sprintf("interface eth0 moved from table %d to %d", from, to)
			if len(lines) == 0 || !strings.Contains(lines[len(lines)-1].Note, want) {
				t.Fatalf("log line's note does not say %q: %+v", want, lines)
			}
			check := imdsEnv(t, "CHECK", ns, "eth0")
			c, _ := runPlugin(t, check, conf(20000))
			c.MustSucceed(t, "CHECK with the new tableBase")
			d, _ := runPlugin(t, imdsEnv(t, "DEL", ns, "eth0"), conf(20000))
			d.MustSucceed(t, "DEL")
			assertNothingOurs(t, nl)
			assertNoAltNamesOfOurs(t, nl)
			if imdsExists(record) {
				t.Fatalf("DEL left the altname record %s", record)
			}
			rep.add("%s: table %d -> %d, note %q", map[bool]string{false: "allocated", true: "imds"}[withIMDS], from, to, lines[len(lines)-1].Note)
		})
	}
}

// TestRouteReAddLowerTableBase: a re-ADD whose tableBase range still holds
// the link's table keeps it (a retried ADD never renumbers) and the log
// line's note says why, and what a fresh ADD would choose.
func TestRouteReAddLowerTableBase(t *testing.T) {
	rep := scenario(t, "RT6b", "re-ADD with a lower tableBase keeps the table, the log note says why")
	ns := h.NewNetns(t)
	nl := ns.Handle(t)
	eni := h.NewENI(t)
	eni.MoveInto(t, ns, "eth0", []string{"10.0.6.10/24"}, "10.0.6.1")
	// One attachment throughout (same container ID): DEL acts only on the
	// links its own attachment marked.
	first, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), conf11(""))
	first.MustSucceed(t, "ADD with tableBase 10000")
	r, p := runPlugin(t, cniEnv("ADD", ns, "eth0"), conf11(`"tableBase":9000`))
	r.MustSucceed(t, "re-ADD with tableBase 9000")
	if rules, _ := h.Ours(t, nl); len(rules) != 1 || rules[0].Table != 10000 {
		t.Fatalf("rules: %q", h.RuleStrings(rules))
	}
	lines := logReadAll(t, p.LogFile)
	want := "interface eth0 keeps table 10000, inside tableBase 9000's range (a fresh ADD would choose 9000"
	if len(lines) == 0 || !strings.Contains(lines[len(lines)-1].Note, want) {
		t.Fatalf("log line's note does not say %q: %+v", want, lines)
	}
	d, _ := runPlugin(t, cniEnv("DEL", ns, "eth0"), conf11(`"tableBase":9000`))
	d.MustSucceed(t, "DEL")
	assertNothingOurs(t, nl)
	rep.add("table 10000 kept; note %q", lines[len(lines)-1].Note)
}

// routeGet returns `ip route get <dst> from <src>` in ns.
func routeGet(t *testing.T, ns *h.Netns, src, dst string) string {
	t.Helper()
	args := []string{"ip", "route", "get", dst, "from", src}
	if strings.Contains(dst, ":") {
		args = []string{"ip", "-6", "route", "get", dst, "from", src}
	}
	out, err := ns.Exec(args...)
	if err != nil {
		t.Fatalf("%s: %v %s", strings.Join(args, " "), err, out)
	}
	return out
}

// wantRouteGet asserts that ENI-sourced traffic to dst leaves with each of
// the fragments (next hop, metrics).
func wantRouteGet(t *testing.T, ns *h.Netns, src, dst string, frags ...string) {
	t.Helper()
	got := routeGet(t, ns, src, dst)
	for _, f := range frags {
		if !strings.Contains(got, f) {
			t.Fatalf("ip route get %s from %s: %q lacks %q", dst, src, got, f)
		}
	}
}

// TestRouteMetricsCarried (issue 22.6): the table's default route and the
// routes it copies keep their metrics — from main (standalone: "default via
// 10.0.3.1 dev eth0 mtu 1500 advmss 1460", "10.100.0.0/16 via 10.0.3.254
// dev eth0 mtu 1300") and from prevResult's CNI 1.1 routes (chained, main
// without metrics; through cnitool with host-device and static, which put
// them in main as well): ENI-sourced `ip route get` shows them. CHECK names
// a route whose metrics drifted (code 11); the next ADD converges.
func TestRouteMetricsCarried(t *testing.T) {
	rep := scenario(t, "RT7", "route metrics (mtu, advmss) kept in the table: from main and from prevResult; CHECK names a drifted metric")
	t.Run("standalone", func(t *testing.T) {
		ns := h.NewNetns(t)
		nl := ns.Handle(t)
		h.NewENI(t).MoveInto(t, ns, "eth0", []string{"10.0.3.10/24"})
		ns.IP(t, "route", "add", "default", "via", "10.0.3.1", "dev", "eth0", "mtu", "1500", "advmss", "1460")
		ns.IP(t, "route", "add", "10.100.0.0/16", "via", "10.0.3.254", "dev", "eth0", "mtu", "1300", "proto", "static")
		mainBefore := ns.IP(t, "route", "show", "table", "main")
		runDirect(t, "ADD", ns, "eth0", conf11("")).MustSucceed(t, "ADD")
		wantRouteGet(t, ns, "10.0.3.10", "10.100.1.1", "via 10.0.3.254 dev eth0 table 10000", "mtu 1300")
		wantRouteGet(t, ns, "10.0.3.10", "8.8.8.8", "via 10.0.3.1 dev eth0 table 10000", "mtu 1500", "advmss 1460")
		runDirect(t, "CHECK", ns, "eth0", conf11("")).MustSucceed(t, "CHECK")
		// The table's default route replaced without its metrics: drift.
		ns.IP(t, "route", "replace", "default", "via", "10.0.3.1", "dev", "eth0", "table", "10000", "proto", "236")
		r := runDirect(t, "CHECK", ns, "eth0", conf11(""))
		mustFail(t, r, "CHECK after the drift", types.ErrTryAgainLater, "route 0.0.0.0/0 via 10.0.3.1", "table 10000 with mtu 1500, advmss 1460 (installed: no mtu, no advmss)")
		drift := r.Err.Msg
		runDirect(t, "ADD", ns, "eth0", conf11("")).MustSucceed(t, "re-ADD")
		wantRouteGet(t, ns, "10.0.3.10", "8.8.8.8", "mtu 1500", "advmss 1460")
		runDirect(t, "CHECK", ns, "eth0", conf11("")).MustSucceed(t, "CHECK after re-ADD")
		if got := ns.IP(t, "route", "show", "table", "main"); got != mainBefore {
			t.Fatalf("main changed:\n%s\nwas\n%s", got, mainBefore)
		}
		runDirect(t, "DEL", ns, "eth0", conf11("")).MustSucceed(t, "DEL")
		assertNothingOurs(t, nl)
		rep.add("standalone: ENI-sourced 10.100.1.1 via 10.0.3.254 mtu 1300, 8.8.8.8 via 10.0.3.1 mtu 1500 advmss 1460 (from main); CHECK after the table's default lost them: code 11 %q; re-ADD restored them; main unchanged; DEL leaves nothing", drift)
	})
	t.Run("chained prevResult", func(t *testing.T) {
		ns := h.NewNetns(t)
		nl := ns.Handle(t)
		h.NewENI(t).MoveInto(t, ns, "eth0", []string{"10.0.3.10/24"}, "10.0.3.1")
		ns.IP(t, "route", "add", "10.100.0.0/16", "via", "10.0.3.254", "dev", "eth0") // main: no metrics
		prev := prevResult1(ns, "eth0", `{"address":"10.0.3.10/24","gateway":"10.0.3.1"}`,
			`{"dst":"0.0.0.0/0","gw":"10.0.3.1","mtu":1500,"advmss":1460},{"dst":"10.100.0.0/16","gw":"10.0.3.254","mtu":1300}`)
		conf := chainConfWith(prev, "")
		runDirect(t, "ADD", ns, "eth0", conf).MustSucceed(t, "ADD")
		wantRouteGet(t, ns, "10.0.3.10", "10.100.1.1", "via 10.0.3.254 dev eth0 table 10000", "mtu 1300")
		wantRouteGet(t, ns, "10.0.3.10", "8.8.8.8", "via 10.0.3.1 dev eth0 table 10000", "mtu 1500", "advmss 1460")
		runDirect(t, "CHECK", ns, "eth0", conf).MustSucceed(t, "CHECK")
		ns.IP(t, "route", "replace", "10.100.0.0/16", "via", "10.0.3.254", "dev", "eth0", "table", "10000", "proto", "236", "mtu", "1400")
		r := runDirect(t, "CHECK", ns, "eth0", conf)
		mustFail(t, r, "CHECK after the drift", types.ErrTryAgainLater, "route 10.100.0.0/16 via 10.0.3.254", "with mtu 1300 (installed: mtu 1400)")
		drift := r.Err.Msg
		runDirect(t, "ADD", ns, "eth0", conf).MustSucceed(t, "re-ADD")
		wantRouteGet(t, ns, "10.0.3.10", "10.100.1.1", "mtu 1300")
		runDirect(t, "CHECK", ns, "eth0", conf).MustSucceed(t, "CHECK after re-ADD")
		runDirect(t, "DEL", ns, "eth0", conf).MustSucceed(t, "DEL")
		assertNothingOurs(t, nl)
		rep.add("chained, prevResult 1.1 routes with mtu/advmss, main without: the table carries them; CHECK after the copy's mtu changed: code 11 %q; re-ADD restored it; DEL leaves nothing", drift)
	})
	t.Run("cnitool host-device static", func(t *testing.T) {
		ns := h.NewNetns(t)
		nl := ns.Handle(t)
		eni := h.NewENI(t)
		chain := h.NewChain(t, "task", "1.1.0",
			hostDeviceConf(eni.Name, `{"address":"10.0.3.10/24","gateway":"10.0.3.1"}`,
				`{"dst":"0.0.0.0/0","gw":"10.0.3.1","mtu":1500,"advmss":1460},{"dst":"10.100.0.0/16","gw":"10.0.3.254","mtu":1300}`),
			ourConf)
		chain.MustRun(t, "add", "task", ns)
		wantRouteGet(t, ns, "10.0.3.10", "10.100.1.1", "via 10.0.3.254 dev eth0 table 10000", "mtu 1300")
		wantRouteGet(t, ns, "10.0.3.10", "8.8.8.8", "via 10.0.3.1 dev eth0 table 10000", "mtu 1500", "advmss 1460")
		chain.MustRun(t, "check", "task", ns)
		chain.MustRun(t, "del", "task", ns)
		assertNothingOurs(t, nl)
		rep.add("cnitool chain host-device + static (routes with mtu/advmss) + ec2-policy-routes: ENI-sourced traffic keeps mtu 1300 / mtu 1500 advmss 1460; CHECK passes; DEL leaves nothing")
	})
}
