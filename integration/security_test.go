package integration

// Reliability: hostile input through the binary, and security properties
// (issue 4): never the host namespace, no file outside its directories,
// private log modes, no IMDS token in logs, never another program.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
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
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/internal/badinput"
	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/state"
)

// TestHostileInputThroughBinary: the bad-input table of pkg/config, driven
// through the binary with the runtime's environment: exit 1, a CNI error
// JSON with the table's code and message, never 999, never a panic or a
// stack trace, nothing created, nothing installed.
func TestHostileInputThroughBinary(t *testing.T) {
	rep := scenario(t, "H1", "bad-input table through the binary (exit code + JSON error, never 999, never a panic)")
	h.RequireRoot(t)
	table, err := badinput.Load(filepath.Join(h.RepoRoot(), "pkg", "config", "testdata", "bad-inputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	ns := h.NewNetns(t)
	codes := map[uint]int{}
	var slowest time.Duration
	for _, c := range table.Cases {
		if c.Level == "unit" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			env := cniEnv("ADD", ns, "eth0")
			for k, v := range c.Env {
				v = strings.ReplaceAll(v, "@netns", ns.Path)
				switch k {
				case "CNI_IFNAME":
					env.IfName = v
				case "CNI_CONTAINERID":
					env.ContainerID = v
				case "CNI_COMMAND":
					env.Command = v
				case "CNI_NETNS":
					env.Netns = v
				default:
					t.Fatalf("unknown env %s", k)
				}
			}
			code, msg := c.Code, c.Msg
			if c.BinCode != 0 {
				code = c.BinCode
			}
			if c.BinMsg != nil {
				msg = *c.BinMsg
			}
			stdin, err := table.Stdin(c, ns.Path)
			if err != nil {
				t.Fatal(err)
			}
			r, p := runPlugin(t, env, stdin)
			mustFail(t, r, c.Name, code, msg)
			assertNoResidue(t, []*h.Netns{ns}, p)
			codes[code]++
			slowest = max(slowest, r.Duration)
		})
	}
	var parts []string
	for _, code := range slices.Sorted(func(yield func(uint) bool) {
		for c := range codes {
			if !yield(c) {
				return
			}
		}
	}) {
		parts = append(parts, fmt.Sprintf("code %d ×%d", code, codes[code]))
	}
	total := 0
	for _, n := range codes {
		total += n
	}
	rep.add("%d cases from pkg/config/testdata/bad-inputs.json (the same table pkg/config tests at unit level): %s; every one exit 1 with a CNI error JSON naming the field, 0 × code 999, 0 panics, nothing installed or created; slowest %s",
		total, strings.Join(parts, ", "), slowest.Round(time.Millisecond))
}

// TestSecurityNeverHostNamespace: every way of naming the host's own
// network namespace as CNI_NETNS (the plugin's /proc/self and
// /proc/thread-self, the test's pid, a symlink, a bind mount under
// /run/netns) is refused by ADD,
// CHECK and DEL with code 7 before anything is changed, even with
// CNI_IFNAME naming a real host interface; the host's rules and routes are
// identical afterwards.
func TestSecurityNeverHostNamespace(t *testing.T) {
	rep := scenario(t, "X1", "never installs anything in the host namespace")
	h.RequireRoot(t)
	hostIf := hostInterface(t)
	link := filepath.Join(t.TempDir(), "hostns")
	self := fmt.Sprintf("/proc/%d/ns/net", os.Getpid()) // the test runs in the host namespace
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	alias := "/run/netns/" + h.RandName("ec2pr-host")
	if err := os.WriteFile(alias, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(alias) })
	if err := unix.Mount("/proc/self/ns/net", alias, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount the host namespace: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(alias, unix.MNT_DETACH) })
	paths := []string{"/proc/self/ns/net", "/proc/thread-self/ns/net", self, link, alias}
	before := hostState(t)
	n := 0
	for _, p := range paths {
		for _, verb := range []string{"ADD", "CHECK", "DEL"} {
			t.Run(verb+" "+p, func(t *testing.T) {
				env := h.Env{Command: verb, ContainerID: "hostile", Netns: p, IfName: hostIf, Path: "/nonexistent"}
				r, proc := runPlugin(t, env, conf11(`"linkTimeout":"1s"`))
				mustFail(t, r, verb, types.ErrInvalidNetworkConfig, "host")
				assertNoResidue(t, nil, proc)
				n++
			})
		}
	}
	// A prevResult whose sandbox is the host selects nothing.
	ns := h.NewNetns(t)
	prev := fmt.Sprintf(`{"cniVersion":"1.0.0","interfaces":[{"name":%q,"sandbox":"/proc/1/ns/net"}],"ips":[{"address":"10.0.0.5/24","interface":0}]}`, hostIf)
	r, _ := runPlugin(t, cniEnv("ADD", ns, hostIf), chainedConf(t, "1.0.0", prev))
	mustFail(t, r, "ADD", types.ErrInvalidNetworkConfig, "lists no interface")
	if after := hostState(t); !slices.Equal(after, before) {
		t.Fatalf("host rules/routes changed:\n before %q\n after  %q", before, after)
	}
	assertHostClean(t)
	rep.add("%d refusals (ADD, CHECK, DEL × %d spellings of the host namespace incl. a symlink and a bind mount under /run/netns, CNI_IFNAME=%s), all exit 1 code 7 before any change; prevResult sandboxed in the host: code 7; host rules and routes identical",
		n, len(paths), hostIf)
}

// hostInterface is a real host interface name (the one with the default
// route when there is one).
func hostInterface(t *testing.T) string {
	t.Helper()
	routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		if r.Dst == nil && r.LinkIndex > 0 {
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				return l.Attrs().Name
			}
		}
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if n := l.Attrs().Name; n != "lo" && l.Attrs().Flags&net.FlagUp != 0 && !strings.HasPrefix(n, "eni") && !strings.HasPrefix(n, "enp") {
			return n
		}
	}
	return "lo"
}

// hostState renders the host's rules and the routes of main and of every
// table a rule names (not link-local/multicast IPv6, not local), to compare.
func hostState(t *testing.T) []string {
	t.Helper()
	hn, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer hn.Close()
	var out []string
	rules, err := hn.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		out = append(out, fmt.Sprintf("rule %d from %s lookup %d prio %d proto %d", r.Family, r.Src, r.Table, r.Priority, r.Protocol))
	}
	routes, err := hn.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Table == unix.RT_TABLE_LOCAL || (r.Family == unix.AF_INET6 && r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast())) {
			continue
		}
		// Other tests create and delete host veths concurrently: only
		// routes through lasting links are compared.
		if l, err := hn.LinkByIndex(r.LinkIndex); r.LinkIndex != 0 && (err != nil || strings.HasPrefix(l.Attrs().Name, "enp") || strings.HasPrefix(l.Attrs().Name, "eni")) {
			continue
		}
		out = append(out, fmt.Sprintf("route %d %s via %s dev %d table %d proto %d type %d", r.Family, r.Dst, r.Gw, r.LinkIndex, r.Table, r.Protocol, r.Type))
	}
	slices.Sort(out)
	return out
}

// imdsSetup is a task namespace with one ENI known to a fake IMDS whose
// session tokens are recorded (to look for them in logs).
type imdsSetup struct {
	ns     *h.Netns
	fake   *imdsfake.Fake
	url    string
	mu     sync.Mutex
	tokens []string
}

func newIMDSSetup(t *testing.T) *imdsSetup {
	t.Helper()
	s := &imdsSetup{ns: h.NewNetns(t)}
	eni := h.NewENI(t)
	const mac = "0a:1e:00:00:04:01"
	eni.SetMAC(t, mac)
	eni.MoveInto(t, s.ns, "eth1", []string{"10.0.40.25/24"}, "10.0.40.1")
	fake := imdsfake.New("0a:1e:00:00:04:00", imdsfake.ENI{
		MAC: mac, DeviceNumber: 1, InterfaceID: "eni-0abc00000000004e1",
		LocalIPv4s: []string{"10.0.40.25", "10.0.40.26"}, SubnetIPv4: "10.0.40.0/24",
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		fake.ServeHTTP(rec, r)
		if r.URL.Path == "/latest/api/token" && rec.Code == http.StatusOK {
			s.mu.Lock()
			s.tokens = append(s.tokens, strings.TrimSpace(rec.Body.String()))
			s.mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = io.Copy(w, rec.Body)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(fake.Close)
	s.url = srv.URL
	s.fake = fake
	return s
}

func (s *imdsSetup) conf(extra string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"sec","type":"ec2-policy-routes","linkTimeout":"5s","logLevel":"debug","imds":{"endpoint":%q,"timeout":"3s"}%s}`, s.url, extra))
}

// TestSecurityExecsOnlyItself: under strace -f, ADD (with IMDS), CHECK,
// DEL, STATUS (with IMDS), GC, VERSION and a failing ADD each make exactly
// one execve: the runtime's, of the plugin itself. No shell, no ip, no
// helper, in any code path exercised.
func TestSecurityExecsOnlyItself(t *testing.T) {
	rep := scenario(t, "X2", "the plugin never executes another program (strace -f -e execve,execveat)")
	strace := requireStrace(t)
	s := newIMDSSetup(t)
	bin := h.Binary(t)
	steps := []struct {
		verb string
		conf []byte
		ok   bool
	}{
		{"ADD", s.conf(""), true}, {"CHECK", s.conf(""), true}, {"STATUS", s.conf(""), true}, {"DEL", s.conf(""), true},
		{"GC", s.conf(`,"cni.dev/valid-attachments":[]`), true}, {"VERSION", s.conf(""), true},
		{"ADD", conf11(`"linkTimeout":"200ms","interfaces":["nosuch0"]`), false},
	}
	for _, st := range steps {
		out := filepath.Join(t.TempDir(), "strace.out")
		env := cniEnv(st.verb, s.ns, "eth1")
		if st.verb == "GC" || st.verb == "STATUS" || st.verb == "VERSION" {
			env = h.Env{Command: st.verb, Path: "/nonexistent"}
		}
		p := startPlugin(t, env, st.conf, strace, "-f", "-qq", "-s", "4096", "-e", "trace=execve,execveat", "-o", out)
		r := p.wait(t, 30*time.Second)
		if st.ok {
			r.MustSucceed(t, st.verb)
		} else if r.ExitCode == 0 {
			t.Fatalf("%s should have failed", st.verb)
		}
		execs := straceCalls(t, out, regexp.MustCompile(`\bexecve(at)?\(`))
		if len(execs) != 1 || !strings.Contains(execs[0], strconv.Quote(bin)) {
			t.Fatalf("%s: want exactly one execve, of %s; got %d:\n%s", st.verb, bin, len(execs), strings.Join(execs, "\n"))
		}
	}
	runPlugin(t, cniEnv("DEL", s.ns, "eth1"), s.conf(""))
	rep.add("%d invocations (ADD and STATUS against a fake IMDS, CHECK, DEL, GC, VERSION, a failing ADD) traced with strace -f: exactly 1 execve each, the plugin's own", len(steps))
}

// straceCalls returns the calls matching re in an strace -o file (not the
// "resumed" halves of interrupted calls).
func straceCalls(t *testing.T, path string, re *regexp.Regexp) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if re.MatchString(line) && !strings.Contains(line, "resumed>") {
			out = append(out, line)
		}
	}
	return out
}

var (
	straceFile  = regexp.MustCompile(`^(?:\d+\s+)?(\w+)\((.*)`)
	quotedPaths = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
)

// TestSecurityFilesStayInTheirDirectories: ADD and DEL with IMDS (so
// altname ownership records are written), odd but valid container IDs and
// interface names, traced with strace -f for every call that creates,
// renames, links or removes a file: the only paths touched are the state
// directory's hashed records and temp files, and the configured log file
// (with its lock). No path derived from a container ID or an interface name
// can leave its directory. Container IDs that are paths are refused by the
// runtime library before the plugin runs (H1).
func TestSecurityFilesStayInTheirDirectories(t *testing.T) {
	rep := scenario(t, "X3", "files the plugin creates stay in their directories (strace -f, file syscalls)")
	strace := requireStrace(t)
	s := newIMDSSetup(t)
	logDir := filepath.Join(t.TempDir(), "logs")
	logFile := filepath.Join(logDir, "plugin.log")
	ids := []string{"a..b", "x-.._", "0" + strings.Repeat("a.", 2000), "ecs-task-..-..-.."}
	touched := map[string]bool{}
	for _, id := range ids {
		for _, verb := range []string{"ADD", "DEL"} {
			out := filepath.Join(t.TempDir(), "strace.out")
			env := cniEnv(verb, s.ns, "eth1")
			env.ContainerID = id
			env.Extra = []string{"EC2_POLICY_ROUTES_LOG_FILE=" + logFile}
			p := startPlugin(t, env, s.conf(""), strace, "-f", "-qq", "-s", "8192", "-e",
				"trace=open,openat,openat2,creat,mkdir,mkdirat,mknod,mknodat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,unlink,unlinkat,rmdir,truncate,chmod,fchmodat,chown,fchownat,lchown",
				"-o", out)
			p.wait(t, 30*time.Second).MustSucceed(t, verb+" "+id[:min(len(id), 20)])
			for _, call := range fileChanges(t, out) {
				for _, path := range call.paths {
					if !allowedPath(path, logFile) {
						t.Fatalf("%s with container ID %q: %s touches %q outside the state directory and the log:\n%s", verb, id, call.name, path, call.line)
					}
					touched[path] = true
				}
			}
			if verb == "ADD" {
				rec := filepath.Join(state.DefaultDir, state.Name(id, "eth1"))
				if _, err := os.Stat(rec); err != nil {
					t.Fatalf("ADD with IMDS wrote no ownership record %s: %v", rec, err)
				}
			}
		}
		assertNoResidue(t, []*h.Netns{s.ns})
	}
	var kinds []string
	for p := range touched {
		switch {
		case strings.HasPrefix(p, logDir):
			p = "<logdir>" + strings.TrimPrefix(p, logDir)
		case strings.HasPrefix(p, state.DefaultDir+"/.tmp-"):
			p = state.DefaultDir + "/.tmp-*"
		case strings.HasPrefix(p, state.DefaultDir+"/"):
			p = state.DefaultDir + "/<sha256>.json"
		}
		if !slices.Contains(kinds, p) {
			kinds = append(kinds, p)
		}
	}
	slices.Sort(kinds)
	rep.add("ADD+DEL with IMDS for %d container IDs (incl. \"a..b\" and a 4,001-byte ID) under strace -f: the only paths created, renamed or removed were %s",
		len(ids), strings.Join(kinds, ", "))
}

type fileCall struct {
	name, line string
	paths      []string
}

// fileChanges parses strace output for calls that may create or change a
// path: opens with O_CREAT/O_WRONLY/O_RDWR/O_TRUNC, and every other traced
// call. Read-only opens are left out.
func fileChanges(t *testing.T, path string) []fileCall {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []fileCall
	for _, line := range strings.Split(string(data), "\n") {
		m := straceFile.FindStringSubmatch(line)
		if m == nil || strings.Contains(line, "resumed>") {
			continue
		}
		name, args := m[1], m[2]
		if strings.HasPrefix(name, "open") || name == "creat" {
			if name != "creat" && !regexp.MustCompile(`O_CREAT|O_WRONLY|O_RDWR|O_TRUNC`).MatchString(args) {
				continue
			}
		}
		c := fileCall{name: name, line: line}
		for _, q := range quotedPaths.FindAllStringSubmatch(args, -1) {
			if p, err := strconv.Unquote(`"` + q[1] + `"`); err == nil {
				c.paths = append(c.paths, p)
			} else {
				c.paths = append(c.paths, q[1])
			}
		}
		out = append(out, c)
	}
	return out
}

// allowedPath: the state directory (hashed names and temp files only), the
// log file, its lock and rotations, and their directories.
func allowedPath(p, logFile string) bool {
	switch {
	case p == state.DefaultDir, p == filepath.Dir(logFile), p == logFile, p == logFile+".lock":
		return true
	case strings.HasPrefix(p, logFile+"."):
		_, err := strconv.Atoi(strings.TrimPrefix(p, logFile+"."))
		return err == nil
	case filepath.Dir(p) == state.DefaultDir:
		b := filepath.Base(p)
		return regexp.MustCompile(`^([0-9a-f]{64}\.json|\.tmp-\d+)$`).MatchString(b)
	}
	return false
}

// TestSecurityLogFile: the log and its lock are created 0640 or stricter in
// a 0750 directory even under umask 000; a pre-existing world-writable log
// is brought down to 0640; a log path that is a symlink is not written
// through.
func TestSecurityLogFile(t *testing.T) {
	rep := scenario(t, "X4", "log file private: created 0640 or stricter, never world-writable")
	h.RequireRoot(t)
	ns := h.NewNetns(t)
	run := func(t *testing.T, logFile string) {
		t.Helper()
		old := syscall.Umask(0)
		env := cniEnv("DEL", ns, "eth0")
		env.Extra = []string{"EC2_POLICY_ROUTES_LOG_FILE=" + logFile}
		p := startPlugin(t, env, relConf(""))
		syscall.Umask(old)
		p.wait(t, 10*time.Second).MustSucceed(t, "DEL")
	}
	mode := func(t *testing.T, p string) os.FileMode {
		t.Helper()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	t.Run("created under umask 000", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new", "logs")
		logFile := filepath.Join(dir, "ec2-policy-routes.log")
		run(t, logFile)
		for _, c := range []struct {
			path string
			max  os.FileMode
		}{{logFile, 0o640}, {logFile + ".lock", 0o640}, {dir, 0o750}} {
			if m := mode(t, c.path); m&^c.max != 0 {
				t.Fatalf("%s has mode %o, want %o or stricter", c.path, m, c.max)
			}
		}
		rep.add("created under umask 000: log %o, lock %o, directory %o", mode(t, logFile), mode(t, logFile+".lock"), mode(t, dir))
	})
	t.Run("existing world-writable log", func(t *testing.T) {
		logFile := filepath.Join(t.TempDir(), "ec2-policy-routes.log")
		if err := os.WriteFile(logFile, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(logFile, 0o666); err != nil {
			t.Fatal(err)
		}
		run(t, logFile)
		if m := mode(t, logFile); m&0o137 != 0 {
			t.Fatalf("pre-existing 0666 log left at %o", m)
		}
		rep.add("pre-existing 0666 log: brought down to %o", mode(t, logFile))
	})
	t.Run("log path is a symlink", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "victim")
		if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		logFile := filepath.Join(dir, "ec2-policy-routes.log")
		if err := os.Symlink(target, logFile); err != nil {
			t.Fatal(err)
		}
		run(t, logFile)
		data, err := os.ReadFile(target)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != "precious\n" || mode(t, target) != 0o644 {
			t.Fatalf("the plugin wrote or chmod-ed through a symlinked log path: mode %o, %q", mode(t, target), data)
		}
		rep.add("log path a symlink to another file: that file neither written nor chmod-ed")
	})
}

// TestSecurityIMDSTokenNotLogged: with logLevel debug, the IMDSv2 session
// tokens the fake handed out appear in no log line, stdout or stderr, for
// ADD, CHECK, STATUS and DEL, successful or not.
func TestSecurityIMDSTokenNotLogged(t *testing.T) {
	rep := scenario(t, "X5", "the IMDS session token never appears in logs or output")
	h.RequireRoot(t)
	s := newIMDSSetup(t)
	logFile := filepath.Join(t.TempDir(), "plugin.log")
	var outputs [][]byte
	for _, c := range []struct {
		verb string
		conf []byte
	}{
		{"ADD", s.conf("")}, {"CHECK", s.conf("")}, {"STATUS", s.conf("")}, {"DEL", s.conf("")},
		{"ADD-500", s.conf("")}, // IMDS answers 500 after the token: fails with code 11
	} {
		if c.verb == "ADD-500" {
			s.fake.Fail("local-ipv4s", http.StatusInternalServerError, 1000)
			c.verb = "ADD"
		}
		env := cniEnv(c.verb, s.ns, "eth1")
		if c.verb == "STATUS" {
			env = h.Env{Command: c.verb, Path: "/nonexistent"}
		}
		env.Extra = []string{"EC2_POLICY_ROUTES_LOG_FILE=" + logFile}
		p := startPlugin(t, env, c.conf)
		r := p.wait(t, 30*time.Second)
		if c.conf != nil && s.fake != nil && r.ExitCode != 0 {
			mustFail(t, r, c.verb, types.ErrTryAgainLater, s.url)
		}
		outputs = append(outputs, r.Stdout, r.Stderr)
	}
	runPlugin(t, cniEnv("DEL", s.ns, "eth1"), s.conf(""))
	logData, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, logData)
	s.mu.Lock()
	tokens := slices.Clone(s.tokens)
	s.mu.Unlock()
	if len(tokens) == 0 {
		t.Fatal("the fake IMDS issued no token: the scenario did not reach IMDS")
	}
	for _, tok := range tokens {
		if len(tok) < 16 {
			t.Fatalf("implausible token %q", tok)
		}
		for _, o := range outputs {
			if bytes.Contains(o, []byte(tok)) {
				t.Fatalf("IMDS token %q found in output/log:\n%s", tok, o)
			}
		}
	}
	lines := bytes.Count(logData, []byte("\n"))
	rep.add("%d tokens issued; searched %d log lines (level debug) and the stdout/stderr of 5 invocations: 0 occurrences", len(tokens), lines)
}

// TestSecurityRelativeLogFileAndTrailingData: a relative logFile, in the
// plugin's config or the ECS front's settings, is refused (code 7) instead
// of putting the log and its .lock in the caller's working directory; the
// front's settings with data after the object (garbage, a second object)
// are refused instead of half-read. Each run in an empty working directory
// that must stay empty; the front's upstream never runs.
func TestSecurityRelativeLogFileAndTrailingData(t *testing.T) {
	rep := scenario(t, "X7", "relative logFile (plugin config, front settings) and front settings with trailing data: refused, nothing in the working directory")
	h.RequireRoot(t)
	ns := h.NewNetns(t)
	// run executes bin in an empty working directory and returns its
	// result, failing the test if anything appeared there.
	run := func(t *testing.T, bin string, env h.Env, stdin []byte) h.Result {
		t.Helper()
		cwd := t.TempDir()
		cmd := exec.Command(bin)
		cmd.Dir = cwd
		cmd.Env = []string{
			"CNI_COMMAND=" + env.Command, "CNI_CONTAINERID=" + env.ContainerID, "CNI_NETNS=" + env.Netns,
			"CNI_IFNAME=" + env.IfName, "CNI_PATH=" + env.Path, "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		}
		cmd.Stdin = bytes.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		r := h.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: cmd.ProcessState.ExitCode()}
		if err != nil && r.ExitCode != 1 {
			t.Fatalf("%s: %v %s", bin, err, stderr.String())
		}
		var te types.Error
		if json.Unmarshal(r.Stdout, &te) == nil && te.Code != 0 {
			r.Err = &te
		}
		if ents, _ := os.ReadDir(cwd); len(ents) != 0 {
			t.Fatalf("%s created %d entries in its working directory, e.g. %s", bin, len(ents), ents[0].Name())
		}
		return r
	}
	for _, tc := range []struct{ name, logFile string }{{"plugin.log", "plugin.log"}, {"./log/plugin.log", "./log/plugin.log"}} {
		env := cniEnv("ADD", ns, "eth0")
		conf := []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"net","type":"ec2-policy-routes","imds":{"enabled":false},"logFile":%q}`, tc.logFile))
		r := run(t, h.Binary(t), env, conf)
		mustFail(t, r, "plugin ADD, logFile "+tc.logFile, types.ErrInvalidNetworkConfig, fmt.Sprintf("logFile: %q is a relative path", tc.logFile))
		rep.add("plugin, logFile %q: ADD exit 1 code 7 %q; working directory empty", tc.logFile, r.Err.Msg)
	}
	for _, tc := range []struct{ name, settings, msg string }{
		{"relative logFile", `{"upstream":"@UP","logFile":"front.log","imds":{"enabled":false}}`, `logFile "front.log" is a relative path`},
		{"trailing garbage", `{"upstream":"@UP","imds":{"enabled":false}} garbage {`, "one JSON object only"},
		{"second object", `{"upstream":"@UP","imds":{"enabled":false}}` + "\n" + `{"upstream":"/elsewhere"}`, "one JSON object only"},
	} {
		t.Run("front "+tc.name, func(t *testing.T) {
			l := newFrontLayout(t, nil)
			settings := strings.ReplaceAll(tc.settings, "@UP", l.Up)
			if err := os.WriteFile(filepath.Join(l.Dir, ecsfront.SettingsFile), []byte(settings), 0o644); err != nil {
				t.Fatal(err)
			}
			task := newTaskNS(t)
			env := h.Env{Command: "ADD", ContainerID: "task-x7", Netns: task.Proc, IfName: "eth0", Path: l.Dir}
			r := run(t, filepath.Join(l.Dir, "vpc-eni"), env, newTaskENIConfOnly())
			mustFail(t, r, "front ADD", types.ErrInvalidNetworkConfig, tc.msg)
			if calls := l.calls("vpc-eni"); len(calls) != 0 {
				t.Fatalf("upstream executed: %v", calls)
			}
			rep.add("front settings, %s: ADD exit 1 code 7 %q; upstream not run; working directory empty", tc.name, r.Err.Msg)
		})
	}
}
