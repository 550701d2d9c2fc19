package integration

// The ECS front (package ecsfront) driven as the stock ECS agent drives
// ECS_CNI_PLUGINS_PATH: startup probes on every name, then libcni with one
// config per call, cniVersion 0.3.0, CNI_PATH = the front's directory only,
// netns /proc/<pid>/ns/net. The upstream is integration/cmd/fake-vpc-eni.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/state"
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
		} else {
			t.Logf("probe %v: front %.1f ms, of which upstream %.1f ms", m["args"], m["duration_ms"], r["duration_ms"])
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
	for _, m := range l.logLines(t) {
		up := m["upstream"].([]any)[0].(map[string]any)
		t.Logf("%s: front %.1f ms, of which upstream %.1f ms", m["verb"], m["duration_ms"], up["duration_ms"])
	}
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
			if ours := tc.mode != "fail"; ours != strings.Contains(te.Msg, "the ENI plugin's DEL returned the ENI to the host") {
				t.Fatalf("error %q: says the DEL returned the ENI: want %v", te.Msg, ours)
			}
			nl := task.Handle(t)
			assertNothingOurs(t, nl)
			assertNoLinkWithMAC(t, nl, eni.MAC)
			assertENIInHost(t, eni)
			if got := l.calls("vpc-eni"); !slices.Equal(got, []string{"ADD", "DEL"}) {
				t.Fatalf("upstream calls %v, want [ADD DEL]", got)
			}
			by := map[bool]string{true: "upstream", false: "front"}[tc.mode == "fail"]
			if m := l.logLines(t)[0]; m["verb"] != "ADD" || m["outcome"] != "error" || m["by"] != by || len(m["upstream"].([]any)) != 2 {
				t.Fatalf("ADD log line %v, want an error by %s with two upstream runs (ADD, DEL)", m, by)
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
		// Nothing kept on the host for DEL: the agent's container loses /run.
		if rec := filepath.Join(state.DefaultDir, state.Name("task-imds", "eth0")); fileExists(rec) {
			t.Fatalf("state record %s written", rec)
		}
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

// TestECSFrontRefusesUntrusted: a settings file, upstream binary or upstream
// directory that is not root-owned or is writable by group or others (as
// sshd's StrictModes), a missing upstream, and an upstream that is itself
// a front: the probe fails with a message naming the path, ADD returns a
// CNI error, and the upstream is never executed. (The layout lives under
// /tmp: a sticky world-writable directory above root-owned entries is fine.)
func TestECSFrontRefusesUntrusted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, l *frontLayout)
		msg   string
	}{
		{"settings group-writable", func(t *testing.T, l *frontLayout) { chmod(t, l.Dir+"/"+ecsfront.SettingsFile, 0o664) }, "writable by group or others"},
		{"settings not root's", func(t *testing.T, l *frontLayout) { chown(t, l.Dir+"/"+ecsfront.SettingsFile, 1000) }, "owned by uid 1000"},
		{"upstream group-writable", func(t *testing.T, l *frontLayout) { chmod(t, l.Up+"/vpc-eni", 0o775) }, "writable by group or others"},
		{"upstream not root's", func(t *testing.T, l *frontLayout) { chown(t, l.Up+"/vpc-eni", 1000) }, "owned by uid 1000"},
		{"upstream dir world-writable", func(t *testing.T, l *frontLayout) { chmod(t, l.Up, 0o777) }, "writable by group or others"},
		{"upstream missing", func(t *testing.T, l *frontLayout) { rm(t, l.Up+"/vpc-eni") }, "does not exist"},
		{"upstream a symlink to a writable file", func(t *testing.T, l *frontLayout) {
			copyFile(t, l.Up+"/vpc-eni", l.Up+"/real-vpc-eni", 0o755)
			chmod(t, l.Up+"/real-vpc-eni", 0o757)
			rm(t, l.Up+"/vpc-eni")
			if err := os.Symlink(l.Up+"/real-vpc-eni", l.Up+"/vpc-eni"); err != nil {
				t.Fatal(err)
			}
		}, "real-vpc-eni is writable by group or others"},
		{"no settings file: the agent image's upstream", func(t *testing.T, l *frontLayout) {
			if fileExists(ecsfront.DefaultUpstreamDir) {
				t.Skip("this host has " + ecsfront.DefaultUpstreamDir)
			}
			rm(t, l.Dir+"/"+ecsfront.SettingsFile)
		}, "upstream plugin /amazon-ecs-cni-plugins/vpc-eni does not exist"},
		{"upstream is a front", func(t *testing.T, l *frontLayout) { l.Settings["upstream"] = l.Dir; l.writeSettings(t) }, "started by an ec2-policy-routes front"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFrontLayout(t, nil)
			tc.spoil(t, l)
			cmd := exec.Command(filepath.Join(l.Dir, "vpc-eni"), "--capabilities")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err == nil || len(out) != 0 || !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("probe: err %v, stdout %q, stderr %q; want a failure saying %q", err, out, stderr.String(), tc.msg)
			}
			task := newTaskNS(t)
			env := h.Env{Command: "ADD", ContainerID: "task-refused", Netns: task.Proc, IfName: "eth0", Path: l.Dir}
			r := h.Run(context.Background(), t, filepath.Join(l.Dir, "vpc-eni"), env, newTaskENIConfOnly())
			r.MustFailWith(t, "ADD", types.ErrInvalidNetworkConfig)
			if !strings.Contains(r.Err.Msg, tc.msg) {
				t.Fatalf("ADD error %q, want it to say %q", r.Err.Msg, tc.msg)
			}
			if calls := l.calls("vpc-eni"); len(calls) != 0 && tc.name != "upstream is a front" {
				t.Fatalf("upstream executed: %v", calls)
			}
		})
	}
}

// newTaskENIConfOnly is a valid vpc-eni config for an ENI that does not
// exist (nothing may run far enough to look for it).
func newTaskENIConfOnly() []byte {
	return []byte(`{"cniVersion":"0.3.0","name":"network-name","type":"vpc-eni","eniMACAddress":"0a:ee:00:00:00:01","eniIPAddresses":["10.0.11.20/24"],"gatewayIPAddresses":["10.0.11.1"],"blockInstanceMetadata":true}`)
}

func chmod(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Lchown(p, uid, 0); err != nil {
		t.Fatal(err)
	}
}

func rm(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

// TestECSFrontCheck: with a config version that has CHECK (0.4.0; the
// agent's 0.3.0 has none), CHECK runs the upstream's, then ours, which
// fails once a rule of ours is gone.
func TestECSFrontCheck(t *testing.T) {
	l := newFrontLayout(t, nil)
	task, eni := newTaskNS(t), newTaskENI(t, "10.0.17.20/24", "10.0.17.1")
	conf := bytes.Replace(eni.eniConf(false), []byte(`"0.3.0"`), []byte(`"0.4.0"`), 1)
	a := newAgent(t, l)
	if err := a.add(t, conf, task, "task-check"); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if err := a.check(t, conf, task, "task-check"); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}
	nl := task.Handle(t)
	rules, _ := h.Ours(t, nl)
	if err := nl.RuleDel(&rules[0]); err != nil {
		t.Fatal(err)
	}
	err := a.check(t, conf, task, "task-check")
	if err == nil || !strings.Contains(err.Error(), "CHECK failed: missing") {
		t.Fatalf("CHECK with a rule gone: %v", err)
	}
	if got := l.calls("vpc-eni"); !slices.Equal(got, []string{"ADD", "CHECK", "CHECK"}) {
		t.Fatalf("upstream calls %v", got)
	}
	if err := a.del(t, conf, task, "task-check"); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	assertNothingOurs(t, nl)
	assertENIInHost(t, eni)
}

func fileExists(p string) bool { _, err := os.Lstat(p); return err == nil }

// TestECSFrontADDResultIsUpstreams: the front's ADD prints exactly what
// the upstream prints for the same call (the agent reads the ENI's result
// from it), byte for byte.
func TestECSFrontADDResultIsUpstreams(t *testing.T) {
	l := newFrontLayout(t, nil)
	task, eni := newTaskNS(t), newTaskENI(t, "10.0.18.20/24", "10.0.18.1")
	env := h.Env{Command: "ADD", ContainerID: "task-result", Netns: task.Proc, IfName: "eth0"}
	run := func(dir, verb string) []byte {
		env.Command, env.Path = verb, dir
		r := h.Run(context.Background(), t, filepath.Join(dir, "vpc-eni"), env, eni.eniConf(false))
		r.MustSucceed(t, dir+" "+verb)
		return r.Stdout
	}
	viaFront := run(l.Dir, "ADD")
	run(l.Dir, "DEL")
	direct := run(l.Up, "ADD")
	run(l.Up, "DEL")
	if !bytes.Equal(viaFront, direct) || len(direct) == 0 {
		t.Fatalf("front printed %q, upstream %q", viaFront, direct)
	}
	assertNothingOurs(t, task.Handle(t))
	assertENIInHost(t, eni)
}

// TestECSFrontDualStack: a dual-stack task ENI as the agent configures it
// (IPv4 gateway only; IPv6 addresses with their prefix) gets rules for
// both families, and DEL removes them.
func TestECSFrontDualStack(t *testing.T) {
	l := newFrontLayout(t, nil)
	task, eni := newTaskNS(t), newTaskENI(t, "10.0.21.20/24", "10.0.21.1")
	conf := bytes.Replace(eni.eniConf(false), []byte(`"10.0.21.20/24"`), []byte(`"10.0.21.20/24","2600:1f14:21::20/64"`), 1)
	a := newAgent(t, l)
	if err := a.add(t, conf, task, "task-ds"); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	nl := task.Handle(t)
	rules, routes := h.Ours(t, nl)
	want := []string{"from 10.0.21.20/32 lookup 10000 prio 10000", "from 2600:1f14:21::20/128 lookup 10000 prio 10000"}
	if got := sorted(h.RuleStrings(rules)); !slices.Equal(got, want) {
		t.Fatalf("rules %q, want %q", got, want)
	}
	got := routeSet(routes)
	for _, w := range []string{"table 10000 2600:1f14:21::/64", "table 10000 fd00:ec2::254/128 blackhole", "table 10000 169.254.169.254/32 blackhole"} {
		if !slices.Contains(got, w) {
			t.Fatalf("routes %q lack %q", got, w)
		}
	}
	if err := a.del(t, conf, task, "task-ds"); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	assertNothingOurs(t, nl)
	assertENIInHost(t, eni)
}
