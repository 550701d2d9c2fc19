package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s line %d is not one JSON record: %q: %v", path, i+1, line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"": slog.LevelInfo, "debug": slog.LevelDebug, "INFO": slog.LevelInfo,
		"warn": slog.LevelWarn, "Warning": slog.LevelWarn, "error": slog.LevelError,
	} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("verbose"); err == nil {
		t.Error("ParseLevel(verbose) accepted")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "512K": 512 << 10, "10M": 10 << 20, "10MiB": 10 << 20, "1g": 1 << 30, "2KB": 2048} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "ten", "1T"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestRecordFieldsAndLevel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	log, closeFn := New(Options{File: path, Level: "warn", Getenv: env(nil)})
	log.Info("dropped")
	log.Warn("ADD", "container", "c1", "added", []string{"+rule from 10.0.0.5/32 lookup 10001 priority 10001"})
	closeFn()
	lines := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("want 1 line (info filtered), got %d: %v", len(lines), lines)
	}
	l := lines[0]
	if l["msg"] != "ADD" || l["container"] != "c1" || l["level"] != "WARN" || l["time"] == nil {
		t.Errorf("unexpected record %v", l)
	}
	if pid, _ := l["pid"].(float64); int(pid) != os.Getpid() {
		t.Errorf("pid = %v, want %d", l["pid"], os.Getpid())
	}
}

func TestEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	cfgPath, envPath := filepath.Join(dir, "cfg.log"), filepath.Join(dir, "env.log")
	var stderr bytes.Buffer
	log, closeFn := New(Options{File: cfgPath, Level: "error", Stderr: &stderr,
		Getenv: env(map[string]string{EnvFile: envPath, EnvLevel: "debug"})})
	log.Debug("DEL")
	closeFn()
	if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
		t.Errorf("config path was written despite %s: %v", EnvFile, err)
	}
	if lines := readLines(t, envPath); len(lines) != 1 || lines[0]["level"] != "DEBUG" {
		t.Errorf("env file/level not applied: %v", lines)
	}

	// A bad override is reported and ignored; the config value stands.
	stderr.Reset()
	log, closeFn = New(Options{File: cfgPath, Level: "error", Stderr: &stderr,
		Getenv: env(map[string]string{EnvLevel: "loud", EnvMaxSize: "huge", EnvMaxBackups: "-2"})})
	log.Info("GC")
	log.Error("GC")
	closeFn()
	if lines := readLines(t, cfgPath); len(lines) != 1 || lines[0]["level"] != "ERROR" {
		t.Errorf("config level not kept after a bad override: %v", lines)
	}
	for _, want := range []string{EnvLevel, EnvMaxSize, EnvMaxBackups} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("no stderr notice about %s: %q", want, stderr.String())
		}
	}

	// "off" disables the log entirely.
	log, closeFn = New(Options{File: cfgPath, Getenv: env(map[string]string{EnvFile: FileOff})})
	if log.Enabled(t.Context(), slog.LevelError) {
		t.Error("logger enabled with file off")
	}
	closeFn()
}

func TestStderrTarget(t *testing.T) {
	var stderr bytes.Buffer
	log, closeFn := New(Options{File: FileStderr, Stderr: &stderr, Getenv: env(nil)})
	log.Info("STATUS")
	closeFn()
	if !strings.Contains(stderr.String(), `"msg":"STATUS"`) {
		t.Errorf("stderr target got %q", stderr.String())
	}
}

func TestModesAndDirectoryCreation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "var", "log", "ecs", "ec2-policy-routes.log")
	log, closeFn := New(Options{File: path, Getenv: env(nil)})
	log.Info("ADD")
	closeFn()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("log file mode %v is wider than 0640", perm)
	}
	dst, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := dst.Mode().Perm(); perm&^0o750 != 0 {
		t.Errorf("created directory mode %v is wider than 0750", perm)
	}
}

func TestWideExistingFileIsTightened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	log, closeFn := New(Options{File: path, Getenv: env(nil)})
	log.Info("ADD")
	closeFn()
	st, _ := os.Stat(path)
	if perm := st.Mode().Perm(); perm != 0o640 {
		t.Errorf("mode %v, want 0640", perm)
	}
}

func TestUnopenableFileNoticeOnce(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(blocker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	path := filepath.Join(blocker, "p.log") // parent is a regular file: fails even as root
	log, closeFn := New(Options{File: path, Stderr: &stderr, Getenv: env(nil)})
	log.Info("ADD")
	log.Info("ADD again")
	closeFn()
	got := stderr.String()
	if strings.Count(got, "cannot open log file") != 1 || !strings.Contains(got, path) {
		t.Errorf("want exactly one notice naming %s, got %q", path, got)
	}
}

func TestLazyOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	log, closeFn := New(Options{File: path, Level: "error", Getenv: env(nil)})
	log.Info("CHECK")
	closeFn()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a filtered record created the file: %v", err)
	}
}

func TestRedaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	log, closeFn := New(Options{File: path, Getenv: env(nil)})
	log.Info("ADD", "imds_token", "AQAEAHsecret", "Authorization", "Bearer x", "ifname", "eth0")
	closeFn()
	b, _ := os.ReadFile(path)
	if bytes.Contains(b, []byte("AQAEAHsecret")) || bytes.Contains(b, []byte("Bearer")) {
		t.Errorf("secret reached the log: %s", b)
	}
	if !bytes.Contains(b, []byte(`"ifname":"eth0"`)) {
		t.Errorf("ordinary field lost: %s", b)
	}
}

func TestRotationKeepsCountAndSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	const maxSize, backups, n = 1024, 3, 200
	f := NewFile(path, maxSize, backups, io.Discard)
	log := slog.New(slog.NewJSONHandler(f, nil))
	for i := range n {
		log.Info("ADD", "seq", i)
	}
	f.Close()
	for i := 1; i <= backups; i++ {
		if _, err := os.Stat(Backup(path, i)); err != nil {
			t.Errorf("backup %d missing: %v", i, err)
		}
	}
	if _, err := os.Stat(Backup(path, backups+1)); !os.IsNotExist(err) {
		t.Errorf("more than %d backups kept", backups)
	}
	last := -1
	for i := backups; i >= 0; i-- {
		p := path
		if i > 0 {
			p = Backup(path, i)
		}
		st, _ := os.Stat(p)
		if st.Size() > maxSize {
			t.Errorf("%s is %d bytes > %d", p, st.Size(), maxSize)
		}
		for _, l := range readLines(t, p) {
			seq := int(l["seq"].(float64))
			if seq != last+1 && last != -1 {
				t.Fatalf("%s: seq %d follows %d: lines lost or reordered", p, seq, last)
			}
			last = seq
		}
	}
	if last != n-1 {
		t.Errorf("newest line is %d, want %d", last, n-1)
	}
}

func TestNoBackups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	f := NewFile(path, 512, -1, io.Discard)
	log := slog.New(slog.NewJSONHandler(f, nil))
	for i := range 50 {
		log.Info("DEL", "seq", i)
	}
	f.Close()
	if _, err := os.Stat(Backup(path, 1)); !os.IsNotExist(err) {
		t.Errorf("a backup was kept with backups disabled")
	}
	if lines := readLines(t, path); lines[len(lines)-1]["seq"].(float64) != 49 {
		t.Errorf("newest line missing")
	}
}

// Two writers on one path (as two processes would be: flock locks belong to
// open file descriptions): after B rotates, A must append to the new file,
// not to the shifted one.
func TestWriterFollowsRotationByAnother(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	a := NewFile(path, 300, 10, io.Discard)
	b := NewFile(path, 300, 10, io.Discard)
	defer a.Close()
	defer b.Close()
	line := func(who string, i int) []byte {
		return fmt.Appendf(nil, "{\"who\":%q,\"seq\":%d,\"pad\":\"%s\"}\n", who, i, strings.Repeat("x", 60))
	}
	if _, err := a.Write(line("a", 0)); err != nil {
		t.Fatal(err)
	}
	for i := range 6 { // B pushes the file over 300 bytes: rotation
		if _, err := b.Write(line("b", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(Backup(path, 1)); err != nil {
		t.Fatalf("no rotation happened: %v", err)
	}
	if _, err := a.Write(line("a", 1)); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if got := lines[len(lines)-1]; got["who"] != "a" || got["seq"].(float64) != 1 {
		t.Errorf("A's write after B's rotation went elsewhere; live file ends with %v", got)
	}
}

// helperEnv makes the test binary act as one plugin process writing lines.
const helperEnv = "EC2PR_LOGGING_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helperWriter(spec))
	}
	os.Exit(m.Run())
}

// helperWriter: spec is "path|id|lines|maxSize|backups". It waits for the
// parent to close stdin (a start barrier), then logs through New as the
// plugin does.
func helperWriter(spec string) int {
	p := strings.Split(spec, "|")
	id, _ := strconv.Atoi(p[1])
	n, _ := strconv.Atoi(p[2])
	_, _ = io.Copy(io.Discard, os.Stdin)
	log, closeFn := New(Options{File: p[0], Getenv: env(map[string]string{EnvMaxSize: p[3], EnvMaxBackups: p[4]})})
	defer closeFn()
	for i := range n {
		log.Info("ADD", "proc", id, "seq", i, "added", []string{"+rule from 10.0.1.25/32 lookup 10001 priority 10001"})
	}
	return 0
}

// Many processes append at once with frequent rotation: every line must come
// out whole, exactly once, in per-process order, and no file may exceed the
// size limit.
func TestConcurrentProcessesNoInterleavingNoLoss(t *testing.T) {
	procs, lines := 12, 150
	if testing.Short() {
		procs, lines = 4, 50
	}
	const maxSize = 8 << 10
	path := filepath.Join(t.TempDir(), "p.log")
	backups := 1000 // keep everything so loss is detectable
	var cmds []*exec.Cmd
	var gates []io.Closer
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%d|%d|%d", helperEnv, path, i, lines, maxSize, backups))
		gate, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, gates = append(cmds, cmd), append(gates, gate)
	}
	for _, g := range gates { // all started: release them together
		g.Close()
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	files := []string{path}
	for i := 1; ; i++ {
		if _, err := os.Stat(Backup(path, i)); err != nil {
			break
		}
		files = append(files, Backup(path, i))
	}
	if len(files) < 3 {
		t.Fatalf("only %d files: the test did not exercise rotation", len(files))
	}
	next := make([]int, procs) // per-process next expected seq, oldest file first
	total := 0
	for i := len(files) - 1; i >= 0; i-- {
		st, _ := os.Stat(files[i])
		if st.Size() > maxSize {
			t.Errorf("%s is %d bytes > %d", files[i], st.Size(), maxSize)
		}
		fh, _ := os.Open(files[i])
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var m struct {
				Proc, Seq int
				Msg       string
			}
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m.Msg != "ADD" {
				t.Fatalf("%s: torn or interleaved line %q: %v", files[i], sc.Text(), err)
			}
			if m.Seq != next[m.Proc] {
				t.Fatalf("process %d: seq %d where %d expected: a line was lost or reordered", m.Proc, m.Seq, next[m.Proc])
			}
			next[m.Proc]++
			total++
		}
		fh.Close()
	}
	if total != procs*lines {
		t.Errorf("got %d lines, want %d", total, procs*lines)
	}
	t.Logf("%d processes x %d lines over %d files", procs, lines, len(files))
}

// BenchmarkInvocation is the logging cost of one plugin invocation: build
// the logger, open the file lazily, lock, check, write one line, close.
func BenchmarkInvocation(b *testing.B) {
	path := filepath.Join(b.TempDir(), "p.log")
	added := []string{"+route table 10001 default via 10.0.1.1 dev eth0", "+rule from 10.0.1.25/32 lookup 10001 priority 10001"}
	for b.Loop() {
		log, closeFn := New(Options{File: path, Getenv: env(nil)})
		log.Info("ADD", "verb", "ADD", "container", "0123456789abcdef", "netns", "/var/run/netns/cni-1234",
			"ifname", "eth0", "outcome", "ok", "duration_ms", 1.234, "tables", []int{10001}, "added", added)
		closeFn()
	}
}

// BenchmarkWrite is the steady-state cost of one record on an open logger.
func BenchmarkWrite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "p.log")
	log, closeFn := New(Options{File: path, Getenv: env(nil)})
	defer closeFn()
	for b.Loop() {
		log.Info("DEL", "container", "0123456789abcdef", "outcome", "ok")
	}
}

func TestLevelNameRoundTrip(t *testing.T) {
	for _, name := range []string{"debug", "info", "warn", "error"} {
		l, err := ParseLevel(strings.ToUpper(name))
		if err != nil || LevelName(l) != name {
			t.Errorf("%s: ParseLevel → %v %v → LevelName %q", name, l, err, LevelName(l))
		}
	}
}

// A log path that is not a regular file never blocks the invocation (a FIFO
// without a reader blocked open(2) until the runtime killed the plugin),
// never gets a "<path>.lock" beside it, and the notice says why.
func TestNonRegularLogPathNeverBlocks(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.log")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	stderrLink := filepath.Join(dir, "stderr.log") // what /dev/stderr is: a symlink
	if err := os.Symlink("/proc/self/fd/2", stderrLink); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "a-dir.log")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for path, why := range map[string]string{fifo: "a FIFO, not a regular file", stderrLink: "a symlink, not a regular file", sub: "not a regular file"} {
		var stderr bytes.Buffer
		done := make(chan struct{})
		go func() {
			defer close(done)
			log, closeFn := New(Options{File: path, Stderr: &stderr, Getenv: env(nil)})
			log.Info("ADD")
			closeFn()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: logging blocked", path)
		}
		if !strings.Contains(stderr.String(), why) || !strings.Contains(stderr.String(), path) {
			t.Errorf("%s: notice %q does not say %q", path, stderr.String(), why)
		}
		if _, err := os.Lstat(path + ".lock"); err == nil {
			t.Errorf("%s: lock file created beside a non-regular log path", path)
		}
	}
}

// A lock held by a stuck process bounds the write; the record is dropped
// with a notice instead of hanging the plugin.
func TestStuckLockHolderBoundsWrite(t *testing.T) {
	defer func(d time.Duration) { lockWait = d }(lockWait)
	lockWait = 100 * time.Millisecond
	path := filepath.Join(t.TempDir(), "p.log")
	holder, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := unix.Flock(int(holder.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	log, closeFn := New(Options{File: path, Stderr: &stderr, Getenv: env(nil)})
	start := time.Now()
	log.Info("ADD")
	log.Info("ADD again")
	closeFn()
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("writes took %v with the lock held elsewhere", el)
	}
	if got := stderr.String(); strings.Count(got, "cannot write log file") != 1 || !strings.Contains(got, "held by another process") {
		t.Errorf("want one notice about the held lock, got %q", got)
	}
}

// A relative EC2_POLICY_ROUTES_LOG_FILE is refused like a relative logFile
// in the config: a notice says why, and the line goes where it would
// without the override (the configured file, the default log unless the
// config names another), never into the working directory.
func TestEnvFileRelativeRefused(t *testing.T) {
	dir, cwd := t.TempDir(), t.TempDir()
	t.Chdir(cwd)
	cfgPath := filepath.Join(dir, "cfg.log")
	for _, rel := range []string{"p.log", "./p.log", "../p.log", "logs/p.log"} {
		var stderr bytes.Buffer
		log, closeFn := New(Options{File: cfgPath, Stderr: &stderr, Getenv: env(map[string]string{EnvFile: rel})})
		log.Info("ADD")
		closeFn()
		if msg := stderr.String(); !strings.Contains(msg, EnvFile) || !strings.Contains(msg, "relative path") ||
			!strings.Contains(msg, "ignoring it (logging to "+cfgPath+")") || strings.Count(msg, "\n") != 1 {
			t.Errorf("%s: notice %q", rel, msg)
		}
	}
	if lines := readLines(t, cfgPath); len(lines) != 4 {
		t.Errorf("the configured log has %d lines, want 4", len(lines))
	}
	for _, p := range []string{filepath.Join(cwd, "p.log"), filepath.Join(cwd, "p.log.lock"), filepath.Join(cwd, "logs"), filepath.Join(filepath.Dir(cwd), "p.log")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
	if err := CheckFile("/var/log/x.log"); err != nil {
		t.Error(err)
	}
	for _, ok := range []string{FileStderr, FileOff} {
		if err := CheckFile(ok); err != nil {
			t.Error(err)
		}
	}
}
