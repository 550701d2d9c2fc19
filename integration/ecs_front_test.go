package integration

// The ECS front (package ecsfront) driven as the stock ECS agent drives
// ECS_CNI_PLUGINS_PATH: startup probes on every name, then libcni with one
// config per call, cniVersion 0.3.0, CNI_PATH = the front's directory only,
// netns /proc/<pid>/ns/net. The upstream is integration/cmd/fake-vpc-eni.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/imdsfake"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// TestECSFrontProbes: --capabilities and --version on every name the agent
// probes answer byte for byte as the upstream does, and each probe through
// a front is logged with the upstream's exit status.
func TestECSFrontProbes(t *testing.T) {
	l := newFrontLayout(t, nil)
	for _, name := range ecsfront.KnownPlugins {
		for _, arg := range []string{"--capabilities", "--version"} {
			got, gotExit := probe(t, l.Dir, name, arg)
			want, wantExit := probe(t, l.Up, name, arg)
			if !bytes.Equal(got, want) || gotExit != wantExit {
				t.Fatalf("%s %s: front %q (exit %d), upstream %q (exit %d)", name, arg, got, gotExit, want, wantExit)
			}
		}
	}
	if got, _ := probe(t, l.Dir, "vpc-eni", "--capabilities"); string(got) != `{"capabilities":["awsvpc-network-mode"]}`+"\n" {
		t.Fatalf("capabilities %q", got)
	}
	probes := 0
	for _, m := range l.logLines(t) {
		if m["verb"] != "probe" {
			continue
		}
		probes++
		up, _ := m["upstream"].([]any)
		if len(up) != 1 || m["outcome"] != "ok" {
			t.Fatalf("probe log line without one upstream run: %v", m)
		}
		if r := up[0].(map[string]any); r["exit"] != float64(0) || r["duration_ms"] == nil {
			t.Fatalf("probe log line: %v", m)
		}
	}
	if probes != 2*len(ecsfront.FrontedPlugins)+1 {
		t.Fatalf("%d probe lines logged, want %d", probes, 2*len(ecsfront.FrontedPlugins)+1)
	}
}

// TestECSFrontAddDel: one task ENI through libcni. After ADD the rules and
// table routes are there, the IMDS blackhole vpc-eni put in main applies to
// traffic sourced from the ENI, and main holds nothing of ours; after DEL
// nothing of ours is left and the ENI is back in the host as ecsXXXXXX.
func TestECSFrontAddDel(t *testing.T) {
	l := newFrontLayout(t, nil)
	task, eni := newTaskNS(t), newTaskENI(t, "10.0.5.20/24", "10.0.5.1")
	a := newAgent(t, l)
	if err := a.add(t, eni.eniConf(false), task, "task-1"); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	nl := task.Handle(t)
	assertOneENIRouting(t, task, nl, "10.0.5.20", "10.0.5.0/24", "10.0.5.1")
	if err := a.del(t, eni.eniConf(false), task, "task-1"); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	assertNothingOurs(t, nl)
	assertNoLinkWithMAC(t, nl, eni.MAC)
	assertENIInHost(t, eni)
	if got := l.calls("vpc-eni"); !slices.Equal(got, []string{"ADD", "DEL"}) {
		t.Fatalf("upstream calls %v, want [ADD DEL]", got)
	}
	assertLogged(t, l, "ADD", "ok", "DEL", "ok")
}

// assertOneENIRouting checks the routing of one ENI with IMDS off: table
// tableBase (10000), its rule, default and subnet routes, the IMDS
// blackhole in force for ENI-sourced traffic, and main free of ours.
func assertOneENIRouting(t *testing.T, task *taskNS, nl *netlink.Handle, addr, subnet, gw string) {
	t.Helper()
	rules, routes := h.Ours(t, nl)
	want := []string{fmt.Sprintf("from %s/32 lookup 10000 prio 10000", addr)}
	if got := h.RuleStrings(rules); !slices.Equal(got, want) {
		t.Fatalf("rules %q, want %q", got, want)
	}
	got := routeSet(routes)
	for _, w := range []string{"table 10000 default", "table 10000 " + subnet, "table 10000 169.254.169.254/32 blackhole"} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, w) }) {
			t.Fatalf("routes %q lack %q", got, w)
		}
	}
	for _, r := range routes {
		if r.Table == unix.RT_TABLE_MAIN {
			t.Fatalf("a route of ours (protocol %d) in main: %v", plan.Protocol, r)
		}
	}
	// The kernel answers a route lookup that ends in a blackhole with
	// EINVAL; a lookup through the table's default route would succeed.
	if out, err := task.Exec("ip", "route", "get", "169.254.169.254", "from", addr); err == nil || !strings.Contains(out, "Invalid argument") {
		t.Fatalf("IMDS reachable from the ENI's address (want the blackhole's EINVAL): %v %s", err, out)
	}
	if out := task.IP(t, "route", "get", "192.0.2.7", "from", addr); !strings.Contains(out, "via "+gw) || !strings.Contains(out, "table 10000") {
		t.Fatalf("ENI-sourced traffic not routed by table 10000: %s", out)
	}
}

// assertLogged checks the front's log holds lines with these verb/outcome
// pairs, in order, each with its upstream runs.
func assertLogged(t *testing.T, l *frontLayout, pairs ...string) {
	t.Helper()
	var got []string
	for _, m := range l.logLines(t) {
		if m["verb"] == "probe" {
			continue
		}
		if _, ok := m["upstream"]; !ok {
			t.Fatalf("log line without upstream runs: %v", m)
		}
		got = append(got, fmt.Sprint(m["verb"]), fmt.Sprint(m["outcome"]))
	}
	if !slices.Equal(got, pairs) {
		t.Fatalf("logged %q, want %q", got, pairs)
	}
}

// cniErr extracts the CNI error libcni returns.
func cniErr(t *testing.T, err error) *types.Error {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("not a CNI error: %v", err)
	}
	return te
}

var _ = os.Getpid

// TestECSFrontMisbehavingUpstream: each way vpc-eni can misbehave ends in
// a clear CNI error, nothing of ours, and the ENI back in the host (the
// front ran the upstream DEL), before the agent's own DEL, which succeeds.
func TestECSFrontMisbehavingUpstream(t *testing.T) {
	for _, tc := range []struct {
		mode string
		code uint
		msg  string
	}{
		{"noconfig", types.ErrTryAgainLater, "vpc-eni reported success but"},
		{"fail", types.ErrInternal, "failing after the move"}, // the upstream's own error, passed through
		{"hang", types.ErrTryAgainLater, "did not finish within upstreamTimeout 2s"},
		{"down", types.ErrTryAgainLater, "timed out after linkTimeout"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			l := newFrontLayout(t, map[string]any{"upstreamTimeout": "2s", "linkTimeout": "1s"})
			l.setMode(t, "vpc-eni", tc.mode)
			task, eni := newTaskNS(t), newTaskENI(t, "10.0.6.20/24", "10.0.6.1")
			a := newAgent(t, l)
			err := a.add(t, eni.eniConf(false), task, "task-"+tc.mode)
			if err == nil {
				t.Fatal("ADD succeeded")
			}
			te := cniErr(t, err)
			if te.Code != tc.code || !strings.Contains(te.Msg, tc.msg) {
				t.Fatalf("error %d %q, want %d containing %q", te.Code, te.Msg, tc.code, tc.msg)
			}
			nl := task.Handle(t)
			assertNothingOurs(t, nl)
			assertNoLinkWithMAC(t, nl, eni.MAC)
			assertENIInHost(t, eni)
			if got := l.calls("vpc-eni"); !slices.Equal(got, []string{"ADD", "DEL"}) {
				t.Fatalf("upstream calls %v, want [ADD DEL]", got)
			}
			if err := a.del(t, eni.eniConf(false), task, "task-"+tc.mode); err != nil {
				t.Fatalf("agent DEL after the failed ADD: %v", err)
			}
			assertNothingOurs(t, nl)
			assertENIInHost(t, eni)
		})
	}
}

// TestECSFrontTwoENIs: two ENIs of one task, two configs and two calls,
// get two tables; DEL of one leaves the other's routing alone.
func TestECSFrontTwoENIs(t *testing.T) {
	l := newFrontLayout(t, nil)
	task := newTaskNS(t)
	e1, e2 := newTaskENI(t, "10.0.7.20/24", "10.0.7.1"), newTaskENI(t, "10.0.8.20/24", "10.0.8.1")
	a := newAgent(t, l)
	// The agent names every task ENI eth0 in its own config; a second ENI
	// of a task would need another ifname, which libcni takes per call.
	rt2 := func() { a.ifname = "eth1" }
	if err := a.add(t, e1.eniConf(false), task, "task-2"); err != nil {
		t.Fatalf("ADD 1: %v", err)
	}
	rt2()
	if err := a.add(t, e2.eniConf(false), task, "task-2"); err != nil {
		t.Fatalf("ADD 2: %v", err)
	}
	nl := task.Handle(t)
	rules, _ := h.Ours(t, nl)
	want := []string{"from 10.0.7.20/32 lookup 10000 prio 10000", "from 10.0.8.20/32 lookup 10001 prio 10001"}
	if got := h.RuleStrings(rules); !slices.Equal(sorted(got), want) {
		t.Fatalf("rules %q, want %q", got, want)
	}
	if err := a.del(t, e2.eniConf(false), task, "task-2"); err != nil {
		t.Fatalf("DEL 2: %v", err)
	}
	rules, _ = h.Ours(t, nl)
	if got := h.RuleStrings(rules); !slices.Equal(got, want[:1]) {
		t.Fatalf("after DEL of the second ENI: rules %q, want %q", got, want[:1])
	}
	assertENIInHost(t, e2)
	a.ifname = "eth0"
	if err := a.del(t, e1.eniConf(false), task, "task-2"); err != nil {
		t.Fatalf("DEL 1: %v", err)
	}
	assertNothingOurs(t, nl)
	assertENIInHost(t, e1)
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// TestECSFrontIMDS: a task ENI IMDS knows gets the IMDS numbering (table
// 10000+100*card+device) and rules for its secondary IPs, without link
// altnames (their ownership record would not survive an agent restart); a
// branch ENI, which IMDS does not list, makes no IMDS request at all and
// takes the first free table from tableBase.
func TestECSFrontIMDS(t *testing.T) {
	t.Run("eni", func(t *testing.T) {
		task, eni := newTaskNS(t), newTaskENI(t, "10.0.9.20/24", "10.0.9.1")
		fake := imdsfake.New("0a:00:00:00:00:01", imdsfake.ENI{
			MAC: eni.MAC.String(), DeviceNumber: 2, InterfaceID: "eni-0abc0000000000902",
			LocalIPv4s: []string{"10.0.9.20", "10.0.9.21"}, SubnetIPv4: "10.0.9.0/24",
		})
		l := newFrontLayout(t, map[string]any{"imds": map[string]any{"endpoint": imdsfake.Start(t, fake), "timeout": "3s"}})
		a := newAgent(t, l)
		if err := a.add(t, eni.eniConf(false), task, "task-imds"); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		nl := task.Handle(t)
		rules, _ := h.Ours(t, nl)
		want := []string{"from 10.0.9.20/32 lookup 10002 prio 10002", "from 10.0.9.21/32 lookup 10002 prio 10002"}
		if got := sorted(h.RuleStrings(rules)); !slices.Equal(got, want) {
			t.Fatalf("rules %q, want %q", got, want)
		}
		if fake.Count() == 0 {
			t.Fatal("no IMDS request for a task ENI")
		}
		assertNoAltNamesOfOurs(t, nl)
		if err := a.del(t, eni.eniConf(false), task, "task-imds"); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		assertNothingOurs(t, nl)
		assertENIInHost(t, eni)
	})
	t.Run("branch", func(t *testing.T) {
		task, eni := newTaskNS(t), newTaskENI(t, "10.0.10.20/24", "10.0.10.1")
		// Even listed (real IMDS never lists a branch ENI), it is not asked.
		fake := imdsfake.New("0a:00:00:00:00:01", imdsfake.ENI{MAC: eni.MAC.String(), DeviceNumber: 3, LocalIPv4s: []string{"10.0.10.20"}})
		l := newFrontLayout(t, map[string]any{"imds": map[string]any{"endpoint": imdsfake.Start(t, fake), "timeout": "3s"}})
		a := newAgent(t, l)
		if err := a.add(t, eni.eniConf(true), task, "task-branch"); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		if n := fake.Count(); n != 0 {
			t.Fatalf("%d IMDS requests for a branch ENI: %v", n, fake.Requests())
		}
		nl := task.Handle(t)
		assertOneENIRouting(t, task, nl, "10.0.10.20", "10.0.10.0/24", "10.0.10.1")
		if err := a.del(t, eni.eniConf(true), task, "task-branch"); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		assertNothingOurs(t, nl)
		assertENIInHost(t, eni)
		if got := l.calls("vpc-branch-eni"); !slices.Equal(got, []string{"ADD", "DEL"}) {
			t.Fatalf("upstream vpc-branch-eni calls %v", got)
		}
	})
}
