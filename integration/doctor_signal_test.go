package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsinstall"
)

// ecsFrontRoot is a fixture host with an installed ECS front whose
// upstream vpc-eni, once the install is done, runs upstream: the doctor
// runs it as its --capabilities probe.
func ecsFrontRoot(t *testing.T, upstream string) *docRoot {
	t.Helper()
	r := newDocRoot(t)
	r.write("/opt/cni/bin/ec2-policy-routes", "package binary\n")
	r.write("/proc/4242/cmdline", "/agent\x00")
	r.write("/proc/4242/environ", ecsfront.PluginsPathVar+"="+ecsfront.DefaultInstallDir+"\x00")
	for _, name := range ecsfront.KnownPlugins {
		r.write("/proc/4242/root"+ecsfront.DefaultUpstreamDir+"/"+name, "#!/bin/sh\necho '{\"capabilities\":[\"awsvpc-network-mode\"]}'\n")
		if err := os.Chmod(filepath.Join(r.root, "/proc/4242/root"+ecsfront.DefaultUpstreamDir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := ecsinstall.Install(context.Background(), ecsinstall.Options{Dir: filepath.Join(r.root, ecsfront.DefaultInstallDir),
		Proc: filepath.Join(r.root, "proc"), Self: filepath.Join(r.root, "/opt/cni/bin/ec2-policy-routes"),
		ECSConfig: filepath.Join(r.root, "/etc/ecs/unused"), Out: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	r.write(ecsfront.ECSConfig, ecsfront.PluginsPathVar+"="+ecsfront.DefaultInstallDir+"\n")
	r.link(filepath.Join(r.root, "/var/lib/ecs"), "/proc/4242/root/var/lib/ecs")
	up := filepath.Join(r.root, "/proc/4242/root"+ecsfront.DefaultUpstreamDir, "vpc-eni")
	if err := os.WriteFile(up, []byte(upstream), 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

// SIGTERM ends a doctor promptly, whatever it waits on: here an upstream
// --capabilities probe that sends the signal to the doctor and then hangs
// (the probe's own bound is 5 s per plugin).
func TestDoctorSIGTERM(t *testing.T) {
	h.RequireRoot(t)
	bin := h.Binary(t)
	r := ecsFrontRoot(t, "#!/bin/sh\nkill -TERM $PPID\nexec sleep 60\n")
	cmd := exec.Command(bin, "doctor", "--root", r.root, "--systemctl", "none", "--skip-netns")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "interrupted") {
			t.Errorf("after SIGTERM: %v (want exit 2, interrupted)\n%s", err, stderr.String())
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("the doctor took %s to end after SIGTERM", d)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the doctor ignored SIGTERM\n%s", stderr.String())
	}
}

// The built binary on a lock directory holding a FIFO nobody writes, a
// 3 GiB sparse file and names with blanks: it finishes, names the FIFO,
// and --stale-locks0 lists them NUL-terminated.
func TestDoctorHostileLockFiles(t *testing.T) {
	h.RequireRoot(t)
	bin := h.Binary(t)
	r := newDocRoot(t)
	dir := filepath.Join(r.root, "/run/amazon-ec2-net-utils/setup-policy-routes")
	r.write("/run/amazon-ec2-net-utils/setup-policy-routes/ecs with blank", "999999\n")
	if err := syscall.Mkfifo(filepath.Join(dir, "ecsfifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(r.root, "/run/amazon-ec2-net-utils/setup-policy-routes/ecs with blank"), 3<<30); err != nil {
		t.Fatal(err)
	}
	r.write("/run/amazon-ec2-net-utils/setup-policy-routes/ecs'q", "999999\n")
	run := func(args ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"doctor", "--root", r.root, "--systemctl", "none", "--skip-netns"}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		out, err := cmd.Output()
		if ctx.Err() != nil {
			t.Fatalf("doctor %v hung", args)
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := run(); code != 1 || !strings.Contains(out, "ecsfifo: not a regular file") || !strings.Contains(out, "ecs with blank: holds no PID: file too large") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	code, out := run("--stale-locks0")
	want := filepath.Join(dir, "ecs with blank") + "\x00" + filepath.Join(dir, "ecs'q") + "\x00" + filepath.Join(dir, "ecsfifo") + "\x00"
	if code != 0 || out != want {
		t.Errorf("--stale-locks0: exit %d %q, want %q", code, out, want)
	}
}
