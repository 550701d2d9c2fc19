package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Idle cost: what a plugin leaves running after ADD returns.
//
// Two independent checks per case:
//
//  1. Processes, without tracing: this program is a child subreaper, so a
//     plugin process that daemonises (or a child it forks) is re-parented
//     here instead of to init. For the window after ADD returns, /proc is
//     scanned every 5 ms for any process whose executable is a plugin
//     binary or whose parent is this program (it runs nothing else during
//     the window). Syscalls need a process to make them: no process, zero
//     syscalls.
//  2. Syscalls, under `strace -f -ttt` (which follows every thread and
//     child, daemonised or not, and only exits when all of them have): the
//     trace's syscalls stamped after the plugin's own exit, the forks and
//     execs it made, and how long strace outlived it.
type idleResult struct {
	window time.Duration
	cases  []idleCase
	strace string // "" when strace is unavailable, else its path
}

type idleCase struct {
	name  string
	exit  int
	polls int
	found []string // leftover processes seen (pid exe)

	traced       bool
	traceErr     string
	syscalls     int // syscalls made by the invocation (all threads)
	forks        int // clone/fork without CLONE_THREAD, plus extra execve
	idleSyscalls int // syscalls stamped after the plugin's exit
	outlived     time.Duration
	top          string // most frequent syscalls during the invocation
}

type idleScenario struct {
	name    string
	k       int
	present bool
}

func (b *bench) idle(ctx context.Context) error {
	b.res.idle.window = *flagIdle
	if p, err := exec.LookPath(*flagStrace); err == nil {
		b.res.idle.strace = p
	}
	scenarios := []idleScenario{
		{"ec2-policy-routes ADD, link present", ours, true},
		{"ec2-policy-routes ADD, link absent (times out after 1 s)", ours, false},
		{"sbr ADD, link present", sbr, true},
	}
	for _, sc := range scenarios {
		var c idleCase
		c.name = sc.name
		var runErr error
		err := trial("idle "+sc.name, func(s *scope) { runErr = b.idlePlain(ctx, s, sc, &c) })
		if runErr != nil {
			return runErr
		}
		if err != nil {
			return err
		}
		if b.res.idle.strace != "" {
			err := trial("idle strace "+sc.name, func(s *scope) { runErr = b.idleTraced(ctx, s, sc, &c) })
			if runErr != nil {
				return runErr
			}
			if err != nil {
				return err
			}
		}
		b.res.idle.cases = append(b.res.idle.cases, c)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

func (b *bench) idleConf(f *fixture, k int) []byte {
	if k == ours {
		return f.conf(names[ours], b.oursConf(timeoutLinkTimeout.String()))
	}
	return f.conf(names[sbr], nil)
}

func (b *bench) idlePlain(ctx context.Context, sc *scope, s idleScenario, c *idleCase) error {
	f := newFixture(sc, s.present, s.present)
	// Direct child: whatever the plugin leaves behind is re-parented here.
	p, err := startDirect(ctx, cniEnv("ADD", f.ns.Path, ifName), b.idleConf(f, s.k), b.bin[s.k])
	if err != nil {
		return err
	}
	res, err := p.wait()
	if err != nil {
		return err
	}
	c.exit = res.Exit
	self := os.Getpid()
	// Attribution: a child of this process (re-parented orphan), or any
	// process still carrying this call's CNI_NETNS, which is unique to it.
	marker := []byte("CNI_NETNS=" + f.ns.Path + "\x00")
	seen := map[int]bool{}
	deadline := res.End.Add(*flagIdle)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		c.polls++
		for _, p := range scanProcs(marker) {
			if p.ppid == self || p.marked {
				if !seen[p.pid] {
					seen[p.pid] = true
					c.found = append(c.found, fmt.Sprintf("%d %s", p.pid, p.exe))
				}
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

type procInfo struct {
	pid, ppid int
	exe       string
	marked    bool // its environment holds marker
}

// scanProcs lists every process with its parent and executable, and
// whether its environment contains marker.
func scanProcs(marker []byte) []procInfo {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parens.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		out = append(out, procInfo{pid: pid, ppid: ppid, exe: strings.TrimSuffix(exe, " (deleted)"), marked: bytes.Contains(env, marker)})
	}
	return out
}

func (b *bench) idleTraced(ctx context.Context, sc *scope, s idleScenario, c *idleCase) error {
	f := newFixture(sc, s.present, s.present)
	trace := filepath.Join(sc.TempDir(), "trace")
	c.traced = true
	p, err := startDirect(ctx, cniEnv("ADD", f.ns.Path, ifName), b.idleConf(f, s.k),
		b.res.idle.strace, "-f", "-ttt", "-o", trace, "--", b.bin[s.k])
	if err != nil {
		return err
	}
	// strace exits when the last traced process does; give it the plugin's
	// own budget plus the window, then stop it.
	limit := time.AfterFunc(timeoutLinkTimeout+*flagIdle+5*time.Second, func() { _ = p.cmd.Process.Kill() })
	res, err := p.wait()
	limit.Stop()
	if err != nil {
		return err
	}
	if res.Exit != c.exit {
		c.traceErr = fmt.Sprintf("exit %d under strace (%s)", res.Exit, lastLine(string(res.Stderr)))
	}
	st, err := parseTrace(trace)
	if err != nil {
		c.traceErr = err.Error() // reported in the table, not fatal to the run
		return nil               //nolint:nilerr // see above
	}
	c.syscalls, c.forks, c.idleSyscalls, c.top = st.calls, st.forks, st.after, st.top
	if !st.exit.IsZero() {
		c.outlived = max(res.End.Sub(st.exit), 0)
	}
	return nil
}

type traceStats struct {
	calls, forks, after int
	exit                time.Time
	top                 string
}

var traceLine = regexp.MustCompile(`^(\d+)\s+(\d+)\.(\d+)\s+(.*)$`)

// parseTrace reads `strace -f -ttt` output: the first pid is the plugin.
func parseTrace(path string) (traceStats, error) {
	var st traceStats
	fh, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer fh.Close()
	type ev struct {
		pid  string
		at   time.Time
		name string
		args string
	}
	var evs []ev
	main := ""
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := traceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		sec, _ := strconv.ParseInt(m[2], 10, 64)
		frac := m[3]
		for len(frac) < 9 {
			frac += "0"
		}
		nsec, _ := strconv.ParseInt(frac[:9], 10, 64)
		at := time.Unix(sec, nsec)
		if main == "" {
			main = m[1]
		}
		rest := m[4]
		switch {
		case strings.HasPrefix(rest, "+++"):
			if m[1] == main {
				st.exit = at
			}
			continue
		case strings.HasPrefix(rest, "---"), strings.HasPrefix(rest, "<..."):
			continue
		}
		i := strings.IndexByte(rest, '(')
		if i <= 0 {
			continue
		}
		evs = append(evs, ev{pid: m[1], at: at, name: rest[:i], args: rest[i:]})
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	if main == "" {
		return st, fmt.Errorf("empty trace")
	}
	counts := map[string]int{}
	execs := 0
	for _, e := range evs {
		if !st.exit.IsZero() && e.at.After(st.exit) {
			st.after++
			continue
		}
		st.calls++
		counts[e.name]++
		switch e.name {
		case "clone", "clone3", "fork", "vfork":
			if !strings.Contains(e.args, "CLONE_THREAD") {
				st.forks++
			}
		case "execve", "execveat":
			execs++
		}
	}
	if execs > 1 {
		st.forks += execs - 1 // the plugin's own execve is the first
	}
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range counts {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].v != all[j].v {
			return all[i].v > all[j].v
		}
		return all[i].k < all[j].k
	})
	var top []string
	for i := 0; i < len(all) && i < 6; i++ {
		top = append(top, fmt.Sprintf("%s %d", all[i].k, all[i].v))
	}
	st.top = strings.Join(top, ", ")
	return st, nil
}
