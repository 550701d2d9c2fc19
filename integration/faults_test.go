package integration

// Reliability: fault scenarios through the real binary in real network
// namespaces (issue 4). Every scenario asserts the exit code, the CNI error
// code and message, and that nothing of ours is left behind: no rule or
// route with our protocol (task namespaces and host), no altname of ours, no
// namespace lock held, no temp file, no state record, no process of the
// invocation. Synchronisation is on events (netlink subscriptions, process
// exit); where the kernel offers no event for a state (a process blocked in
// flock, a process subscribed to link events) the tests wait on that
// observable state with a deadline (waitFor), never on a fixed sleep.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/logging"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/state"
)

// ---------------------------------------------------------------------------
// One plugin process, observed from outside.

// plug is one plugin process: its own process group (so "no process
// outlives the call" is checkable), a private TMPDIR that must stay empty,
// and its log redirected into the test's temp dir.
type plug struct {
	env     h.Env
	cmd     *exec.Cmd
	stdout  bytes.Buffer
	stderr  bytes.Buffer
	start   time.Time
	end     time.Time
	done    chan struct{}
	TmpDir  string
	LogFile string
}

// cniEnv is the environment of one call; the container ID is derived from
// the namespace so ADD and DEL of one test agree.
func cniEnv(verb string, ns *h.Netns, ifname string) h.Env {
	e := h.Env{Command: verb, ContainerID: "rel-none", IfName: ifname, Path: "/nonexistent"}
	if ns != nil {
		e.Netns = ns.Path
		e.ContainerID = "rel-" + ns.Name
	}
	return e
}

func (p *plug) envList() []string {
	e := p.env
	return append([]string{
		"CNI_COMMAND=" + e.Command, "CNI_CONTAINERID=" + e.ContainerID, "CNI_NETNS=" + e.Netns,
		"CNI_IFNAME=" + e.IfName, "CNI_PATH=" + e.Path, "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"TMPDIR=" + p.TmpDir, logging.EnvFile + "=" + p.LogFile,
	}, e.Extra...)
}

// startPlugin starts the plugin, optionally under a wrapper command (e.g.
// strace), and returns at once.
func startPlugin(t *testing.T, env h.Env, stdin []byte, wrapper ...string) *plug {
	t.Helper()
	return startPluginIn(t, env, stdin, t.TempDir(), filepath.Join(t.TempDir(), "plugin.log"), wrapper...)
}

// startPluginIn is startPlugin with a given TMPDIR and log file.
func startPluginIn(t *testing.T, env h.Env, stdin []byte, tmpDir, logFile string, wrapper ...string) *plug {
	t.Helper()
	p := &plug{env: env, done: make(chan struct{}), TmpDir: tmpDir, LogFile: logFile}
	argv := append(slices.Clone(wrapper), h.Binary(t))
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = p.envList()
	p.cmd.Stdin = bytes.NewReader(stdin)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start plugin: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.end = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

func (p *plug) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *plug) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process (at most limit) and checks what every
// invocation must satisfy: no process of its group left, no Go panic or
// stack trace on stderr, and a CNI error JSON on stdout when it failed.
func (p *plug) wait(t *testing.T, limit time.Duration) h.Result {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
		t.Fatalf("plugin (%s) still running after %s; killed\nstderr: %s", p.env.Command, limit, p.stderr.String())
	}
	r := h.Result{Stdout: p.stdout.Bytes(), Stderr: p.stderr.Bytes(), ExitCode: p.cmd.ProcessState.ExitCode(), Duration: p.end.Sub(p.start)}
	if r.ExitCode != 0 {
		var te types.Error
		if json.Unmarshal(r.Stdout, &te) == nil && (te.Code != 0 || te.Msg != "") {
			r.Err = &te
		}
	}
	if err := syscall.Kill(-p.pid(), 0); err != syscall.ESRCH {
		t.Fatalf("a process of the plugin's group %d outlived it (kill -0: %v)", p.pid(), err)
	}
	assertNoPanic(t, r)
	if r.ExitCode > 0 {
		if r.Err == nil {
			t.Fatalf("%s failed (exit %d) without a CNI error on stdout: %q stderr %q", p.env.Command, r.ExitCode, r.Stdout, r.Stderr)
		}
		if r.Err.Code == types.ErrInternal {
			t.Fatalf("%s failed with code 999 (a plain Go error reached skel): %s", p.env.Command, r.Err.Msg)
		}
	}
	return r
}

func assertNoPanic(t *testing.T, r h.Result) {
	t.Helper()
	for _, bad := range []string{"panic:", "goroutine ", "runtime error", "[signal "} {
		if bytes.Contains(r.Stderr, []byte(bad)) || bytes.Contains(r.Stdout, []byte(bad)) {
			t.Fatalf("output shows a Go panic/stack trace (%q):\nstdout: %s\nstderr: %s", bad, r.Stdout, r.Stderr)
		}
	}
}

// runPlugin runs one invocation to completion.
func runPlugin(t *testing.T, env h.Env, stdin []byte) (h.Result, *plug) {
	t.Helper()
	p := startPlugin(t, env, stdin)
	return p.wait(t, time.Minute), p
}

// mustFail checks exit code, CNI code and that the message names each of
// the given fragments.
func mustFail(t *testing.T, r h.Result, what string, code uint, msgHas ...string) {
	t.Helper()
	r.MustFailWith(t, what, code)
	if r.ExitCode != 1 {
		t.Fatalf("%s: exit code %d, want 1", what, r.ExitCode)
	}
	for _, m := range msgHas {
		if !strings.Contains(r.Err.Msg, m) {
			t.Fatalf("%s: message %q does not contain %q", what, r.Err.Msg, m)
		}
	}
}

// ---------------------------------------------------------------------------
// Residue: nothing of ours may remain.

// assertNoResidue checks the namespaces (when they still exist) and the
// host for rules/routes/altnames of ours and held namespace locks, and each
// invocation's TMPDIR and state record.
func assertNoResidue(t *testing.T, nss []*h.Netns, plugs ...*plug) {
	t.Helper()
	for _, ns := range nss {
		if _, err := os.Stat(ns.Path); err != nil {
			continue
		}
		nl := ns.Handle(t)
		assertNothingOurs(t, nl)
		assertNoAltNamesOfOurs(t, nl)
		assertNetnsUnlocked(t, ns)
	}
	assertHostClean(t)
	for _, p := range plugs {
		assertDirEmpty(t, p.TmpDir)
		rec := filepath.Join(state.DefaultDir, state.Name(p.env.ContainerID, p.env.IfName))
		if _, err := os.Lstat(rec); err == nil {
			t.Fatalf("state record %s left for %s/%s", rec, p.env.ContainerID, p.env.IfName)
		}
	}
}

// assertHostClean: the plugin never installs anything in the host namespace.
func assertHostClean(t *testing.T) {
	t.Helper()
	hn, err := netlink.NewHandle()
	if err != nil {
		t.Fatalf("host netlink: %v", err)
	}
	defer hn.Close()
	rules, routes := h.Ours(t, hn)
	if len(rules)+len(routes) != 0 {
		t.Fatalf("objects of ours in the HOST namespace: rules %q routes %q", h.RuleStrings(rules), routeSet(routes))
	}
}

// assertNoAltNamesOfOurs: no eni-* or device-number-* altname remains (the
// IMDS path adds those; with IMDS off none may ever appear).
func assertNoAltNamesOfOurs(t *testing.T, nl *netlink.Handle) {
	t.Helper()
	links, err := nl.LinkList()
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	for _, l := range links {
		for _, a := range l.Attrs().AltNames {
			if strings.HasPrefix(a, "eni-") || strings.HasPrefix(a, "device-number-") {
				t.Fatalf("altname %s left on %s", a, l.Attrs().Name)
			}
		}
	}
}

// assertNetnsUnlocked: no process holds the namespace lock (flock on the
// nsfs inode); it must die with its owner.
func assertNetnsUnlocked(t *testing.T, ns *h.Netns) {
	t.Helper()
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatalf("open %s: %v", ns.Path, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("namespace lock of %s still held: %v", ns.Name, err)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
}

func assertDirEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("files left in the plugin's TMPDIR %s: %q", dir, names)
	}
}

// ---------------------------------------------------------------------------
// Observing the plugin and the kernel.

// waitFor polls an observable state that has no kernel event (e.g. "blocked
// in flock") every millisecond until it holds or the deadline passes. It is
// not a sleep-as-synchronisation: it returns as soon as the state holds and
// fails the test if it never does.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// socketCount counts the socket descriptors of a process.
func socketCount(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// waitInLinkWait returns once the plugin has subscribed to link events in
// the task namespace: its second socket (the first is the netlink handle).
// Signal handlers are installed before anything else in main, so from here
// on SIGTERM is the plugin's to handle.
func waitInLinkWait(t *testing.T, p *plug) {
	t.Helper()
	waitFor(t, "the plugin to subscribe to link events", 10*time.Second, func() bool {
		if p.exited() {
			t.Fatalf("plugin exited before waiting: %s", p.stdout.String())
		}
		return socketCount(p.pid()) >= 2
	})
}

// nsLock holds the namespace lock from the test, as a concurrent
// invocation would.
type nsLock struct{ f *os.File }

func lockNetns(t *testing.T, ns *h.Netns) *nsLock {
	t.Helper()
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	l := &nsLock{f: f}
	t.Cleanup(l.release)
	return l
}

func (l *nsLock) release() {
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// blockedOnLock reports whether pid waits for a flock (a "->" line of
// /proc/locks names blocked waiters).
func blockedOnLock(pid int) bool {
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 6 && f[1] == "->" && f[2] == "FLOCK" && f[5] == strconv.Itoa(pid) {
			return true
		}
	}
	return false
}

// waitBlockedOnNsLock returns once the plugin has passed the link wait and
// blocks on the namespace lock the test holds.
func waitBlockedOnNsLock(t *testing.T, p *plug) {
	t.Helper()
	waitFor(t, "the plugin to block on the namespace lock", 10*time.Second, func() bool {
		if p.exited() {
			t.Fatalf("plugin exited before taking the lock: %s", p.stdout.String())
		}
		return blockedOnLock(p.pid())
	})
}

// onRoutesOfOurs runs fn (once, in the subscription goroutine, as soon as
// the kernel announces it) when the n-th route with our protocol appears in
// ns: the plugin is then inside Apply (routes go in before rules).
func onRoutesOfOurs(t *testing.T, ns *h.Netns, n int, fn func()) (fired <-chan struct{}) {
	t.Helper()
	nsh, err := netns.GetFromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	updates := make(chan netlink.RouteUpdate, 4096)
	done := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(done) }) }
	t.Cleanup(stop)
	if err := netlink.RouteSubscribeWithOptions(updates, done, netlink.RouteSubscribeOptions{Namespace: &nsh}); err != nil {
		t.Fatalf("subscribe to routes in %s: %v", ns.Name, err)
	}
	out := make(chan struct{})
	go func() {
		seen := 0
		for u := range updates {
			if u.Type == unix.RTM_NEWROUTE && int(u.Protocol) == plan.Protocol {
				if seen++; seen == n {
					fn()
					close(out)
					stop()
					for range updates { // drain until the subscription closes
					}
					return
				}
			}
		}
	}()
	return out
}

// ---------------------------------------------------------------------------
// Test fixtures.

// relConf is an ECS-style config (0.3.0, no prevResult, IMDS off).
func relConf(extra string) []byte { return ecsConf(extra) }

// conf11 is a standalone config at cniVersion 1.1.0 (CHECK and GC allowed).
func conf11(extra string) []byte {
	if extra != "" {
		extra = "," + extra
	}
	return []byte(`{"cniVersion":"1.1.0","name":"network-name","type":"ec2-policy-routes","imds":{"enabled":false}` + extra + `}`)
}

// manyAddrs puts n IPv4 addresses, each in its own /24, on a link: a plan
// of n subnet routes and n rules, long enough to interrupt from outside.
func manyAddrs(t *testing.T, nl *netlink.Handle, ifname string, n int) {
	t.Helper()
	l, err := nl.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		a := mustAddr(t, fmt.Sprintf("10.%d.%d.10/24", 100+i/250, i%250))
		if err := nl.AddrAdd(l, a); err != nil {
			t.Fatalf("add address %d: %v", i, err)
		}
	}
}

func oursCount(t *testing.T, nl *netlink.Handle) (rules, routes int) {
	t.Helper()
	r, rt := h.Ours(t, nl)
	return len(r), len(rt)
}

func hostNetnsFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// linkLeaves makes ifname leave ns: moved to the host (as vpc-eni's DEL and
// an ENI detach do) or deleted.
func linkLeaves(t *testing.T, nl *netlink.Handle, ifname, how string, hostNS *os.File) error {
	l, err := nl.LinkByName(ifname)
	if err != nil {
		return err
	}
	if how == "deleted" {
		return nl.LinkDel(l)
	}
	// vpc-eni renames the ENI (ecsXXXXXX) before moving it back: the host
	// has its own eth0.
	if err := nl.LinkSetName(l, h.RandName("gone")); err != nil {
		return err
	}
	return nl.LinkSetNsFd(l, int(hostNS.Fd()))
}

// deleteHostLink removes a link from the host namespace, if it is there.
func deleteHostLink(t *testing.T, name string) {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("lookup %s in host: %v", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		t.Fatalf("delete %s: %v", name, err)
	}
}

// ---------------------------------------------------------------------------
// F1: the race from the ec2-net-utils bug report, end to end.

// TestFaultENIDetachedBeforeNetns: the ENI is attached (it exists in the
// host namespace), ADD starts, and the ENI is detached before vpc-eni moves
// it into the task namespace. ec2-net-utils loops forever here holding its
// lock; the plugin must fail at linkTimeout with code 11, leave nothing
// behind, and let the DEL that follows succeed.
func TestFaultENIDetachedBeforeNetns(t *testing.T) {
	rep := scenario(t, "F1", "ENI detached before it reaches the task namespace (the bug-report race)")
	ns := h.NewNetns(t)
	eni := h.NewENI(t) // attached: in the host namespace
	const timeout = time.Second
	add := startPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(`"linkTimeout":"1s"`))
	deleteHostLink(t, eni.Name) // detached before the move
	r := add.wait(t, 10*time.Second)
	mustFail(t, r, "ADD", types.ErrTryAgainLater, "timed out", "linkTimeout 1s", "eth0", "nothing was installed")
	if r.Duration < timeout || r.Duration > timeout+300*time.Millisecond {
		t.Fatalf("ADD ended after %s, want linkTimeout %s (+300ms)", r.Duration, timeout)
	}
	assertNoResidue(t, []*h.Netns{ns}, add)
	d, del := runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
	d.MustSucceed(t, "DEL after the failed ADD")
	assertNoResidue(t, []*h.Netns{ns}, del)
	rep.add("ADD exit 1 code 11 after %s (linkTimeout 1s); DEL exit 0 in %s; no process, rule, route, lock or file left",
		r.Duration.Round(time.Millisecond), d.Duration.Round(time.Millisecond))
}

// TestFaultWaitIsQuiet measures what a waiting ADD costs the host: the
// syscalls of the whole process tree (strace -f -ttt) during the middle
// 2 s of a 3 s wait for a link that never comes, process start-up and exit
// excluded (ec2-net-utils: ~1,700 syscalls/s and ~10 fork+exec/s).
func TestFaultWaitIsQuiet(t *testing.T) {
	rep := scenario(t, "F1b", "cost of a waiting ADD (syscalls/s while waiting, under strace -f)")
	strace := requireStrace(t)
	ns := h.NewNetns(t)
	out := filepath.Join(t.TempDir(), "strace.out")
	p := startPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(`"linkTimeout":"3s"`), strace, "-f", "-qq", "-ttt", "-o", out)
	r := p.wait(t, 30*time.Second)
	mustFail(t, r, "ADD", types.ErrTryAgainLater, "timed out")
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var stamps []float64
	execs := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || strings.HasPrefix(f[2], "<...") || strings.HasPrefix(f[2], "+++") || strings.HasPrefix(f[2], "---") {
			continue
		}
		ts, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		stamps = append(stamps, ts)
		if strings.HasPrefix(f[2], "execve") {
			execs++
		}
	}
	if len(stamps) == 0 {
		t.Fatalf("no syscalls parsed from strace output:\n%s", data)
	}
	slices.Sort(stamps)
	first, last := stamps[0], stamps[len(stamps)-1]
	lo, hi := first+0.5, first+2.5
	if last < hi {
		t.Fatalf("traced run too short: %.2fs", last-first)
	}
	mid := 0
	for _, ts := range stamps {
		if ts >= lo && ts < hi {
			mid++
		}
	}
	rate := float64(mid) / (hi - lo)
	t.Logf("%d syscalls in total over %.2fs, %d in the middle 2 s of the wait", len(stamps), last-first, mid)
	if rate > 50 {
		t.Fatalf("a waiting ADD makes %.0f syscalls/s; the wait must sleep in the kernel", rate)
	}
	if execs != 1 {
		t.Fatalf("%d execve calls, want 1 (its own)", execs)
	}
	rep.add("%d syscalls in total for an ADD that waited 3 s; %d during the middle 2 s of the wait (%.1f syscalls/s); 1 execve, its own (ec2-net-utils: ~1,700 syscalls/s and ~10 fork+exec/s)",
		len(stamps), mid, rate)
}

func requireStrace(t *testing.T) string {
	t.Helper()
	h.RequireRoot(t)
	p, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not installed (.ci/run installs it)")
	}
	return p
}

// ---------------------------------------------------------------------------
// F2: the link leaves mid-ADD.

// TestFaultLinkLeavesMidADD: the link is moved out of the namespace or
// deleted (a) after the wait found it and before the plugin changes
// anything (the plugin is held on the namespace lock by the test), and (b)
// while the plugin applies (triggered by the kernel announcing our first
// route; 200 addresses make Apply long enough). Either way: code 11 naming
// the interface, rolled back, nothing of ours anywhere, and DEL succeeds.
func TestFaultLinkLeavesMidADD(t *testing.T) {
	rep := scenario(t, "F2", "link removed or moved out of the namespace mid-ADD")
	hostNS := hostNetnsFile(t)
	for _, phase := range []string{"between wait and apply", "during apply"} {
		for _, how := range []string{"moved to host", "deleted"} {
			t.Run(phase+"/"+how, func(t *testing.T) {
				ns := h.NewNetns(t)
				nl := ns.Handle(t)
				eni := h.NewENI(t)
				eni.MoveInto(t, ns, "eth0", []string{"10.0.7.10/24"}, "10.0.7.1")
				var r h.Result
				var add *plug
				attempts := 0
				switch phase {
				case "between wait and apply":
					lock := lockNetns(t, ns)
					add = startPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(`"linkTimeout":"5s"`))
					waitBlockedOnNsLock(t, add)
					if err := linkLeaves(t, nl, "eth0", how, hostNS); err != nil {
						t.Fatal(err)
					}
					lock.release()
					r = add.wait(t, 10*time.Second)
					attempts = 1
				case "during apply":
					manyAddrs(t, nl, "eth0", 200)
					// The kernel may announce our route after Apply and the
					// final link check already passed: then ADD succeeded
					// before the link left, which is not this scenario.
					// Retry; it lands within the first attempt in practice.
					for attempts = 1; attempts <= 5; attempts++ {
						var leaveErr error
						fired := onRoutesOfOurs(t, ns, 1, func() { leaveErr = linkLeaves(t, nl, "eth0", how, hostNS) })
						add = startPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(`"linkTimeout":"5s"`))
						r = add.wait(t, 30*time.Second)
						<-fired
						if leaveErr != nil {
							t.Fatal(leaveErr)
						}
						if r.ExitCode != 0 {
							break
						}
						t.Logf("attempt %d: the link left after ADD finished; retrying", attempts)
						runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
						eni = h.NewENI(t)
						eni.MoveInto(t, ns, "eth0", []string{"10.0.7.10/24"}, "10.0.7.1")
						manyAddrs(t, nl, "eth0", 200)
					}
				}
				mustFail(t, r, "ADD", types.ErrTryAgainLater, "eth0", "left", "rolled back")
				assertNoResidue(t, []*h.Netns{ns}, add)
				d, del := runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
				d.MustSucceed(t, "DEL")
				assertNoResidue(t, []*h.Netns{ns}, del)
				rep.add("%s, %s: ADD exit 1 code 11 %q after %s (attempts %d); DEL exit 0; nothing left",
					phase, how, r.Err.Msg, r.Duration.Round(time.Millisecond), attempts)
			})
		}
	}
}

// TestFaultLinkLeavesDuringWait: ADD waits for eth0, which is in the task
// namespace but down; then it leaves: moved to the host, renamed and moved
// (vpc-eni's DEL: ip link set eth0 name ecsxyz; ip link set ecsxyz netns 1),
// deleted, renamed and deleted. Each ends the wait at once with code 11
// "left network namespace", not at linkTimeout; nothing installed; DEL
// succeeds.
func TestFaultLinkLeavesDuringWait(t *testing.T) {
	rep := scenario(t, "F2b", "link leaves the namespace while ADD waits for it (moved, renamed then moved as vpc-eni's DEL, deleted)")
	hostNS := hostNetnsFile(t)
	const linkTimeout = 8 * time.Second
	for _, how := range []string{"moved to another namespace", "renamed, then moved to host", "deleted", "renamed, then deleted"} {
		t.Run(how, func(t *testing.T) {
			ns := h.NewNetns(t)
			nl := ns.Handle(t)
			eni := h.NewENI(t)
			eni.MoveOnly(t, ns, "eth0") // there, down: ADD sees it and waits
			add := startPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(`"linkTimeout":"8s"`))
			waitInLinkWait(t, add)
			l, err := nl.LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(how, "renamed") {
				if err := nl.LinkSetName(l, h.RandName("ecs")); err != nil {
					t.Fatal(err)
				}
			}
			switch {
			case strings.HasSuffix(how, "deleted"):
				err = nl.LinkDel(l)
			case strings.HasSuffix(how, "host"):
				err = nl.LinkSetNsFd(l, int(hostNS.Fd()))
			default: // not to the host: it has its own eth0
				other, oerr := os.Open(h.NewNetns(t).Path)
				if oerr != nil {
					t.Fatal(oerr)
				}
				defer other.Close()
				err = nl.LinkSetNsFd(l, int(other.Fd()))
			}
			if err != nil {
				t.Fatal(err)
			}
			r := add.wait(t, 2*linkTimeout)
			mustFail(t, r, "ADD", types.ErrTryAgainLater, "interface eth0 left network namespace", "before it came up", "nothing was installed")
			if r.Duration > linkTimeout/4 {
				t.Fatalf("ADD ended after %s: the departure did not end the wait (linkTimeout %s)", r.Duration, linkTimeout)
			}
			assertNoResidue(t, []*h.Netns{ns}, add)
			d, del := runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
			d.MustSucceed(t, "DEL")
			assertNoResidue(t, []*h.Netns{ns}, del)
			rep.add("%s: ADD exit 1 code 11 %q after %s (linkTimeout %s); DEL exit 0; nothing left",
				how, r.Err.Msg, r.Duration.Round(time.Millisecond), linkTimeout)
		})
	}
}

// ---------------------------------------------------------------------------
// F3: signals.

// TestFaultSignals: SIGTERM (the runtime giving up politely) during the
// link wait and during the namespace-lock wait ends the process within
// 100 ms with code 11 and nothing installed; SIGKILL (exec.CommandContext at
// the ECS agent's deadline) in the middle of Apply leaves partial state that
// the following DEL removes completely, and a retried ADD converges to
// exactly the full plan, with or without a DEL in between; SIGKILL during
// the wait leaves no lock behind.
func TestFaultSignals(t *testing.T) {
	rep := scenario(t, "F3", "SIGTERM during the waits, SIGKILL mid-apply and mid-wait")
	t.Run("SIGTERM during link wait", func(t *testing.T) {
		ns := h.NewNetns(t)
		add := startPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(`"linkTimeout":"10s"`))
		waitInLinkWait(t, add)
		sent := time.Now()
		if err := add.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		r := add.wait(t, 5*time.Second)
		lag := add.end.Sub(sent)
		mustFail(t, r, "ADD", types.ErrTryAgainLater, "interrupted by signal", "eth0", "nothing was installed")
		if lag > 100*time.Millisecond {
			t.Fatalf("exit %s after SIGTERM, want < 100ms", lag)
		}
		assertNoResidue(t, []*h.Netns{ns}, add)
		rep.add("SIGTERM during link wait: exit 1 code 11 %s after the signal", lag.Round(100*time.Microsecond))
	})
	t.Run("SIGTERM during namespace lock wait", func(t *testing.T) {
		ns := h.NewNetns(t)
		eni := h.NewENI(t)
		eni.MoveInto(t, ns, "eth0", []string{"10.0.9.10/24"}, "10.0.9.1")
		lock := lockNetns(t, ns)
		add := startPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(`"linkTimeout":"10s"`))
		waitBlockedOnNsLock(t, add)
		sent := time.Now()
		if err := add.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		r := add.wait(t, 5*time.Second)
		lag := add.end.Sub(sent)
		mustFail(t, r, "ADD", types.ErrTryAgainLater, "signal")
		if lag > 100*time.Millisecond {
			t.Fatalf("exit %s after SIGTERM, want < 100ms", lag)
		}
		lock.release()
		assertNoResidue(t, []*h.Netns{ns}, add)
		rep.add("SIGTERM while blocked on the namespace lock: exit 1 code 11 %s after the signal", lag.Round(100*time.Microsecond))
	})
	// SIGKILL at the 1st route, mid-routes and at the last route (Apply is
	// then adding rules).
	for _, at := range []int{1, 100, 202} {
		t.Run(fmt.Sprintf("SIGKILL mid-apply at route %d", at), func(t *testing.T) {
			const n = 200
			ns := h.NewNetns(t)
			nl := ns.Handle(t)
			eni := h.NewENI(t)
			eni.MoveInto(t, ns, "eth0", []string{"10.0.10.10/24"}, "10.0.10.1")
			manyAddrs(t, nl, "eth0", n)
			// Full plan: n+1 rules; n+1 subnet routes and a default route.
			wantRules, wantRoutes := n+1, n+2
			converged := func(what string) {
				t.Helper()
				ru, rt := oursCount(t, nl)
				if ru != wantRules || rt != wantRoutes {
					t.Fatalf("%s: %d rules %d routes of ours, want %d and %d", what, ru, rt, wantRules, wantRoutes)
				}
			}
			// killMidApply returns the partial state a SIGKILL left. The
			// kill may land after Apply finished (only at the last route):
			// then DEL and try again.
			killMidApply := func() (int, int) {
				t.Helper()
				for attempt := 1; ; attempt++ {
					var mu sync.Mutex
					var p *plug
					mu.Lock()
					fired := onRoutesOfOurs(t, ns, at, func() {
						mu.Lock()
						defer mu.Unlock()
						_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
					})
					p = startPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(`"linkTimeout":"5s"`))
					mu.Unlock()
					r := p.wait(t, 30*time.Second)
					<-fired
					ru, rt := oursCount(t, nl)
					killed := r.ExitCode == -1 && p.cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
					if killed && ru+rt > 0 && (ru != wantRules || rt != wantRoutes) {
						return ru, rt
					}
					if attempt == 5 {
						t.Fatalf("SIGKILL never landed mid-apply: exit %d, %d rules %d routes of ours", r.ExitCode, ru, rt)
					}
					t.Logf("attempt %d: SIGKILL landed after Apply (exit %d, %d+%d objects); again", attempt, r.ExitCode, ru, rt)
					runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
				}
			}
			// Killed, then DEL, then a retried ADD.
			ru, rt := killMidApply()
			d, del := runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
			d.MustSucceed(t, "DEL after SIGKILL")
			assertNoResidue(t, []*h.Netns{ns}, del)
			a, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(""))
			a.MustSucceed(t, "retried ADD")
			converged("ADD after kill+DEL")
			runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
			// Killed, then a retried ADD without DEL.
			ru2, rt2 := killMidApply()
			a2, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(""))
			a2.MustSucceed(t, "retried ADD without DEL")
			converged("ADD after kill")
			a3, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(""))
			a3.MustSucceed(t, "third ADD")
			converged("third ADD")
			d2, del2 := runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
			d2.MustSucceed(t, "final DEL")
			assertNoResidue(t, []*h.Netns{ns}, del2)
			rep.add("SIGKILL at our route #%d of a %d-rule + %d-route plan: partial states of %d rules + %d routes and %d + %d; DEL then removed everything; a retried ADD converged to exactly the plan with and without DEL",
				at, wantRules, wantRoutes, ru, rt, ru2, rt2)
		})
	}
	t.Run("SIGKILL during link wait", func(t *testing.T) {
		ns := h.NewNetns(t)
		add := startPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(`"linkTimeout":"10s"`))
		waitInLinkWait(t, add)
		_ = syscall.Kill(-add.pid(), syscall.SIGKILL)
		r := add.wait(t, 5*time.Second)
		if r.ExitCode != -1 {
			t.Fatalf("not killed: %d", r.ExitCode)
		}
		assertNoResidue(t, []*h.Netns{ns}, add)
		eni := h.NewENI(t)
		eni.MoveInto(t, ns, "eth0", []string{"10.0.11.10/24"}, "10.0.11.1")
		a, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(`"linkTimeout":"5s"`))
		a.MustSucceed(t, "ADD after a killed ADD")
		d, del := runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
		d.MustSucceed(t, "DEL")
		assertNoResidue(t, []*h.Netns{ns}, del)
		rep.add("SIGKILL during link wait: nothing installed, no lock held; next ADD took %s", a.Duration.Round(time.Millisecond))
	})
}

// ---------------------------------------------------------------------------
// F4: DEL without a usable namespace.

// TestFaultDelWithoutNamespace: DEL with the namespace deleted after ADD,
// CNI_NETNS empty, pointing at files that are not network namespaces
// (regular file, directory, FIFO, socket, device, /proc file, another
// namespace type, dangling symlink, relative path) or at nothing: exit 0,
// promptly, and nothing created or changed on disk. ADD on the same paths
// fails at once with code 3 or 4.
func TestFaultDelWithoutNamespace(t *testing.T) {
	rep := scenario(t, "F4", "DEL with the namespace gone, CNI_NETNS empty, not a namespace, or missing")
	h.RequireRoot(t)
	dir := t.TempDir()
	mk := func(name string, make func(p string) error) string {
		p := filepath.Join(dir, name)
		if err := make(p); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return p
	}
	regular := mk("regular", func(p string) error { return os.WriteFile(p, []byte("not a netns"), 0o644) })
	directory := mk("dir", func(p string) error { return os.Mkdir(p, 0o755) })
	fifo := mk("fifo", func(p string) error { return unix.Mkfifo(p, 0o644) })
	sock := mk("sock", func(p string) error {
		l, err := net.Listen("unix", p)
		if err == nil {
			t.Cleanup(func() { l.Close() })
		}
		return err
	})
	dangling := mk("dangling", func(p string) error { return os.Symlink(filepath.Join(dir, "nowhere"), p) })
	tests := []struct {
		name    string
		path    string
		addCode uint
	}{
		{"CNI_NETNS empty", "", types.ErrInvalidEnvironmentVariables},
		{"missing path", filepath.Join(dir, "missing"), types.ErrUnknownContainer},
		{"missing directory", filepath.Join(dir, "no", "such", "netns"), types.ErrUnknownContainer},
		{"regular file", regular, types.ErrInvalidEnvironmentVariables},
		{"directory", directory, types.ErrInvalidEnvironmentVariables},
		{"FIFO", fifo, types.ErrInvalidEnvironmentVariables},
		{"unix socket", sock, types.ErrInvalidEnvironmentVariables},
		{"dangling symlink", dangling, types.ErrUnknownContainer},
		{"device /dev/null", "/dev/null", types.ErrInvalidEnvironmentVariables},
		{"procfs file", "/proc/version", types.ErrInvalidEnvironmentVariables},
		{"mount namespace", "/proc/self/ns/mnt", types.ErrInvalidEnvironmentVariables},
		{"pid namespace", "/proc/self/ns/pid", types.ErrInvalidEnvironmentVariables},
		{"relative path", "ec2pr-relative-netns", types.ErrUnknownContainer},
	}
	before := dirSnapshot(t, dir)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := cniEnv("DEL", nil, "eth0")
			env.Netns = tc.path
			d := startPlugin(t, env, relConf(""))
			r := d.wait(t, 5*time.Second)
			r.MustSucceed(t, "DEL")
			if r.Duration > 2*time.Second {
				t.Fatalf("DEL took %s", r.Duration)
			}
			env.Command = "ADD"
			a := startPlugin(t, env, relConf(`"linkTimeout":"1s"`))
			ar := a.wait(t, 5*time.Second)
			mustFail(t, ar, "ADD", tc.addCode)
			if ar.Duration > time.Second {
				t.Fatalf("ADD took %s to refuse", ar.Duration)
			}
			if !slices.Equal(dirSnapshot(t, dir), before) {
				t.Fatalf("DEL/ADD changed %s:\n before %q\n after  %q", dir, before, dirSnapshot(t, dir))
			}
			if _, err := os.Lstat("ec2pr-relative-netns"); err == nil {
				t.Fatal("a relative CNI_NETNS was created in the working directory")
			}
			assertNoResidue(t, nil, d, a)
			rep.add("%s: DEL exit 0 in %s, ADD code %d in %s, nothing created", tc.name, r.Duration.Round(time.Millisecond), ar.Err.Code, ar.Duration.Round(time.Millisecond))
		})
	}
	t.Run("namespace deleted after ADD", func(t *testing.T) {
		ns := h.NewNetns(t)
		eni := h.NewENI(t)
		eni.MoveInto(t, ns, "eth0", []string{"10.0.12.10/24"}, "10.0.12.1")
		a, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(""))
		a.MustSucceed(t, "ADD")
		ns.Delete()
		d, del := runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
		d.MustSucceed(t, "DEL with the namespace gone")
		if _, err := os.Lstat(ns.Path); !os.IsNotExist(err) {
			t.Fatalf("DEL created %s: %v", ns.Path, err)
		}
		assertNoResidue(t, nil, del)
		rep.add("namespace deleted after ADD: DEL exit 0 in %s, %s not recreated", d.Duration.Round(time.Millisecond), ns.Path)
	})
}

// dirSnapshot lists a directory tree: name, type, mode and size.
func dirSnapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %s %d", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ---------------------------------------------------------------------------
// F5: DEL and CHECK sequences.

// TestFaultDelSequences: DEL three times, DEL without prevResult after a
// chained ADD, DEL after ADDs that failed for different reasons: all exit 0
// and leave nothing.
func TestFaultDelSequences(t *testing.T) {
	rep := scenario(t, "F5a", "DEL x3, DEL without prevResult, DEL after failed ADDs")
	setup := func(t *testing.T, addrs ...string) *h.Netns {
		ns := h.NewNetns(t)
		if len(addrs) > 0 {
			eni := h.NewENI(t)
			eni.MoveInto(t, ns, "eth0", addrs, "10.0.13.1")
		}
		return ns
	}
	t.Run("DEL x3", func(t *testing.T) {
		ns := setup(t, "10.0.13.10/24")
		a, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), relConf(""))
		a.MustSucceed(t, "ADD")
		for i := range 3 {
			d, p := runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
			d.MustSucceed(t, fmt.Sprintf("DEL #%d", i+1))
			assertNoResidue(t, []*h.Netns{ns}, p)
		}
		rep.add("ADD then DEL x3: all exit 0, nothing left after each")
	})
	t.Run("DEL without prevResult", func(t *testing.T) {
		ns := setup(t, "10.0.13.10/24")
		prev := fmt.Sprintf(`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":%q}],"ips":[{"address":"10.0.13.10/24","gateway":"10.0.13.1","interface":0}]}`, ns.Path)
		a, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), chainedConf(t, "1.0.0", prev))
		a.MustSucceed(t, "chained ADD")
		d, p := runPlugin(t, cniEnv("DEL", ns, "eth0"), []byte(`{"cniVersion":"1.0.0","name":"task","type":"ec2-policy-routes","imds":{"enabled":false}}`))
		d.MustSucceed(t, "DEL without prevResult")
		assertNoResidue(t, []*h.Netns{ns}, p)
		rep.add("chained ADD, DEL without prevResult (libcni cache gone): exit 0, nothing left")
	})
	for _, tc := range []struct {
		name  string
		addrs []string
		conf  string
		code  uint
		msg   string
	}{
		{"link never appears", nil, `"linkTimeout":"300ms"`, types.ErrTryAgainLater, "timed out"},
		{"link has no address", []string{}, `"linkTimeout":"1s"`, types.ErrTryAgainLater, "no global"},
		{"sandbox elsewhere", nil, "", types.ErrInvalidNetworkConfig, "lists no interface"},
	} {
		t.Run("DEL after failed ADD: "+tc.name, func(t *testing.T) {
			ns := h.NewNetns(t)
			conf := relConf(tc.conf)
			if tc.addrs != nil {
				eni := h.NewENI(t)
				eni.MoveInto(t, ns, "eth0", tc.addrs)
			}
			if tc.name == "sandbox elsewhere" {
				conf = chainedConf(t, "1.0.0", `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/elsewhere"}],"ips":[{"address":"10.0.13.10/24","interface":0}]}`)
			}
			a, ap := runPlugin(t, cniEnv("ADD", ns, "eth0"), conf)
			mustFail(t, a, "ADD", tc.code, tc.msg)
			assertNoResidue(t, []*h.Netns{ns}, ap)
			// libcni's DEL after a failed ADD comes without prevResult.
			d, p := runPlugin(t, cniEnv("DEL", ns, "eth0"), relConf(""))
			d.MustSucceed(t, "DEL after failed ADD")
			assertNoResidue(t, []*h.Netns{ns}, p)
			rep.add("ADD failed (%s, code %d), then DEL: exit 0, nothing left", tc.name, a.Err.Code)
		})
	}
}

// TestFaultCheckReportsEachMissingObject: after a chained dual-stack ADD
// (with vpc-eni's IMDS blackhole in main, carried into our table), each of
// our rules and routes is deleted by hand in turn: CHECK must fail and name
// exactly that object; a retried ADD restores it and CHECK passes again.
// Deleting the link is reported by interface name.
func TestFaultCheckReportsEachMissingObject(t *testing.T) {
	rep := scenario(t, "F5b", "CHECK after manual deletion of each object of ours")
	ns := h.NewNetns(t)
	nl := ns.Handle(t)
	ns.IP(t, "route", "add", "blackhole", "169.254.169.254/32")
	eni := h.NewENI(t)
	eni.MoveInto(t, ns, "eth0", []string{"10.0.14.10/24", "2001:db8:14::10/64"}, "10.0.14.1", "2001:db8:14::1")
	prev := fmt.Sprintf(`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":%q}],"ips":[`+
		`{"address":"10.0.14.10/24","gateway":"10.0.14.1","interface":0},{"address":"2001:db8:14::10/64","gateway":"2001:db8:14::1","interface":0}]}`, ns.Path)
	conf := chainedConf(t, "1.0.0", prev)
	a, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), conf)
	a.MustSucceed(t, "ADD")
	c, _ := runPlugin(t, cniEnv("CHECK", ns, "eth0"), conf)
	c.MustSucceed(t, "CHECK after ADD")
	rules, routes := h.Ours(t, nl)
	if len(rules) != 2 || len(routes) != 5 {
		t.Fatalf("unexpected plan: %q %q", h.RuleStrings(rules), routeSet(routes))
	}
	checked := 0
	for _, r := range rules {
		name := ruleName(t, r)
		t.Run("rule "+name, func(t *testing.T) {
			if err := nl.RuleDel(&r); err != nil {
				t.Fatal(err)
			}
			checkNames(t, ns, conf, name)
			runPlugin(t, cniEnv("ADD", ns, "eth0"), conf)
			ok, _ := runPlugin(t, cniEnv("CHECK", ns, "eth0"), conf)
			ok.MustSucceed(t, "CHECK after the retried ADD")
			checked++
		})
	}
	for _, r := range routes {
		name := routeName(t, r)
		t.Run(name, func(t *testing.T) {
			if err := nl.RouteDel(&r); err != nil {
				t.Fatal(err)
			}
			checkNames(t, ns, conf, name)
			runPlugin(t, cniEnv("ADD", ns, "eth0"), conf)
			ok, _ := runPlugin(t, cniEnv("CHECK", ns, "eth0"), conf)
			ok.MustSucceed(t, "CHECK after the retried ADD")
			checked++
		})
	}
	t.Run("link deleted", func(t *testing.T) {
		l, err := nl.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := nl.LinkDel(l); err != nil {
			t.Fatal(err)
		}
		checkNames(t, ns, conf, "interface eth0 is missing")
		d, p := runPlugin(t, cniEnv("DEL", ns, "eth0"), conf)
		d.MustSucceed(t, "DEL")
		assertNoResidue(t, []*h.Netns{ns}, p)
		checked++
	})
	rep.add("%d objects (2 rules, 5 routes incl. the blackhole copy) and the link deleted one at a time: CHECK exit 1 code 11 naming each; ADD restored it", checked)
}

func checkNames(t *testing.T, ns *h.Netns, conf []byte, name string) {
	t.Helper()
	r, _ := runPlugin(t, cniEnv("CHECK", ns, "eth0"), conf)
	mustFail(t, r, "CHECK", types.ErrTryAgainLater, name)
}

// ruleName and routeName render an object as the plugin names it.
func ruleName(t *testing.T, r netlink.Rule) string {
	t.Helper()
	p, ok := ipNetPrefix(r.Src)
	if !ok {
		t.Fatalf("rule without source: %v", r)
	}
	return plan.Rule{Src: p, Table: r.Table, Priority: r.Priority}.String()
}

func routeName(t *testing.T, r netlink.Route) string {
	t.Helper()
	pr := plan.Route{Table: r.Table, Type: plan.RouteType(r.Type), Scope: plan.Scope(r.Scope), LinkIndex: r.LinkIndex}
	if p, ok := ipNetPrefix(r.Dst); ok {
		pr.Dst = p
	} else if r.Family == unix.AF_INET6 {
		pr.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	} else {
		pr.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	if pr.Type != plan.Unicast {
		pr.LinkIndex, pr.Scope = 0, plan.ScopeUniverse
	}
	if a, ok := netip.AddrFromSlice(r.Gw); ok {
		pr.Gateway = a.Unmap()
	}
	if a, ok := netip.AddrFromSlice(r.Src); ok {
		pr.Src = a.Unmap()
	}
	return pr.String()
}

func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// ---------------------------------------------------------------------------
// F6: foreign state.

// TestFaultForeignStateUntouched: rules and routes of others — same source,
// same table, same priority as ours but another protocol — present before
// ADD, or added into our table after it, survive ADD, CHECK, DEL and GC
// exactly; CHECK passes with them present.
func TestFaultForeignStateUntouched(t *testing.T) {
	rep := scenario(t, "F6", "foreign rules/routes (same source, table, priority; other protocol) survive ADD, CHECK, DEL, GC")
	ns := h.NewNetns(t)
	nl := ns.Handle(t)
	eni := h.NewENI(t)
	eni.MoveInto(t, ns, "eth0", []string{"10.0.15.10/24"}, "10.0.15.1")
	pre := [][]string{
		{"rule", "add", "from", "10.0.15.10/32", "lookup", "100", "priority", "500", "protocol", "static"},   // same source
		{"rule", "add", "from", "192.0.2.7/32", "lookup", "10000", "priority", "600", "protocol", "static"},  // the table we would pick
		{"rule", "add", "from", "192.0.2.8/32", "lookup", "300", "priority", "10000", "protocol", "static"},  // the priority we would pick
		{"rule", "add", "from", "10.0.15.10/32", "lookup", "10000", "priority", "10000", "protocol", "boot"}, // all three
		{"route", "add", "198.51.100.0/24", "via", "10.0.15.1", "table", "10000", "protocol", "static"},
		{"route", "add", "default", "via", "10.0.15.1", "table", "100", "protocol", "static"},
		{"route", "add", "203.0.113.0/24", "via", "10.0.15.1", "protocol", "static"},
		{"route", "add", "10.0.15.0/24", "dev", "eth0", "table", "10000", "protocol", "boot"},
	}
	for _, c := range pre {
		ns.IP(t, c...)
	}
	foreign0 := foreignState(t, nl)
	conf := conf11("")
	a, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), conf)
	a.MustSucceed(t, "ADD")
	rules, _ := h.Ours(t, nl)
	if len(rules) != 1 {
		t.Fatalf("ADD installed %q", h.RuleStrings(rules))
	}
	ourTable, ourPrio := rules[0].Table, rules[0].Priority
	equalSets(t, "foreign state after ADD", foreignState(t, nl), foreign0)
	// Others add into our table and at our priority after ADD.
	ns.IP(t, "route", "add", "198.51.100.0/24", "via", "10.0.15.1", "table", strconv.Itoa(ourTable), "protocol", "static")
	ns.IP(t, "rule", "add", "from", "192.0.2.9/32", "lookup", strconv.Itoa(ourTable), "priority", strconv.Itoa(ourPrio), "protocol", "static")
	ns.IP(t, "rule", "add", "from", "10.0.15.10/32", "lookup", strconv.Itoa(ourTable), "priority", strconv.Itoa(ourPrio+1), "protocol", "static")
	foreign1 := foreignState(t, nl)
	c, _ := runPlugin(t, cniEnv("CHECK", ns, "eth0"), conf)
	c.MustSucceed(t, "CHECK with foreign state present")
	a2, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), conf)
	a2.MustSucceed(t, "retried ADD")
	equalSets(t, "foreign state after the retried ADD", foreignState(t, nl), foreign1)
	g, _ := runPlugin(t, h.Env{Command: "GC", Path: "/nonexistent"},
		[]byte(`{"cniVersion":"1.1.0","name":"network-name","type":"ec2-policy-routes","imds":{"enabled":false},"cni.dev/valid-attachments":[]}`))
	g.MustSucceed(t, "GC")
	equalSets(t, "foreign state after GC", foreignState(t, nl), foreign1)
	if ru, rt := oursCount(t, nl); ru != 1 || rt != 2 {
		t.Fatalf("GC touched our objects: %d rules %d routes", ru, rt)
	}
	d, p := runPlugin(t, cniEnv("DEL", ns, "eth0"), conf)
	d.MustSucceed(t, "DEL")
	equalSets(t, "foreign state after DEL", foreignState(t, nl), foreign1)
	assertNoResidue(t, []*h.Netns{ns}, p)
	g2, _ := runPlugin(t, h.Env{Command: "GC", Path: "/nonexistent"}, []byte(`{"cniVersion":"1.1.0","name":"network-name","type":"ec2-policy-routes","imds":{"enabled":false}}`))
	g2.MustSucceed(t, "GC after DEL")
	equalSets(t, "foreign state after the last GC", foreignState(t, nl), foreign1)
	rep.add("%d foreign objects before ADD and 3 added into our table %d / priority %d after it: all identical after ADD, CHECK, retried ADD, GC, DEL, GC", len(foreign0), ourTable, ourPrio)
}

// foreignState renders every rule and route (all tables but local) that is
// not ours.
func foreignState(t *testing.T, nl *netlink.Handle) []string {
	t.Helper()
	var out []string
	rules, err := nl.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if int(r.Protocol) != plan.Protocol {
			out = append(out, fmt.Sprintf("rule fam %d from %s lookup %d prio %d proto %d", r.Family, r.Src, r.Table, r.Priority, r.Protocol))
		}
	}
	routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if int(r.Protocol) == plan.Protocol || r.Table == unix.RT_TABLE_LOCAL {
			continue
		}
		if r.Family == unix.AF_INET6 && r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
			continue
		}
		out = append(out, fmt.Sprintf("route table %d %s via %s dev %d type %d proto %d", r.Table, r.Dst, r.Gw, r.LinkIndex, r.Type, r.Protocol))
	}
	slices.Sort(out)
	return out
}
