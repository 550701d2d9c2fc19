package integration

// Long reliability runs (make stress) and the report generator.
//
// Every reliability scenario registers itself with scenario(t, id, title)
// and adds result lines (counts, durations). With EC2PR_REPORT=<path>
// TestMain writes them, with the fuzzing results found in EC2PR_FUZZ_LOGS,
// to that markdown file (make stress: docs/RELIABILITY.md).
//
// The churn test runs only with EC2PR_STRESS=1; its size comes from
// EC2PR_CHURN_CYCLES (default 1000) and EC2PR_CHURN_PARALLEL (default 8).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
)

func TestMain(m *testing.M) {
	start := time.Now()
	restore := keepDefaultLogAsFound()
	code := m.Run()
	restore()
	removeBuiltFake()
	if path := os.Getenv("EC2PR_REPORT"); path != "" {
		if err := writeReport(path, time.Since(start), code); err != nil {
			fmt.Fprintf(os.Stderr, "write reliability report: %v\n", err)
			if code == 0 {
				code = 1
			}
		} else {
			fmt.Fprintf(os.Stderr, "reliability report written to %s\n", path)
		}
	}
	os.Exit(code)
}

// keepDefaultLogAsFound: tests whose config names no logFile make the plugin
// log to its production default (/var/log/ecs/ec2-policy-routes.log). Remove
// afterwards whatever of that the run created, so the machine is left as
// found; files that existed before are never touched.
func keepDefaultLogAsFound() (restore func()) {
	dir := filepath.Dir(config.DefaultLogFile)
	_, dirErr := os.Stat(dir)
	before := map[string]bool{}
	old, _ := filepath.Glob(config.DefaultLogFile + "*")
	for _, f := range old {
		before[f] = true
	}
	return func() {
		now, _ := filepath.Glob(config.DefaultLogFile + "*")
		for _, f := range now {
			if !before[f] {
				_ = os.Remove(f)
			}
		}
		if os.IsNotExist(dirErr) {
			_ = os.Remove(dir) // only if empty
		}
	}
}

// ---------------------------------------------------------------------------
// Scenario registry.

type scenarioRec struct {
	ID, Title, Test string
	Status          string
	Duration        time.Duration
	Lines           []string
}

var registry struct {
	sync.Mutex
	recs []*scenarioRec
}

type recorder struct{ rec *scenarioRec }

// scenario registers a reliability scenario for the report; its status
// (PASS, FAIL, SKIP) and duration are taken when the test ends.
func scenario(t *testing.T, id, title string) *recorder {
	t.Helper()
	rec := &scenarioRec{ID: id, Title: title, Test: t.Name()}
	registry.Lock()
	for _, r := range registry.recs {
		if r.ID == id && r.Test != rec.Test { // two scenarios, one ID: docs/RELIABILITY.md would show both under it
			t.Errorf("scenario ID %s is %s's already (%q): take the next free one", id, r.Test, r.Title)
		}
	}
	registry.recs = append(registry.recs, rec)
	registry.Unlock()
	start := time.Now()
	t.Cleanup(func() {
		registry.Lock()
		defer registry.Unlock()
		rec.Duration = time.Since(start)
		switch {
		case t.Failed():
			rec.Status = "FAIL"
		case t.Skipped():
			rec.Status = "SKIP"
		default:
			rec.Status = "PASS"
		}
	})
	return &recorder{rec: rec}
}

// add appends a result line (counts, durations) to the scenario.
func (r *recorder) add(format string, a ...any) {
	registry.Lock()
	defer registry.Unlock()
	r.rec.Lines = append(r.rec.Lines, fmt.Sprintf(format, a...))
}

// ---------------------------------------------------------------------------
// S1: churn.

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// churnWorker owns one task namespace with one dual-stack ENI.
type churnWorker struct {
	id      int
	ns      *h.Netns
	nl      *netlink.Handle
	eni     *h.ENI
	v4, v6  string
	gw4     string
	gw6     string
	tmp     string
	log     string
	adds    []time.Duration
	dels    []time.Duration
	invokes int
	kinds   [3]int
}

// TestStressChurn: ADD/DEL cycles on parallel workers, each cycle one of
// three shapes: ECS standalone (0.3.0, no prevResult); chained (1.0.0,
// prevResult, with CHECK); and ADD, then the ENI leaves the namespace
// before DEL (DEL must reap the rules the kernel did not flush), then the
// ENI comes back. After every step the namespace holds exactly the plan or
// nothing; at the end: zero rules/routes of ours anywhere, no namespace
// lock held, TMPDIRs empty, no process left, the test process's descriptor
// count unchanged, and one well-formed log line per invocation.
func TestStressChurn(t *testing.T) {
	rep := scenario(t, "S1", "churn: ADD/DEL cycles in parallel workers")
	if os.Getenv("EC2PR_STRESS") == "" {
		t.Skip("long run: make stress (EC2PR_STRESS=1)")
	}
	h.RequireRoot(t)
	cycles := envInt("EC2PR_CHURN_CYCLES", 1000)
	par := envInt("EC2PR_CHURN_PARALLEL", 8)
	hostNS := hostNetnsFile(t)
	logDir := t.TempDir()
	workers := make([]*churnWorker, par)
	for i := range workers {
		w := &churnWorker{
			id: i, ns: h.NewNetns(t), eni: h.NewENI(t), tmp: t.TempDir(), log: filepath.Join(logDir, fmt.Sprintf("w%d.log", i)),
			v4: fmt.Sprintf("10.60.%d.10/24", i), gw4: fmt.Sprintf("10.60.%d.1", i),
			v6: fmt.Sprintf("2001:db8:60:%x::10/64", i), gw6: fmt.Sprintf("2001:db8:60:%x::1", i),
		}
		w.nl = w.ns.Handle(t)
		w.eni.MoveInto(t, w.ns, "eth0", []string{w.v4, w.v6}, w.gw4, w.gw6)
		workers[i] = w
	}
	fdsBefore := openFDs(t)
	fileNrBefore := fileNr()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for _, w := range workers {
		n := cycles / par
		if w.id < cycles%par {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range n {
				if err := w.cycle(t, c, hostNS); err != nil {
					errs <- fmt.Errorf("worker %d cycle %d: %w", w.id, c, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// Leak checks.
	var adds, dels []time.Duration
	invocations := 0
	var kinds [3]int
	for _, w := range workers {
		assertNothingOurs(t, w.nl)
		assertNoAltNamesOfOurs(t, w.nl)
		assertNetnsUnlocked(t, w.ns)
		assertDirEmpty(t, w.tmp)
		adds = append(adds, w.adds...)
		dels = append(dels, w.dels...)
		invocations += w.invokes
		for k := range kinds {
			kinds[k] += w.kinds[k]
		}
		lines := logLines(t, w.log)
		if lines != w.invokes {
			t.Errorf("worker %d: %d log lines for %d invocations", w.id, lines, w.invokes)
		}
	}
	assertHostClean(t)
	if fds := openFDs(t); fds != fdsBefore {
		t.Errorf("test process descriptors: %d before, %d after", fdsBefore, fds)
	}
	t.Logf("%d cycles (%d standalone, %d chained, %d ENI-left-before-DEL) by %d workers in %s: %d invocations, %.0f/s",
		cycles, kinds[0], kinds[1], kinds[2], par, elapsed, invocations, float64(invocations)/elapsed.Seconds())
	rep.add("%d ADD/DEL cycles, %d in parallel (%d ECS standalone, %d chained with CHECK, %d with the ENI leaving before DEL): **%s**, %d plugin invocations (%.0f/s)",
		cycles, par, kinds[0], kinds[1], kinds[2], elapsed.Round(10*time.Millisecond), invocations, float64(invocations)/elapsed.Seconds())
	rep.add("ADD latency (process start to exit): p50 %s, p95 %s, p99 %s, max %s", pct(adds, 50), pct(adds, 95), pct(adds, 99), pct(adds, 100))
	rep.add("DEL latency: p50 %s, p95 %s, p99 %s, max %s", pct(dels, 50), pct(dels, 95), pct(dels, 99), pct(dels, 100))
	rep.add("leaks: 0 rules, 0 routes, 0 altnames of ours (task namespaces and host); 0 namespace locks held; 0 files in TMPDIR; 0 processes; test-process descriptors %d before and after; system file handles %d before, %d after (whole machine, informational)",
		fdsBefore, fileNrBefore, fileNr())
	rep.add("log: %d well-formed JSON lines for %d invocations (none lost or interleaved)", invocations, invocations)
}

func (w *churnWorker) run(t *testing.T, verb string, conf []byte) (h.Result, error) {
	env := h.Env{Command: verb, ContainerID: fmt.Sprintf("churn-%d", w.id), Netns: w.ns.Path, IfName: "eth0", Path: "/nonexistent"}
	p := startPluginIn(t, env, conf, w.tmp, w.log)
	r := p.wait(t, time.Minute)
	w.invokes++
	switch verb {
	case "ADD":
		w.adds = append(w.adds, r.Duration)
	case "DEL":
		w.dels = append(w.dels, r.Duration)
	}
	if r.ExitCode != 0 {
		return r, fmt.Errorf("%s exit %d: %s %s", verb, r.ExitCode, r.Stdout, r.Stderr)
	}
	return r, nil
}

func (w *churnWorker) expect(t *testing.T, wantRules, wantRoutes int, when string) error {
	rules, routes := h.Ours(t, w.nl)
	if len(rules) != wantRules || len(routes) != wantRoutes {
		return fmt.Errorf("%s: %d rules %d routes of ours, want %d and %d: %q %q",
			when, len(rules), len(routes), wantRules, wantRoutes, h.RuleStrings(rules), routeSet(routes))
	}
	return nil
}

func (w *churnWorker) cycle(t *testing.T, c int, hostNS *os.File) error {
	kind := c % 3
	w.kinds[kind]++
	standalone := relConf("")
	prev := fmt.Sprintf(`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":%q}],"ips":[`+
		`{"address":%q,"gateway":%q,"interface":0},{"address":%q,"gateway":%q,"interface":0}]}`, w.ns.Path, w.v4, w.gw4, w.v6, w.gw6)
	chained := []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"task","type":"ec2-policy-routes","imds":{"enabled":false},"prevResult":%s}`, prev))
	// Plan: one rule per address; per family an on-link and a default route.
	const rules, routes = 2, 4
	switch kind {
	case 0, 1:
		conf := standalone
		if kind == 1 {
			conf = chained
		}
		if _, err := w.run(t, "ADD", conf); err != nil {
			return err
		}
		if err := w.expect(t, rules, routes, "after ADD"); err != nil {
			return err
		}
		if kind == 1 {
			if _, err := w.run(t, "CHECK", conf); err != nil {
				return err
			}
		}
		if _, err := w.run(t, "DEL", conf); err != nil {
			return err
		}
		return w.expect(t, 0, 0, "after DEL")
	default:
		if _, err := w.run(t, "ADD", standalone); err != nil {
			return err
		}
		l, err := w.nl.LinkByName("eth0")
		if err != nil {
			return err
		}
		// Renamed first, as vpc-eni's DEL does: the host has its own eth0.
		if err := w.nl.LinkSetName(l, w.eni.Name); err != nil {
			return err
		}
		if err := w.nl.LinkSetNsFd(l, int(hostNS.Fd())); err != nil {
			return err
		}
		// The kernel flushed the routes through the link; the rules stay.
		if err := w.expect(t, rules, 0, "after the ENI left"); err != nil {
			return err
		}
		if _, err := w.run(t, "DEL", standalone); err != nil {
			return err
		}
		if err := w.expect(t, 0, 0, "after DEL with the ENI gone"); err != nil {
			return err
		}
		return w.bringBack(t)
	}
}

// bringBack moves the ENI from the host into the namespace again and
// configures it as vpc-eni would.
func (w *churnWorker) bringBack(t *testing.T) error {
	l, err := netlink.LinkByName(w.eni.Name)
	if err != nil {
		return fmt.Errorf("ENI back in host: %w", err)
	}
	f, err := os.Open(w.ns.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := netlink.LinkSetNsFd(l, int(f.Fd())); err != nil {
		return err
	}
	in, err := w.nl.LinkByName(w.eni.Name)
	if err != nil {
		return err
	}
	if err := w.nl.LinkSetName(in, "eth0"); err != nil {
		return err
	}
	for _, a := range []string{w.v4, w.v6} {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return err
		}
		if strings.Contains(a, ":") {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := w.nl.AddrAdd(in, addr); err != nil {
			return err
		}
	}
	if err := w.nl.LinkSetUp(in); err != nil {
		return err
	}
	for _, gw := range []string{w.gw4, w.gw6} {
		r := &netlink.Route{LinkIndex: in.Attrs().Index, Gw: parseIP(gw)}
		if err := w.nl.RouteAdd(r); err != nil {
			return fmt.Errorf("default via %s: %w", gw, err)
		}
	}
	return nil
}

func parseIP(s string) []byte {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil
	}
	return a.AsSlice()
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// fileNr is the machine's allocated file handles (/proc/sys/fs/file-nr).
func fileNr() int {
	data, err := os.ReadFile("/proc/sys/fs/file-nr")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// logLines counts the log's lines, failing on one that is not a JSON
// object (an interleaved or torn write).
func logLines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %d is not JSON (%v): %q", n+1, err, sc.Text())
		}
		n++
	}
	return n
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return s[i].Round(100 * time.Microsecond)
}

// ---------------------------------------------------------------------------
// The report.

var fuzzLine = regexp.MustCompile(`fuzz: elapsed: (\S+), execs: (\d+) \((\d+)/sec\), new interesting: (\d+) \(total: (\d+)\)`)

type fuzzResult struct {
	Target, Package, Elapsed, Execs, Rate, Corpus, Result string
}

// fuzzResults reads the logs make stress leaves in EC2PR_FUZZ_LOGS
// (fuzz-<Target>.log, first line "package <import path>").
func fuzzResults() []fuzzResult {
	dir := os.Getenv("EC2PR_FUZZ_LOGS")
	if dir == "" {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(dir, "fuzz-*.log"))
	sort.Strings(files)
	var out []fuzzResult
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		r := fuzzResult{Target: strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "fuzz-"), ".log"), Result: "FAIL"}
		for _, line := range strings.Split(string(data), "\n") {
			if m := fuzzLine.FindStringSubmatch(line); m != nil {
				r.Elapsed, r.Execs, r.Corpus = m[1], m[2], m[5]
				// The last line's own rate is of its last tick (often 0).
				if d, err := time.ParseDuration(m[1]); err == nil && d > 0 {
					n, _ := strconv.Atoi(m[2])
					r.Rate = strconv.Itoa(int(float64(n) / d.Seconds()))
				}
			}
			if strings.HasPrefix(line, "package ") {
				r.Package = strings.TrimPrefix(line, "package ")
			}
			if strings.HasPrefix(line, "ok ") || line == "PASS" {
				r.Result = "PASS (0 panics, 0 failures)"
			}
		}
		out = append(out, r)
	}
	return out
}

func writeReport(path string, total time.Duration, code int) error {
	registry.Lock()
	recs := slices.Clone(registry.recs)
	registry.Unlock()
	sort.SliceStable(recs, func(i, j int) bool { return idLess(recs[i].ID, recs[j].ID) })
	var b strings.Builder
	kernel := "unknown"
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	fmt.Fprintf(&b, "# Reliability\n\n")
	fmt.Fprintf(&b, "Generated by `make stress` on %s: Linux %s, %d CPUs, %s; integration run %s, exit %d.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), kernel, runtime.NumCPU(), runtime.Version(), total.Round(time.Second), code)
	b.WriteString("Do not edit by hand: the scenarios are the tests in `integration/faults_test.go`, `concurrency_test.go`,\n" +
		"`security_test.go`, `imds_faults_test.go`, `routing_test.go`, `ecs_front_reliability_test.go` and `stress_test.go`,\n" +
		"and the fuzz targets `FuzzParse` (pkg/config) and `FuzzPrevResult` (pkg/plugin); this file is their output.\n\n")
	b.WriteString("Every fault scenario asserts the exit code, the CNI error code and message, and that nothing of ours remains:\n" +
		"no rule or route with protocol 236 (task namespaces and the host), no `eni-*`/`device-number-*` altname, no\n" +
		"namespace lock held, no file in the invocation's private `TMPDIR`, no state record, no process of the\n" +
		"invocation's process group, no Go panic or stack trace, never CNI code 999. The ECS front's scenarios (E*, X8)\n" +
		"drive the front as the agent does, with the fake vpc-eni upstream, and assert nothing of ours in the task\n" +
		"namespace or the host, no namespace lock held, and the ENI back in the host under vpc-eni's DEL name.\n\n")
	b.WriteString("Run it: `sudo make stress` (about 3 minutes on 2 cores). Sizes: `FUZZTIME` (per fuzz target, default 45s),\n" +
		"`CHURN_CYCLES` (default 1000, the issue's figure), `CHURN_PARALLEL` (default 8). CI (`.ci/run`) runs\n" +
		"`make stress FUZZTIME=20s` with the full 1,000 churn cycles. `make test` runs every scenario below except\n" +
		"the churn (S1) and fuzzing, which need `make stress`.\n\n")
	b.WriteString("## Summary\n\n| ID | Scenario | Test | Result | Time |\n|---|---|---|---|---|\n")
	for _, r := range recs {
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s | %s |\n", r.ID, r.Title, r.Test, r.Status, r.Duration.Round(10*time.Millisecond))
	}
	b.WriteString(hostSection(filepath.Join(filepath.Dir(path), "HOST.md")))
	if fz := fuzzResults(); len(fz) > 0 {
		b.WriteString("\n## Fuzzing\n\n| Target | Package | Time | Execs | Rate | Corpus | Result |\n|---|---|---|---|---|---|---|\n")
		for _, f := range fz {
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %s/s | %s | %s |\n", f.Target, f.Package, f.Elapsed, f.Execs, f.Rate, f.Corpus, f.Result)
		}
		b.WriteString("\nSeed corpora are checked in under `pkg/config/testdata/fuzz/FuzzParse` and\n" +
			"`pkg/plugin/testdata/fuzz/FuzzPrevResult`; `go test ./pkg/...` replays them on every run.\n")
	}
	b.WriteString("\n## Results\n")
	for _, r := range recs {
		fmt.Fprintf(&b, "\n### %s — %s (%s)\n\n", r.ID, r.Title, r.Status)
		if len(r.Lines) == 0 {
			b.WriteString("- (no result lines: skipped or failed before recording)\n")
		}
		for _, l := range r.Lines {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// hostSection carries the real-host summary that make test-host last wrote
// in docs/HOST.md (between its host-summary markers) into this report, so
// regenerating it keeps the section; "" when there is none.
func hostSection(hostMD string) string {
	b, err := os.ReadFile(hostMD)
	if err != nil {
		return ""
	}
	s := string(b)
	i, j := strings.Index(s, "<!-- host-summary"), strings.Index(s, "<!-- /host-summary -->")
	if i < 0 || j < i {
		return ""
	}
	return "\n## Real host (make test-host)\n\n" + s[i:j] + "<!-- /host-summary -->\n\n" +
		"Details, timings and how each figure is taken: [HOST.md](HOST.md); evidence of each boot in `bin/host/`.\n"
}

// idOrder ranks ID prefixes: faults, concurrency, hostile input,
// security, IMDS faults, stress.
var idOrder = map[string]int{"F": 1, "C": 2, "H": 3, "X": 4, "I": 5, "S": 6}

// idLess orders F1 < F1b < F2 < ... < F10 < C1 < ... < S1.
func idLess(a, b string) bool {
	pa, na, sa := splitID(a)
	pb, nb, sb := splitID(b)
	if pa != pb {
		return idOrder[pa] < idOrder[pb]
	}
	if na != nb {
		return na < nb
	}
	return sa < sb
}

func splitID(id string) (string, int, string) {
	i := strings.IndexFunc(id, func(r rune) bool { return r >= '0' && r <= '9' })
	if i < 0 {
		return id, 0, ""
	}
	j := i
	for j < len(id) && id[j] >= '0' && id[j] <= '9' {
		j++
	}
	n, _ := strconv.Atoi(id[i:j])
	return id[:i], n, id[j:]
}
