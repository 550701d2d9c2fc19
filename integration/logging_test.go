package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/logging"
)

// logLine is one invocation record as the plugin writes it.
type logLine struct {
	Time       time.Time `json:"time"`
	Level      string    `json:"level"`
	Msg        string    `json:"msg"`
	PID        int       `json:"pid"`
	Verb       string    `json:"verb"`
	Container  string    `json:"container"`
	Netns      string    `json:"netns"`
	IfName     string    `json:"ifname"`
	Outcome    string    `json:"outcome"`
	Code       int       `json:"code"`
	Error      string    `json:"error"`
	DurationMS *float64  `json:"duration_ms"`
	Note       string    `json:"note"`
	Tables     []int     `json:"tables"`
	Added      []string  `json:"added"`
	Removed    []string  `json:"removed"`
}

// logReadAll reads the log and its rotated files, oldest first.
func logReadAll(t *testing.T, path string) []logLine {
	t.Helper()
	files := []string{path}
	for i := 1; ; i++ {
		if _, err := os.Stat(logging.Backup(path, i)); err != nil {
			break
		}
		files = append(files, logging.Backup(path, i))
	}
	slices.Reverse(files)
	var out []logLine
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var l logLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				fh.Close()
				t.Fatalf("%s: not one JSON record per line: %q: %v", f, sc.Text(), err)
			}
			out = append(out, l)
		}
		fh.Close()
	}
	return out
}

func logConf(path, extra string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"task","type":"ec2-policy-routes","imds":{"enabled":false},"logFile":%q%s}`, path, extra))
}

// Many plugin processes at once, with a rotation size small enough to
// rotate dozens of times: every invocation's line is present exactly once
// and whole. DEL without a netns needs no root.
func TestLogConcurrentInvocations(t *testing.T) {
	bin := h.Binary(t)
	path := filepath.Join(t.TempDir(), "log", "ec2-policy-routes.log")
	const n = 120
	env := []string{logging.EnvMaxSize + "=4K", logging.EnvMaxBackups + "=1000"}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	sem := make(chan struct{}, 24) // bounded: 24 processes in flight
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := h.Run(context.Background(), t, bin, h.Env{Command: "DEL", ContainerID: fmt.Sprintf("ctr-%03d", i), IfName: "eth0", Path: "/x", Extra: env},
				logConf(path, ""))
			if r.ExitCode != 0 || len(r.Stderr) != 0 {
				errs <- fmt.Sprintf("ctr-%03d: exit %d stderr %s", i, r.ExitCode, r.Stderr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	lines := logReadAll(t, path)
	seen := map[string]int{}
	for _, l := range lines {
		if l.Verb != "DEL" || l.Outcome != "ok" || l.Note != "no netns: nothing to do" || l.DurationMS == nil || l.Time.IsZero() {
			t.Errorf("unexpected record %+v", l)
		}
		seen[l.Container]++
	}
	for i := range n {
		if c := seen[fmt.Sprintf("ctr-%03d", i)]; c != 1 {
			t.Errorf("ctr-%03d logged %d times, want 1", i, c)
		}
	}
	if _, err := os.Stat(logging.Backup(path, 2)); err != nil {
		t.Errorf("the test did not rotate: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&^0o640 != 0 {
		t.Errorf("log mode %v wider than 0640", st.Mode().Perm())
	}
}

// The env overrides win over the config; an unopenable file leaves the
// plugin working and says so on stderr; "off" writes nothing.
func TestLogOverridesAndUnopenableFile(t *testing.T) {
	bin := h.Binary(t)
	dir := t.TempDir()
	cfgPath, envPath := filepath.Join(dir, "cfg.log"), filepath.Join(dir, "env.log")
	base := h.Env{Command: "GC", Path: "/x"}

	e := base
	e.Extra = []string{logging.EnvFile + "=" + envPath, logging.EnvLevel + "=error"}
	h.Run(context.Background(), t, bin, e, logConf(cfgPath, `,"logLevel":"debug"`)).MustSucceed(t, "GC")
	if _, err := os.Stat(cfgPath); err == nil {
		t.Error("config logFile written despite EC2_POLICY_ROUTES_LOG_FILE")
	}
	if _, err := os.Stat(envPath); err == nil {
		t.Error("an ok GC was logged at EC2_POLICY_ROUTES_LOG_LEVEL=error")
	}
	e.Extra = []string{logging.EnvFile + "=" + envPath}
	h.Run(context.Background(), t, bin, e, logConf(cfgPath, "")).MustSucceed(t, "GC")
	if lines := logReadAll(t, envPath); len(lines) != 1 || lines[0].Verb != "GC" || lines[0].Note == "" {
		t.Errorf("env file: %+v", lines)
	}

	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := h.Run(context.Background(), t, bin, base, logConf(filepath.Join(blocker, "x.log"), "")).MustSucceed(t, "GC with an unopenable log")
	if !strings.Contains(string(r.Stderr), "cannot open log file") || len(r.Stdout) != 0 {
		t.Errorf("stderr %q stdout %q", r.Stderr, r.Stdout)
	}

	e.Extra = []string{logging.EnvFile + "=off"}
	r = h.Run(context.Background(), t, bin, e, logConf(cfgPath, "")).MustSucceed(t, "GC with log off")
	if _, err := os.Stat(cfgPath); err == nil || len(r.Stderr) != 0 {
		t.Errorf("log off still wrote: %v %s", err, r.Stderr)
	}
}

// A failing invocation logs one error line with its CNI code.
func TestLogFailureLine(t *testing.T) {
	bin := h.Binary(t)
	path := filepath.Join(t.TempDir(), "p.log")
	r := h.Run(context.Background(), t, bin, h.Env{Command: "ADD", ContainerID: "bad", Netns: "/nonexistent/netns", IfName: "eth0", Path: "/x"},
		logConf(path, `,"linkTimeout":"2h"`))
	r.MustFailWith(t, "ADD with linkTimeout 2h", 7)
	lines := logReadAll(t, path)
	if len(lines) != 1 || lines[0].Outcome != "error" || lines[0].Code != 7 || lines[0].Level != "ERROR" ||
		!strings.Contains(lines[0].Error, "linkTimeout") || lines[0].Netns != "/nonexistent/netns" {
		t.Errorf("%+v", lines)
	}
}

// In a real namespace: ADD logs the rules and routes it added, DEL the ones
// it removed, each in one line.
func TestLogAddDelRealNetns(t *testing.T) {
	h.RequireRoot(t)
	bin := h.Binary(t)
	ns := h.NewNetns(t)
	eni := h.NewENI(t)
	eni.MoveInto(t, ns, "eth0", []string{"10.20.1.25/24"}, "10.20.1.1")
	path := filepath.Join(t.TempDir(), "p.log")
	env := h.Env{ContainerID: "task-1", Netns: ns.Path, IfName: "eth0", Path: "/x"}
	conf := []byte(fmt.Sprintf(`{"cniVersion":"0.3.0","name":"network-name","type":"ec2-policy-routes","imds":{"enabled":false},"logFile":%q}`, path))
	env.Command = "ADD"
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "ADD")
	env.Command = "DEL"
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "DEL")
	lines := logReadAll(t, path)
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %+v", lines)
	}
	add, del := lines[0], lines[1]
	if add.Verb != "ADD" || add.Outcome != "ok" || add.Container != "task-1" || add.Netns != ns.Path || add.IfName != "eth0" ||
		!slices.ContainsFunc(add.Added, func(s string) bool { return strings.Contains(s, "rule from 10.20.1.25/32") }) {
		t.Errorf("ADD line %+v", add)
	}
	if del.Verb != "DEL" || len(del.Removed) != len(add.Added) {
		t.Errorf("DEL line removed %v, ADD added %v", del.Removed, add.Added)
	}
}

// logTokenTap records every IMDSv2 token the fake hands out.
type logTokenTap struct {
	mu     sync.Mutex
	tokens []string
	next   http.Handler
}

func (l *logTokenTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		l.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	l.next.ServeHTTP(rec, r)
	l.mu.Lock()
	l.tokens = append(l.tokens, rec.Body.String())
	l.mu.Unlock()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// An ADD that talks to IMDS, at debug level, logs addresses, rules and
// routes but never the session token.
func TestLogNoIMDSToken(t *testing.T) {
	h.RequireRoot(t)
	bin := h.Binary(t)
	ns := h.NewNetns(t)
	eni := h.NewENI(t)
	const mac = "0a:1e:00:00:0f:01"
	eni.SetMAC(t, mac)
	eni.MoveInto(t, ns, "eth0", []string{"10.40.1.25/24"}, "10.40.1.1")
	fake := imdsfake.New("0a:1e:00:00:0f:00", imdsfake.ENI{
		MAC: mac, DeviceNumber: 1, NetworkCard: imdsfake.Card(0), InterfaceID: "eni-0f00000000000000f",
		LocalIPv4s: []string{"10.40.1.25", "10.40.1.26"}, SubnetIPv4: "10.40.1.0/24",
	})
	tap := &logTokenTap{next: fake}
	srv := httptest.NewServer(tap)
	t.Cleanup(srv.Close)
	t.Cleanup(fake.Close)

	path := filepath.Join(t.TempDir(), "p.log")
	conf := []byte(fmt.Sprintf(`{"cniVersion":"0.3.0","name":"network-name","type":"ec2-policy-routes","logFile":%q,"logLevel":"debug","imds":{"endpoint":%q}}`, path, srv.URL))
	env := h.Env{Command: "ADD", ContainerID: "tok", Netns: ns.Path, IfName: "eth0", Path: "/x"}
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "ADD with IMDS")
	env.Command = "DEL"
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "DEL")

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(tap.tokens) == 0 {
		t.Fatal("the plugin never fetched a token: the test did not exercise IMDS")
	}
	for _, tok := range tap.tokens {
		if tok == "" || strings.Contains(string(b), tok) {
			t.Errorf("IMDS token %q appears in the log:\n%s", tok, b)
		}
	}
	if !strings.Contains(string(b), "10.40.1.26/32 lookup 10001") {
		t.Errorf("the log lacks the IMDS-derived rule:\n%s", b)
	}
}

// BenchmarkLogInvocation measures the logging share of a real plugin
// invocation: the same STATUS exec with the log off and with a log file.
// go test -run '^$' -bench LogInvocation ./integration/
func BenchmarkLogInvocation(b *testing.B) {
	bin := h.Binary(b)
	path := filepath.Join(b.TempDir(), "p.log")
	conf := logConf(path, "")
	for _, mode := range []string{"off", "file"} {
		b.Run(mode, func(b *testing.B) {
			env := append(os.Environ(), "CNI_COMMAND=STATUS", "CNI_PATH=/x")
			if mode == "off" {
				env = append(env, logging.EnvFile+"=off")
			}
			for b.Loop() {
				cmd := exec.Command(bin)
				cmd.Env = env
				cmd.Stdin = strings.NewReader(string(conf))
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%v %s", err, out)
				}
			}
		})
	}
}

// TestLogPathNeverBlocks: a log path that is not a regular file — a FIFO
// nobody reads (open(2) for writing used to block until the runtime killed
// the plugin, after the result was printed), /dev/stderr (left a stray
// /dev/stderr.lock) — never blocks or fails the invocation; stderr says why
// there is no log.
func TestLogPathNeverBlocks(t *testing.T) {
	rep := scenario(t, "L1", "log path that blocks or is not a regular file (FIFO without reader, /dev/stderr)")
	h.RequireRoot(t)
	fifo := filepath.Join(t.TempDir(), "fifo.log")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A stray lock from an earlier version would hide the fault; it is the
	// fault's own residue, so it goes.
	_ = os.Remove("/dev/stderr.lock")
	t.Cleanup(func() { _ = os.Remove("/dev/stderr.lock") })
	var slowest time.Duration
	for _, tc := range []struct{ path, why string }{
		{fifo, "a FIFO, not a regular file"},
		{"/dev/stderr", "a symlink, not a regular file"},
	} {
		ns := h.NewNetns(t)
		eni := h.NewENI(t)
		eni.MoveInto(t, ns, "eth0", []string{"10.0.24.10/24"}, "10.0.24.1")
		for _, verb := range []string{"ADD", "DEL"} {
			p := startPluginIn(t, cniEnv(verb, ns, "eth0"), relConf(""), t.TempDir(), tc.path)
			r := p.wait(t, 10*time.Second)
			r.MustSucceed(t, verb+" with logFile "+tc.path)
			if el := p.end.Sub(p.start); el > slowest {
				slowest = el
			}
			if !strings.Contains(string(r.Stderr), tc.why) {
				t.Errorf("%s %s: stderr %q does not say %q", verb, tc.path, r.Stderr, tc.why)
			}
		}
		if _, err := os.Lstat(tc.path + ".lock"); err == nil {
			t.Errorf("lock file left beside %s", tc.path)
		}
	}
	rep.add("ADD and DEL with the log a FIFO without reader and /dev/stderr: exit 0 (slowest %s), stderr names the reason, no `.lock` beside either", slowest.Round(time.Millisecond))
}
