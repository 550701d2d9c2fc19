// Command bench measures ec2-policy-routes against the upstream CNI `sbr`
// plugin in one run on one machine, interleaving the two call by call on
// identical fresh inputs, and writes a markdown report (docs/BENCHMARKS.md).
//
// Run it through `make bench` (root: it creates network namespaces). Every
// namespace and link it creates is removed when a trial ends, when it fails,
// and on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
)

var (
	flagBin        = flag.String("bin", "bin/ec2-policy-routes", "ec2-policy-routes binary (built as by `make build`)")
	flagSbr        = flag.String("sbr", ".tools/bin/sbr", "upstream sbr binary (`make tools`)")
	flagAEMM       = flag.String("aemm", ".tools/bin/ec2-metadata-mock", "AWS ec2-metadata-mock binary (`make tools`); the IMDS phase also runs against it when present")
	flagEmpty      = flag.String("empty", "bin/bench-empty", "empty Go binary: the exec floor")
	flagFloor      = flag.String("imdsfloor", "bin/bench-imdsfloor", "minimal IMDSv2 client (integration/bench/imdsfloor): the IMDS phase's floor; skipped when missing")
	flagSpawn      = flag.String("spawn", "bin/bench-spawn", "spawn helper (integration/bench/spawn) that times each call and reports its rusage")
	flagStrace     = flag.String("strace", "strace", "strace binary for the idle-cost cross-check (skipped when missing)")
	flagN          = flag.Int("n", 200, "ADD and DEL calls per plugin (and floor calls per kind)")
	flagArrivalN   = flag.Int("arrival-n", 100, "link-arrival trials")
	flagDelay      = flag.Duration("arrival-delay", 50*time.Millisecond, "link moved into the netns this long after ADD starts")
	flagTimeoutN   = flag.Int("timeout-n", 100, "absent-link ADD calls (linkTimeout 1s)")
	flagTimeoutP   = flag.Int("timeout-par", 4, "absent-link ADDs running at once")
	flagIdle       = flag.Duration("idle", 10*time.Second, "idle-cost observation window after ADD returns")
	flagIMDSN      = flag.Int("imds-n", 100, "ADD calls with IMDS enabled against the local fake")
	flagFake       = flag.String("fake", "bin/bench-fake-vpc-eni", "the vpc-eni stand-in (integration/cmd/fake-vpc-eni) the front phases run upstream")
	flagFrontBase  = flag.String("front-base", "", "profiling aid: another build of the plugin whose front the front phase also runs, interleaved (A/B in one run)")
	flagFrontFloor = flag.String("frontfloor", "bin/bench-frontfloor", "minimal exec-and-wait front (integration/bench/frontfloor): the front phase's floor")
	flagFrontN     = flag.Int("front-n", 200, "front phase rounds (stand-in, front, plain plugin: ADD and DEL each); half as many through libcni")
	flagQuick      = flag.Bool("quick", false, "quick run: small sample counts, short idle window; prints only unless -out is given")
	flagOut        = flag.String("out", "docs/BENCHMARKS.md", "write the markdown report here (empty: print only)")
	flagSeed       = flag.Uint64("seed", 0, "random seed for call order (0: from the clock)")
	flagOnly       = flag.String("only", "", "run only these phases (comma-separated: floor,adddel,arrival,timeout,idle,imds,front,frontcni); prints only unless -out is given")
	flagCompare    = flag.String("compare", "", "profiling aid: comma-separated binaries compared call by call (interleaved, -n each); no report")
	flagCompVerb   = flag.String("compare-verb", "VERSION", "with -compare: VERSION, ADD (ADD then DEL on fresh namespaces), or ADD-IMDS (ADD with imds.enabled against the in-process fake)")
	verbose        = flag.Bool("v", false, "verbose progress")
)

const (
	ours = 0
	sbr  = 1
)

var names = [2]string{"ec2-policy-routes", "sbr"}

func main() {
	flag.Parse()
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if *flagQuick {
		quick := map[string]func(){
			"n":         func() { *flagN = 30 },
			"arrival-n": func() { *flagArrivalN = 20 },
			"timeout-n": func() { *flagTimeoutN = 12 },
			"idle":      func() { *flagIdle = 3 * time.Second },
			"imds-n":    func() { *flagIMDSN = 20 },
			"front-n":   func() { *flagFrontN = 30 },
			"out":       func() { *flagOut = "" },
		}
		for name, set := range quick {
			if !explicit[name] {
				set()
			}
		}
	}
	if *flagOnly != "" && !explicit["out"] {
		*flagOut = "" // a partial report must not replace docs/BENCHMARKS.md
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (network namespaces); run `make bench`")
		os.Exit(2)
	}
	// Latencies are measured in this process around fork..wait4; keep the
	// collector out of the way (the heap stays small).
	debug.SetGCPercent(400)

	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "\nbench: interrupted; cleaning up (again to force)")
		cancel()
		<-sigs
		closeAll()
		os.Exit(130)
	}()

	// Become a child subreaper: anything a plugin leaves running (a
	// daemonised grandchild) is re-parented to this process, where the
	// idle-cost check finds it.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "bench: PR_SET_CHILD_SUBREAPER: %v\n", err)
		os.Exit(1)
	}

	b, err := newBench()
	switch {
	case err != nil:
	case *flagCompare != "":
		err = b.compare(ctx, splitList(*flagCompare), *flagCompVerb)
	default:
		err = b.runAll(ctx)
	}
	closeAll()
	if ctx.Err() != nil {
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// bench holds the binaries, the shared scratch scope and the results.
type bench struct {
	bin    [2]string
	empty  string
	rng    *rand.Rand
	root   *scope // run-wide scratch (log file)
	log    string // ours' logFile
	logOff int64  // how much of it loggedDuration has read
	start  time.Time
	res    results
}

// inRepo resolves a path given relative to the repository root.
func inRepo(p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(h.RepoRoot(), p)
	}
	return p
}

// present is inRepo(p) when that file exists.
func present(p string) (string, error) {
	p = inRepo(p)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

func newBench() (*bench, error) {
	b := &bench{start: time.Now()}
	abs := func(p string) (string, error) {
		p, err := present(p)
		if err != nil {
			return "", fmt.Errorf("%w (run `make bench`, which builds and installs everything)", err)
		}
		return p, nil
	}
	var err error
	if b.bin[ours], err = abs(*flagBin); err != nil {
		return nil, err
	}
	if b.bin[sbr], err = abs(*flagSbr); err != nil {
		return nil, err
	}
	if b.empty, err = abs(*flagEmpty); err != nil {
		return nil, err
	}
	if spawnBin, err = abs(*flagSpawn); err != nil {
		return nil, err
	}
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	b.res.seed = seed
	b.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b.root = newScope("bench")
	b.log = filepath.Join(b.root.TempDir(), "ec2-policy-routes.log")
	// Timed binaries run from copies made alike (see stage).
	for _, p := range []*string{&b.bin[ours], &b.bin[sbr], &b.empty} {
		if *p, err = b.stage(*p); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// oursConf is the extra config ours gets: IMDS off, log to scratch.
func (b *bench) oursConf(linkTimeout string) map[string]any {
	c := map[string]any{"imds": map[string]any{"enabled": false}, "logFile": b.log}
	if linkTimeout != "" {
		c["linkTimeout"] = linkTimeout
	}
	return c
}

func (b *bench) runAll(ctx context.Context) error {
	b.res.machine = machineInfo()
	phases := []struct {
		key, name string
		run       func(context.Context) error
	}{
		{"floor", "floor (empty binary, VERSION)", b.floor},
		{"adddel", "ADD/DEL latency, interleaved with sbr", b.addDel},
		{"arrival", "link arrival", b.arrival},
		{"timeout", "absent link, linkTimeout 1s", b.timeout},
		{"idle", "idle cost", b.idle},
		{"imds", "IMDS enabled, local fake and ec2-metadata-mock", b.imds},
		{"front", "ECS front: stand-in alone, front, plain plugin, interleaved", b.frontPhase},
		{"frontcni", "ECS front through libcni: straight vs through the front", b.frontCNI},
	}
	only := map[string]bool{}
	for _, k := range strings.Split(*flagOnly, ",") {
		if k = strings.TrimSpace(k); k != "" {
			only[k] = true
		}
	}
	for _, p := range phases {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(only) > 0 && !only[p.key] {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s ...\n", p.name)
		t := time.Now()
		if err := p.run(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", p.name, err)
		}
		fmt.Fprintf(os.Stderr, "bench:   done in %s\n", time.Since(t).Round(100*time.Millisecond))
	}
	b.res.elapsed = time.Since(b.start)
	b.res.machine.loadEnd = loadavg()
	md := b.render()
	fmt.Print(md)
	if *flagOut != "" {
		out := inRepo(*flagOut)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", out)
	}
	return nil
}

// trial runs one unit of work in its own cleanup scope.
func trial(name string, f func(sc *scope)) error {
	sc := newScope(name)
	defer sc.close()
	return try(func() { f(sc) })
}

// tolerate collects setup errors, failing the phase when they are not
// rare: a benchmark on a broken fixture measures nothing.
type tolerate struct {
	n, bad int
	last   error
}

func (t *tolerate) note(err error) error {
	t.n++
	if err == nil {
		return nil
	}
	var fl *failure
	if !errors.As(err, &fl) {
		return err
	}
	t.bad++
	t.last = err
	fmt.Fprintf(os.Stderr, "bench: trial setup failed: %v\n", err)
	if t.bad > 5 && t.bad*10 > t.n {
		return fmt.Errorf("too many failed trials (%d of %d), last: %w", t.bad, t.n, err)
	}
	return nil
}

func progress(what string, i, n int) {
	if *verbose || (n >= 10 && (i+1)%(n/5) == 0) {
		fmt.Fprintf(os.Stderr, "bench:   %s %d/%d\n", what, i+1, n)
	}
}
