package integration

// Reliability and security scenarios of the ECS front (make stress reports
// them in docs/RELIABILITY.md with the plugin's own).

import (
	"encoding/json"
	"fmt"
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
