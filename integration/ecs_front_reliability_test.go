package integration

// Reliability and security scenarios of the ECS front (make stress reports
// them in docs/RELIABILITY.md with the plugin's own).

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
)

// TestECSFrontKilledMidADD: the agent SIGKILLs a plugin still running at
// its 60 s deadline. Killed while the upstream ADD hangs, and killed while
// our part waits for the link, the front leaves no upstream process behind
// (it dies with the front), and the agent's DEL that follows returns the
// ENI to the host with nothing of ours left.
func TestECSFrontKilledMidADD(t *testing.T) {
	rep := scenario(t, "E1", "ECS front: SIGKILL mid-ADD (agent deadline), then the agent's DEL cleans up")
	for _, mode := range []string{"hang", "down"} {
		t.Run(mode, func(t *testing.T) {
			l := newFrontLayout(t, map[string]any{"linkTimeout": "30s"})
			l.setMode(t, "vpc-eni", mode)
			task, eni := newTaskNS(t), newTaskENI(t, "10.0.12.20/24", "10.0.12.1")
			nl := task.Handle(t)
			env := h.Env{Command: "ADD", ContainerID: "task-kill", Netns: task.Proc, IfName: "eth0"}
			front, _ := startFront(t, l, "vpc-eni", env, eni.eniConf(false))
			upstream := filepath.Join(l.Up, "vpc-eni")
			// The upstream has configured eth0: it now hangs (hang), or has
			// exited and the front waits for the link to come up (down).
			waitFor(t, "eth0 configured by the upstream", 10*time.Second, func() bool {
				return hasAddr(nl, "eth0", eni.Addr) && (mode == "hang") == (len(running(upstream)) > 0)
			})
			start := time.Now()
			_ = front.Process.Signal(syscall.SIGKILL)
			_ = front.Wait()
			waitFor(t, "the upstream to die with the front", 5*time.Second, func() bool { return len(running(upstream)) == 0 })
			a := newAgent(t, l)
			if err := a.del(t, eni.eniConf(false), task, "task-kill"); err != nil {
				t.Fatalf("agent DEL after the kill: %v", err)
			}
			assertNothingOurs(t, nl)
			assertNetnsUnlocked(t, task.Netns)
			assertNoLinkWithMAC(t, nl, eni.MAC)
			assertENIInHost(t, eni)
			assertHostClean(t)
			rep.add("%s: front SIGKILLed while %s; upstream gone and ENI back in the host %.0f ms after the kill (DEL included)",
				mode, map[string]string{"hang": "the upstream ADD hung", "down": "our part waited for the link"}[mode], ms(time.Since(start)))
		})
	}
}

// TestECSFrontDelTwice: a repeated DEL (the agent retries, or cleans up
// after a restart) succeeds and changes nothing more.
func TestECSFrontDelTwice(t *testing.T) {
	rep := scenario(t, "E2", "ECS front: DEL twice")
	l := newFrontLayout(t, nil)
	task, eni := newTaskNS(t), newTaskENI(t, "10.0.13.20/24", "10.0.13.1")
	a := newAgent(t, l)
	if err := a.add(t, eni.eniConf(false), task, "task-del2"); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	for i := 1; i <= 2; i++ {
		start := time.Now()
		if err := a.del(t, eni.eniConf(false), task, "task-del2"); err != nil {
			t.Fatalf("DEL %d: %v", i, err)
		}
		rep.add("DEL %d: ok in %.1f ms", i, ms(time.Since(start)))
	}
	nl := task.Handle(t)
	assertNothingOurs(t, nl)
	assertNetnsUnlocked(t, task.Netns)
	assertENIInHost(t, eni)
	assertHostClean(t)
	if got := l.calls("vpc-eni"); !slices.Equal(got, []string{"ADD", "DEL", "DEL"}) {
		t.Fatalf("upstream calls %v", got)
	}
}

// TestECSFrontDelNetnsGone: the task's namespace is gone (its process
// exited) before the DEL: the DEL succeeds, the host holds nothing of ours.
func TestECSFrontDelNetnsGone(t *testing.T) {
	rep := scenario(t, "E3", "ECS front: DEL with the task namespace gone")
	l := newFrontLayout(t, nil)
	task, eni := newTaskNS(t), newTaskENI(t, "10.0.14.20/24", "10.0.14.1")
	a := newAgent(t, l)
	if err := a.add(t, eni.eniConf(false), task, "task-gone"); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	task.destroy()
	start := time.Now()
	if err := a.del(t, eni.eniConf(false), task, "task-gone"); err != nil {
		t.Fatalf("DEL with the namespace gone: %v", err)
	}
	assertHostClean(t)
	lines := l.logLines(t)
	if last := lines[len(lines)-1]; last["verb"] != "DEL" || last["outcome"] != "ok" || !strings.Contains(last["ours_note"].(string), "netns gone") {
		t.Fatalf("DEL log line: %v", last)
	}
	rep.add("DEL ok in %.1f ms; nothing of ours in the host", ms(time.Since(start)))
}

// TestECSFrontExecsOnlyUpstream: under strace -f, every verb of the front
// executes its upstream exactly once (a failed ADD: its ADD, then its DEL)
// and nothing else: no shell, no ip, no other plugin.
func TestECSFrontExecsOnlyUpstream(t *testing.T) {
	rep := scenario(t, "X8", "the ECS front executes exactly its upstream, once per verb, and nothing else (strace -f)")
	strace := requireStrace(t)
	l := newFrontLayout(t, nil)
	task, eni := newTaskNS(t), newTaskENI(t, "10.0.15.20/24", "10.0.15.1")
	front, upstream := filepath.Join(l.Dir, "vpc-eni"), filepath.Join(l.Up, "vpc-eni")
	steps := []struct {
		what, verb, mode string
		args             []string
		want             []string // upstream verbs
	}{
		{"--capabilities", "", "", []string{"--capabilities"}, []string{"--capabilities"}},
		{"--version", "", "", []string{"--version"}, []string{"--version"}},
		{"ADD", "ADD", "", nil, []string{"ADD"}},
		{"DEL", "DEL", "", nil, []string{"DEL"}},
		{"VERSION", "VERSION", "", nil, []string{"VERSION"}},
		{"failing ADD", "ADD", "noconfig", nil, []string{"ADD", "DEL"}},
		{"DEL after it", "DEL", "", nil, []string{"DEL"}},
	}
	for _, st := range steps {
		l.setMode(t, "vpc-eni", st.mode)
		before := len(l.calls("vpc-eni"))
		out := filepath.Join(t.TempDir(), "strace.out")
		wrapper := []string{strace, "-f", "-qq", "-s", "4096", "-e", "trace=execve,execveat", "-o", out}
		var cmd interface{ Wait() error }
		if st.verb == "" {
			c := execProbe(t, front, wrapper, st.args)
			cmd = c
		} else {
			env := h.Env{Command: st.verb, ContainerID: "task-x6", Netns: task.Proc, IfName: "eth0"}
			c, _ := startFront(t, l, "vpc-eni", env, eni.eniConf(false), wrapper...)
			cmd = c
		}
		_ = cmd.Wait() // the failing ADD exits 1
		execs := straceCalls(t, out, regexp.MustCompile(`\bexecve(at)?\(`))
		want := []string{strconv.Quote(front)}
		for range st.want {
			want = append(want, strconv.Quote(upstream))
		}
		if len(execs) != len(want) {
			t.Fatalf("%s: %d execve, want %d:\n%s", st.what, len(execs), len(want), strings.Join(execs, "\n"))
		}
		for i, e := range execs {
			if !strings.Contains(e, "execve("+want[i]) {
				t.Fatalf("%s: execve %d is %s, want %s", st.what, i, e, want[i])
			}
		}
		if got := l.calls("vpc-eni")[before:]; !slices.Equal(got, st.want) {
			t.Fatalf("%s: upstream ran %v, want %v", st.what, got, st.want)
		}
	}
	assertENIInHost(t, eni)
	rep.add("%d front invocations (probes, ADD, DEL, VERSION, a failing ADD, DEL) traced: each execs the front, then only %s, once per upstream verb", len(steps), "UP/vpc-eni")
}

// TestECSFrontSIGTERMMidADD: SIGTERM ends the front's waits (the upstream
// ADD, our link wait) at once; it still returns the ENI to the host and
// answers with a code-11 CNI error.
func TestECSFrontSIGTERMMidADD(t *testing.T) {
	for _, tc := range []struct{ mode, msg string }{
		{"hang", "ADD was interrupted by a signal to the front"},
		{"down", "interrupted by signal while waiting for interface eth0"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			l := newFrontLayout(t, map[string]any{"linkTimeout": "30s"})
			l.setMode(t, "vpc-eni", tc.mode)
			task, eni := newTaskNS(t), newTaskENI(t, "10.0.16.20/24", "10.0.16.1")
			nl := task.Handle(t)
			env := h.Env{Command: "ADD", ContainerID: "task-term", Netns: task.Proc, IfName: "eth0"}
			front, stdout := startFront(t, l, "vpc-eni", env, eni.eniConf(false))
			upstream := filepath.Join(l.Up, "vpc-eni")
			waitFor(t, "eth0 configured by the upstream", 10*time.Second, func() bool {
				return hasAddr(nl, "eth0", eni.Addr) && (tc.mode == "hang") == (len(running(upstream)) > 0)
			})
			start := time.Now()
			_ = front.Process.Signal(syscall.SIGTERM)
			_ = front.Wait()
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("front took %s to end after SIGTERM", d)
			}
			var te types.Error
			if err := json.Unmarshal(stdout.Bytes(), &te); err != nil || te.Code != types.ErrTryAgainLater || !strings.Contains(te.Msg, tc.msg) {
				t.Fatalf("exit %d, stdout %s; want code 11 saying %q", front.ProcessState.ExitCode(), stdout, tc.msg)
			}
			assertNothingOurs(t, nl)
			assertNoLinkWithMAC(t, nl, eni.MAC)
			assertENIInHost(t, eni)
		})
	}
}

// TestECSFrontChurn: repeated ADD/DEL of one task ENI through the front
// (EC2PR_FRONT_CYCLES, default 20): every ADD installs the same routing,
// every DEL leaves nothing of ours and the ENI in the host.
func TestECSFrontChurn(t *testing.T) {
	rep := scenario(t, "E4", "ECS front: ADD/DEL churn of one task ENI")
	cycles := envInt("EC2PR_FRONT_CYCLES", 20)
	l := newFrontLayout(t, nil)
	eni := newTaskENI(t, "10.0.19.20/24", "10.0.19.1")
	a := newAgent(t, l)
	var adds, dels []time.Duration
	for i := range cycles {
		task := newTaskNS(t)
		id := "task-churn-" + strconv.Itoa(i)
		start := time.Now()
		if err := a.add(t, eni.eniConf(false), task, id); err != nil {
			t.Fatalf("cycle %d ADD: %v", i, err)
		}
		adds = append(adds, time.Since(start))
		nl := task.Handle(t)
		if rules, _ := h.Ours(t, nl); len(rules) != 1 {
			t.Fatalf("cycle %d: rules %q", i, h.RuleStrings(rules))
		}
		start = time.Now()
		if err := a.del(t, eni.eniConf(false), task, id); err != nil {
			t.Fatalf("cycle %d DEL: %v", i, err)
		}
		dels = append(dels, time.Since(start))
		assertNothingOurs(t, nl)
		assertENIInHost(t, eni)
		task.destroy()
	}
	assertHostClean(t)
	rep.add("%d cycles (a fresh task namespace each): ADD median %.0f ms, max %.0f ms; DEL median %.0f ms, max %.0f ms (libcni, front and fake upstream processes included)",
		cycles, ms(median(adds)), ms(slices.Max(adds)), ms(median(dels)), ms(slices.Max(dels)))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestECSFrontConcurrentTasks: the agent starts tasks concurrently; ADDs
// and DELs of several tasks at once through the front do not interfere.
func TestECSFrontConcurrentTasks(t *testing.T) {
	rep := scenario(t, "E5", "ECS front: concurrent ADD and DEL of several tasks")
	const n = 4
	l := newFrontLayout(t, nil)
	a := newAgent(t, l)
	tasks, enis := make([]*taskNS, n), make([]*taskENI, n)
	for i := range n {
		tasks[i] = newTaskNS(t)
		enis[i] = newTaskENI(t, fmt.Sprintf("10.0.%d.20/24", 30+i), fmt.Sprintf("10.0.%d.1", 30+i))
	}
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = a.add(t, enis[i].eniConf(false), tasks[i], fmt.Sprintf("task-conc-%d", i)) })
	}
	wg.Wait()
	addTook := time.Since(start)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("ADD %d: %v", i, errs[i])
		}
		rules, _ := h.Ours(t, tasks[i].Handle(t))
		if want := fmt.Sprintf("from 10.0.%d.20/32 lookup 10000 prio 10000", 30+i); !slices.Equal(h.RuleStrings(rules), []string{want}) {
			t.Fatalf("task %d rules %q, want %q", i, h.RuleStrings(rules), want)
		}
	}
	start = time.Now()
	for i := range n {
		wg.Go(func() { errs[i] = a.del(t, enis[i].eniConf(false), tasks[i], fmt.Sprintf("task-conc-%d", i)) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("DEL %d: %v", i, errs[i])
		}
		assertNothingOurs(t, tasks[i].Handle(t))
		assertENIInHost(t, enis[i])
	}
	rep.add("%d tasks at once: all ADDs done in %.0f ms, all DELs in %.0f ms; each task's own table, nothing left", n, ms(addTook), ms(time.Since(start)))
}

// TestECSFrontHostNetnsBeforeUpstream (issue 22.4): CNI_NETNS names the
// front's own namespace (the host's, behind a reused /proc/<pid>/ns/net)
// and the upstream, like the real vpc-eni, does not check that itself. The
// front refuses in its preflight, code 7, before the upstream runs: no
// address on the ENI, no IMDS blackhole in the "host". A fresh namespace
// plays the host (the front runs in it through ip netns exec); the same
// stand-in run directly there shows what the upstream would have done.
func TestECSFrontHostNetnsBeforeUpstream(t *testing.T) {
	rep := scenario(t, "E6", "ECS front: CNI_NETNS is the front's own (host) namespace and the upstream does not check: refused before the upstream runs")
	l := newFrontLayout(t, nil)
	host, eni := newTaskNS(t), newTaskENI(t, "10.0.40.20/24", "10.0.40.1")
	eni.MoveOnly(t, host.Netns, eni.Name)
	routes := func() string {
		return host.IP(t, "-4", "route", "show", "table", "all") + host.IP(t, "-6", "route", "show", "table", "all")
	}
	before := routes()
	env := h.Env{Command: "ADD", ContainerID: "task-hostns", Netns: host.Proc, IfName: "eth0", Extra: []string{"FAKE_VPC_ENI_NO_NETNS_CHECK=1"}}
	front, out := startFront(t, l, "vpc-eni", env, eni.eniConf(false), "ip", "netns", "exec", host.Name)
	if err := front.Wait(); err == nil {
		t.Fatalf("ADD in the front's own namespace succeeded: %s", out)
	}
	var te types.Error
	if err := json.Unmarshal(out.Bytes(), &te); err != nil || te.Code != types.ErrInvalidNetworkConfig || !strings.Contains(te.Msg, "refusing") {
		t.Fatalf("ADD output %s: want a code 7 refusal", out)
	}
	if got := l.calls("vpc-eni"); len(got) != 0 {
		t.Fatalf("upstream ran: %v", got)
	}
	if after := routes(); after != before || strings.Contains(after, "blackhole") {
		t.Fatalf("routes of the namespace playing the host changed:\n before %s\n after  %s", before, after)
	}
	nl := host.Handle(t)
	if hasAddr(nl, eni.Name, eni.Addr) || hasAddr(nl, "eth0", eni.Addr) {
		t.Fatal("the ENI was configured in the front's own namespace")
	}
	rep.add("front run in the namespace CNI_NETNS names, upstream with FAKE_VPC_ENI_NO_NETNS_CHECK=1: exit 1 code 7 (%s); upstream never executed; routes and ENI untouched", te.Msg)
	// What the refusal prevents: the stand-in in this mode configures the
	// namespace it is given, IMDS blackholes in its main table included.
	up := exec.Command("ip", "netns", "exec", host.Name, filepath.Join(l.Up, "vpc-eni"))
	up.Env = append(slices.Clone(front.Env), "CNI_PATH="+l.Up)
	up.Stdin = strings.NewReader(string(eni.eniConf(false)))
	if b, err := up.CombinedOutput(); err != nil {
		t.Fatalf("stand-in ADD run directly: %v %s", err, b)
	}
	if !strings.Contains(routes(), "blackhole 169.254.169.254") {
		t.Fatalf("the stand-in without its netns check did not configure the namespace it was given:\n%s", routes())
	}
	rep.add("control: the same stand-in run directly there exits 0 and blackholes 169.254.169.254 in that namespace's main table")
}

// TestECSFrontBranchRollback (issue 22.10): vpc-branch-eni reports success
// although its rename to eth0 failed on a stale eth0 in the task namespace.
// The front catches it, and its rollback message says what vpc-branch-eni's
// DEL does (deletes the link named eth0 — here the stale one — and returns
// nothing to the host) and names the branch link still in the namespace
// with the branch MAC. (The branch link, a VLAN on the trunk in reality, is
// a veth end carrying the branch MAC: no vlan links on this kernel.)
func TestECSFrontBranchRollback(t *testing.T) {
	rep := scenario(t, "E7", "ECS front: vpc-branch-eni false success over a stale eth0; the rollback names the branch link left in the task namespace")
	l := newFrontLayout(t, nil)
	l.setMode(t, "vpc-branch-eni", "vlan")
	task := newTaskNS(t)
	stale := newTaskENI(t, "10.0.41.99/24", "10.0.41.1")
	stale.MoveOnly(t, task.Netns, "eth0")
	branch := newTaskENI(t, "10.0.41.20/24", "10.0.41.1")
	a := newAgent(t, l)
	err := a.add(t, branch.eniConf(true), task, "task-stale")
	if err == nil {
		t.Fatal("ADD over a stale eth0 succeeded")
	}
	te := cniErr(t, err)
	for _, want := range []string{
		"vpc-branch-eni reported success but",
		fmt.Sprintf("eth0 has MAC %s, not the ENI's %s", stale.MAC, branch.MAC),
		"vpc-branch-eni: deletes the link named eth0 in CNI_NETNS, returns nothing to the host",
		fmt.Sprintf("still in CNI_NETNS with the ENI's MAC %s: %s", branch.MAC, branch.Name),
	} {
		if !strings.Contains(te.Msg, want) {
			t.Fatalf("error %q lacks %q", te.Msg, want)
		}
	}
	if te.Code != types.ErrTryAgainLater || strings.Contains(te.Msg, "returned the ENI to the host") {
		t.Fatalf("error %d %q", te.Code, te.Msg)
	}
	nl := task.Handle(t)
	assertNothingOurs(t, nl)
	if _, err := nl.LinkByName("eth0"); err == nil {
		t.Fatal("the stale eth0 is still there: the upstream DEL did not run as vpc-branch-eni's")
	}
	if l, err := nl.LinkByName(branch.Name); err != nil || l.Attrs().HardwareAddr.String() != branch.MAC.String() {
		t.Fatalf("branch link %s: %v", branch.Name, err)
	}
	if got := l.calls("vpc-branch-eni"); !slices.Equal(got, []string{"ADD", "DEL"}) {
		t.Fatalf("upstream calls %v, want [ADD DEL]", got)
	}
	if m := l.logLines(t)[0]; m["outcome"] != "error" || m["by"] != "front" || !strings.Contains(m["error"].(string), branch.Name) {
		t.Fatalf("ADD log line %v", m)
	}
	rep.add("stale eth0 (MAC %s), branch %s: ADD exit code %d; the error says vpc-branch-eni's DEL deletes eth0 and returns nothing, and names %s still carrying the branch MAC",
		stale.MAC, branch.MAC, te.Code, branch.Name)
}
