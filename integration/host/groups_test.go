package host

// Boots are few and shared (each costs ~20 s of TCG boot before any work):
// the "stock" group is boot 1 (H1, H2, H3) then a reboot of the same disk
// (boot 2: H3 after reboot, H5); the "ecs" group is boot 3 on a fresh copy
// of the image (H6 and H4, H5 again). Each Test* asks for its group; the
// first one to ask boots it, the others read the same results.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
)

type groupRun struct {
	once  sync.Once
	boots []*bootResult
	err   error
}

var (
	setupOnce sync.Once
	setupErr  error
	theImage  *image
	work      string // artefacts: EC2PR_HOST_ARTIFACTS or a temp dir
	fakePath  string
	phases    []phase // timings for the report, in order

	stockGroup, ecsGroup groupRun
)

type phase struct {
	Name string
	Took time.Duration
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "host: "+format+"\n", args...)
}

// setup: the work directory, the image (cached) and the static vpc-eni
// stand-in, once per test binary.
func setup(t *testing.T) {
	t.Helper()
	requireHost(t)
	setupOnce.Do(func() {
		work = os.Getenv("EC2PR_HOST_ARTIFACTS")
		if reuse() {
			if work == "" {
				setupErr = fmt.Errorf("EC2PR_HOST_REUSE needs EC2PR_HOST_ARTIFACTS (the last run's bin/host)")
			}
			return
		}
		if work == "" {
			work, setupErr = os.MkdirTemp("", "ec2pr-host-")
		} else {
			_ = os.RemoveAll(work)
			setupErr = os.MkdirAll(work, 0o755)
		}
		if setupErr != nil {
			return
		}
		for _, env := range []string{"EC2PR_HOST_DEB", "EC2PR_HOST_DEB_OLD"} {
			if p := os.Getenv(env); p == "" {
				setupErr = fmt.Errorf("%s is not set: run make test-host (it builds both .deb files)", env)
				return
			} else if _, err := os.Stat(p); err != nil {
				setupErr = fmt.Errorf("%s: %w", env, err)
				return
			}
		}
		start := time.Now()
		fakePath = filepath.Join(work, "fake-vpc-eni")
		cmd := exec.Command("go", "build", "-trimpath", "-o", fakePath, "./integration/cmd/fake-vpc-eni")
		cmd.Dir = h.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // the guest has its own libc: static
		if out, err := cmd.CombinedOutput(); err != nil {
			setupErr = fmt.Errorf("go build fake-vpc-eni: %w\n%s", err, out)
			return
		}
		phases = append(phases, phase{"build the vpc-eni stand-in (static)", time.Since(start)})
		start = time.Now()
		logf, err := os.Create(filepath.Join(work, "image-build.log"))
		if err != nil {
			setupErr = err
			return
		}
		defer logf.Close()
		theImage, setupErr = ensureImage(context.Background(), logf)
		if setupErr == nil {
			what := "guest image from the cache " + theImage.Dir
			if theImage.Built > 0 {
				what = "build the guest image (mmdebstrap + mkfs.ext4) " + theImage.Dir
			}
			phases = append(phases, phase{what, time.Since(start)})
			progress("%s (%s)", what, time.Since(start).Round(time.Second))
		}
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// runGroup boots the group's scenarios in order on one copy of the image's
// disk (so boot 2 is a reboot of boot 1's host).
func runGroup(t *testing.T, g *groupRun, name string, boots ...*boot) []*bootResult {
	t.Helper()
	setup(t)
	g.once.Do(func() {
		if reuse() {
			g.boots, g.err = reread(boots)
			return
		}
		ctx := context.Background()
		disk := filepath.Join(work, name+"-disk.raw")
		if g.err = copyDisk(ctx, theImage.Disk, disk); g.err != nil {
			return
		}
		defer os.Remove(disk) // 2 GiB sparse: the results stay, the disk goes
		for _, b := range boots {
			b.Work, b.Disk = work, disk
			progress("%s: booting (%s)", b.Name, b.Scenario)
			r, err := b.run(ctx, theImage)
			if r != nil {
				g.boots = append(g.boots, r)
				phases = append(phases, phase{fmt.Sprintf("%s: boot, %s, power-off", b.Name, b.Scenario), r.Wall})
				progress("%s: powered off after %s; results in %s", b.Name, r.Wall.Round(time.Second), r.Dir)
			}
			if err != nil {
				g.err = err
				return
			}
		}
	})
	if g.err != nil {
		t.Fatal(g.err)
	}
	return g.boots
}

// reuse: EC2PR_HOST_REUSE=1 judges the evidence of the last run in
// EC2PR_HOST_ARTIFACTS again instead of booting (for working on the tests).
func reuse() bool { return os.Getenv("EC2PR_HOST_REUSE") == "1" }

func reread(boots []*boot) ([]*bootResult, error) {
	var out []*bootResult
	for _, b := range boots {
		r := &bootResult{Name: b.Name, Dir: filepath.Join(work, b.Name, "out"), Console: filepath.Join(work, b.Name, "console.log")}
		env, err := readEnv(filepath.Join(r.Dir, "results.env"))
		if err != nil {
			return out, fmt.Errorf("EC2PR_HOST_REUSE: %w", err)
		}
		r.Env = env
		out = append(out, r)
	}
	return out, nil
}

func cycles(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

// stock: boot 1 (H1 stock host, H2 doctor, H3 repair) and boot 2 (reboot).
func stock(t *testing.T) (boot1, boot2 *bootResult) {
	setup(t)
	files := map[string]string{"fake-vpc-eni": fakePath, "new.deb": os.Getenv("EC2PR_HOST_DEB")}
	r := runGroup(t, &stockGroup, "stock",
		&boot{Name: "boot1", Scenario: "boot1.sh", Files: files, Text: map[string]string{"cycles": cycles("EC2PR_HOST_CYCLES", "4")}},
		&boot{Name: "boot2", Scenario: "boot2.sh", Files: files, Text: map[string]string{"cycles": "2"}})
	return r[0], r[1]
}

// ecs: boot 3 on a fresh image (H6 package life, H4 ecs install).
func ecs(t *testing.T) *bootResult {
	setup(t)
	files := map[string]string{"fake-vpc-eni": fakePath, "new.deb": os.Getenv("EC2PR_HOST_DEB"), "old.deb": os.Getenv("EC2PR_HOST_DEB_OLD")}
	return runGroup(t, &ecsGroup, "ecs",
		&boot{Name: "boot3", Scenario: "boot3.sh", Files: files, Text: map[string]string{"cycles": "3"}})[0]
}
