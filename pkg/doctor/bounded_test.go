package doctor

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readWithin runs Read on the fixture and fails if it takes longer than d.
func readWithin(t *testing.T, f *fixture, d time.Duration) *Findings {
	t.Helper()
	type res struct {
		f   *Findings
		err error
	}
	done := make(chan res, 1)
	go func() {
		got, err := Read(context.Background(), Options{Root: f.root, SkipUnits: true})
		done <- res{got, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.f
	case <-time.After(d):
		t.Fatalf("Read did not finish within %s", d)
	}
	return nil
}

func lockNamed(t *testing.T, fs *Findings, name string) LockFile {
	t.Helper()
	for _, lf := range fs.LockFiles {
		if lf.Interface == name {
			return lf
		}
	}
	t.Fatalf("no lock %s in %+v", name, fs.LockFiles)
	return LockFile{}
}

// A FIFO in the lock directory (nobody writing) never hangs the doctor:
// it is named as not a regular file, and stale (it holds no PID).
func TestFIFOLockFile(t *testing.T) {
	f := newFixture(t)
	f.mkdir(lockDir)
	if err := syscall.Mkfifo(filepath.Join(f.root, lockDir, "ecsfifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	lf := lockNamed(t, readWithin(t, f, 10*time.Second), "ecsfifo")
	if !lf.Stale || !strings.Contains(lf.Reason, "not a regular file") {
		t.Errorf("FIFO lock: %+v", lf)
	}
	code, out, _ := run(t, "--root", f.root, "--skip-netns")
	if code != 1 || !strings.Contains(out, "ecsfifo: not a regular file") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// A 3 GiB sparse lock file is judged from its size: no read of it, bounded
// time and memory.
func TestSparseLockFile(t *testing.T) {
	f := newFixture(t)
	f.mkdir(lockDir)
	sp, err := os.Create(filepath.Join(f.root, lockDir, "ecshuge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Truncate(3 << 30); err != nil {
		t.Fatal(err)
	}
	_ = sp.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	lf := lockNamed(t, readWithin(t, f, 10*time.Second), "ecshuge")
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("reading a 3 GiB sparse lock allocated %d MiB", grew>>20)
	}
	if !lf.Stale || !strings.Contains(lf.Reason, "too large") {
		t.Errorf("sparse lock: %+v", lf)
	}
}

// Lock names may hold blanks, quotes, backslashes or newlines: --stale-locks0
// (and --stale-locks -0) print them NUL-terminated; the line format leaves
// them out, names them on stderr and exits 1.
func TestStaleLocksNUL(t *testing.T) {
	f := newFixture(t)
	names := []string{"ecs plain", "ecs'quote", "ecs\"dq", `ecs\back`, "ecs\nnl", "ecsok"}
	for _, n := range names {
		f.write(lockDir+"/"+n, "999999\n")
	}
	var want []string
	for _, n := range names {
		want = append(want, filepath.Join(f.root, lockDir, n))
	}
	slices.Sort(want)
	for _, args := range [][]string{{"--stale-locks0"}, {"--stale-locks", "-0"}} {
		code, out, stderr := run(t, append(args, "--root", f.root)...)
		if code != 0 || !strings.HasSuffix(out, "\x00") {
			t.Fatalf("%v: exit %d %q %s", args, code, out, stderr)
		}
		got := strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%v: %q, want %q", args, got, want)
		}
	}
	code, out, stderr := run(t, "--stale-locks", "--root", f.root)
	if code != 1 || out != filepath.Join(f.root, lockDir, "ecsok")+"\n" || strings.Count(stderr, "left out") != 5 {
		t.Errorf("line format: exit %d\n%q\n%s", code, out, stderr)
	}
	if code, _, _ := run(t, "-0", "--root", f.root); code != 2 {
		t.Errorf("-0 without --stale-locks: exit %d, want 2", code)
	}
}

// A cancelled context ends Run with its error (SIGTERM cancels it).
func TestRunHonoursContext(t *testing.T) {
	f := newFixture(t)
	f.affected()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{Root: f.root, SkipNetns: true}); err == nil {
		t.Error("Run with a cancelled context succeeded")
	}
	code, _, stderr := mainRun(ctx, "--root", f.root)
	if code != 2 || !strings.Contains(stderr, "interrupted") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}
