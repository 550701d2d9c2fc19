package host

// The VM side of the host tests: the cached Debian 12 image
// (image/build.sh), one boot of a disk with a scenario on a second disk,
// and the results read back from that disk after the guest powered off.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
)

const (
	gateEnv       = "EC2PR_HOST"
	buildTimeout  = 5 * time.Minute
	bootTimeout   = 5 * time.Minute // per boot, host side: qemu is killed after it
	guestDeadline = 240             // seconds the guest gives its scenario
)

// requireHost skips unless make test-host asked for these tests; once
// asked, a missing tool is a failure, not a skip.
func requireHost(t *testing.T) {
	t.Helper()
	if os.Getenv(gateEnv) != "1" {
		t.Skipf("real-host tests boot a QEMU VM: run make test-host (sets %s=1)", gateEnv)
	}
	if os.Geteuid() != 0 {
		t.Fatal("make test-host needs root (mmdebstrap, mkfs.ext4 -d with owners)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "mmdebstrap", "mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install qemu-system-x86 mmdebstrap e2fsprogs", tool)
		}
	}
}

// image is the cached guest: root disk, kernel and initrd.
type image struct {
	Dir, Disk, Kernel, Initrd string
	Built                     time.Duration // 0 when it came from the cache
}

func hostDir() string { return filepath.Join(h.RepoRoot(), "integration", "host") }

// imageKey hashes every file of image/ (names and contents): the package
// list, the build script and the files it puts into the image.
func imageKey() (string, error) {
	dir := filepath.Join(hostDir(), "image")
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	sum := sha256.New()
	for _, p := range names {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(sum, "%s\x00%d\x00", rel, len(b))
		sum.Write(b)
	}
	return hex.EncodeToString(sum.Sum(nil))[:16], nil
}

// ensureImage returns the cached image, building it under a file lock when
// missing (another run may be building the same key).
func ensureImage(ctx context.Context, logw io.Writer) (*image, error) {
	key, err := imageKey()
	if err != nil {
		return nil, err
	}
	cache := os.Getenv("EC2PR_HOST_CACHE")
	if cache == "" {
		cache = "/var/cache/ec2-policy-routes/vm"
	}
	img := &image{Dir: filepath.Join(cache, key)}
	img.Disk, img.Kernel, img.Initrd = filepath.Join(img.Dir, "disk.raw"), filepath.Join(img.Dir, "vmlinuz"), filepath.Join(img.Dir, "initrd.img")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer prune(cache, img.Dir)
	if img.complete() {
		return img, nil
	}
	start := time.Now()
	bctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(bctx, filepath.Join(hostDir(), "image", "build.sh"), img.Dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, logw), io.MultiWriter(&out, logw)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("image/build.sh %s: %w\n%s", img.Dir, err, tail(out.String(), 30))
	}
	if !img.complete() {
		return nil, fmt.Errorf("image/build.sh left no disk.raw, vmlinuz and initrd.img in %s", img.Dir)
	}
	img.Built = time.Since(start)
	return img, nil
}

// prune marks keep as used now and removes the cached images (other keys)
// unused for a week: each is ~500 MB.
func prune(cache, keep string) {
	now := time.Now()
	_ = os.Chtimes(keep, now, now)
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		p := filepath.Join(cache, e.Name())
		if info, err := e.Info(); err == nil && e.IsDir() && p != keep && now.Sub(info.ModTime()) > 7*24*time.Hour {
			_ = os.RemoveAll(p)
		}
	}
}

func (i *image) complete() bool {
	for _, p := range []string{i.Disk, i.Kernel, i.Initrd} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			return false
		}
	}
	return true
}

// boot is one power-on of Disk with Scenario (a guest/ script) and Files
// (name in the scenario's directory → host path) on the second disk.
type boot struct {
	Name     string
	Work     string // results go to Work/<Name>/
	Disk     string // the root disk (a copy of the image's)
	Scenario string
	Files    map[string]string
	Text     map[string]string // name → content, e.g. "cycles"
}

// bootResult is what came back from one boot.
type bootResult struct {
	Name    string
	Dir     string            // out/: results.env and evidence files
	Env     map[string]string // results.env
	Console string            // serial console log
	Wall    time.Duration     // qemu start to exit
}

// copyDisk makes a copy-on-write (or sparse) copy of the image's root disk,
// so the cache stays pristine.
func copyDisk(ctx context.Context, src, dst string) error {
	out, err := exec.CommandContext(ctx, "cp", "--reflink=auto", "--sparse=always", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cp %s: %w: %s", src, err, out)
	}
	return nil
}

// run boots the VM once: it stages the second disk, runs qemu (TCG) bounded
// by bootTimeout, reads out/ back with debugfs. qemu is killed on every
// path out (context end, error, test end).
func (b *boot) run(ctx context.Context, img *image) (*bootResult, error) {
	dir := filepath.Join(b.Work, b.Name)
	in := filepath.Join(dir, "data", "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		return nil, err
	}
	files := map[string]string{"lib.sh": filepath.Join(hostDir(), "guest", "lib.sh"),
		"scenario.sh": filepath.Join(hostDir(), "guest", b.Scenario)}
	for k, v := range b.Files {
		files[k] = v
	}
	for name, src := range files {
		if err := copyFile(src, filepath.Join(in, name)); err != nil {
			return nil, err
		}
	}
	text := map[string]string{"timeout": fmt.Sprint(guestDeadline)}
	for k, v := range b.Text {
		text[k] = v
	}
	for name, s := range text {
		if err := os.WriteFile(filepath.Join(in, name), []byte(s+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data.raw")
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "ec2pr-data", "-d", filepath.Join(dir, "data"), data, "512M").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4 data disk: %w: %s", err, out)
	}
	res := &bootResult{Name: b.Name, Dir: filepath.Join(dir, "out"), Console: filepath.Join(dir, "console.log")}
	if err := qemu(ctx, img, b.Disk, data, res); err != nil {
		return res, err
	}
	// debugfs reads the ext4 image without a loop device or a mount.
	if out, err := exec.CommandContext(ctx, "debugfs", "-R", "rdump /out "+dir, data).CombinedOutput(); err != nil {
		return res, fmt.Errorf("debugfs rdump: %w: %s", err, out)
	}
	_ = os.Remove(data)
	_ = os.RemoveAll(filepath.Join(dir, "data"))
	env, err := readEnv(filepath.Join(res.Dir, "results.env"))
	if err != nil {
		return res, fmt.Errorf("%s: no results: %w\n%s", b.Name, err, res.diagnostics())
	}
	res.Env = env
	rc, _ := os.ReadFile(filepath.Join(res.Dir, "scenario.rc"))
	if strings.TrimSpace(string(rc)) != "0" {
		return res, fmt.Errorf("%s: scenario exit %q (fatal: %s)\n%s", b.Name, strings.TrimSpace(string(rc)), env["fatal"], res.diagnostics())
	}
	return res, nil
}

// qemu runs one boot to power-off. -no-reboot turns the guest's poweroff
// (or a panic's reboot) into qemu's exit.
func qemu(ctx context.Context, img *image, disk, data string, res *bootResult) error {
	qctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	console, err := os.Create(res.Console)
	if err != nil {
		return err
	}
	defer console.Close()
	// TCG: /dev/kvm exists on these machines but the guest dies with a KVM
	// emulation failure (field notes).
	cmd := exec.CommandContext(qctx, "qemu-system-x86_64",
		"-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "1536",
		"-nographic", "-no-reboot", "-kernel", img.Kernel, "-initrd", img.Initrd,
		"-append", "root=/dev/vda rw console=ttyS0 quiet",
		"-drive", "file="+disk+",if=virtio,format=raw",
		"-drive", "file="+data+",if=virtio,format=raw",
		"-nic", "none")
	cmd.Stdout, cmd.Stderr = console, console
	cmd.WaitDelay = 5 * time.Second
	// qemu dies with the test binary too (go test's timeout panics without
	// running cleanups); the death signal follows the forking thread, so
	// that thread stays locked until qemu is reaped.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	err = cmd.Run()
	res.Wall = time.Since(start)
	if qctx.Err() != nil {
		return fmt.Errorf("boot did not power off within %s (qemu killed)\n%s", bootTimeout, res.diagnostics())
	}
	if err != nil {
		return fmt.Errorf("qemu: %w\n%s", err, res.diagnostics())
	}
	return nil
}

// diagnostics: the ends of the console and the scenario log.
func (r *bootResult) diagnostics() string {
	c, _ := os.ReadFile(r.Console)
	s, _ := os.ReadFile(filepath.Join(r.Dir, "scenario.log"))
	return fmt.Sprintf("--- console (%s)\n%s\n--- scenario.log\n%s", r.Console, tail(string(c), 25), tail(string(s), 40))
}

func (r *bootResult) file(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.Dir, name))
	if err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	return string(b)
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
