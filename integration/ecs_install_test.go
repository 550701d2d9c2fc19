package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/doctor"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

// udevRoots holds each test's fixture root for the udev override.
var udevRoots sync.Map

// udevRoot is the test's host root for `ecs install --root`: install and
// uninstall place and remove the udev override there, never in the real
// /etc/udev/rules.d.
func udevRoot(t *testing.T) string {
	if r, ok := udevRoots.Load(t.Name()); ok {
		return r.(string)
	}
	r := t.TempDir()
	udevRoots.Store(t.Name(), r)
	t.Cleanup(func() { udevRoots.Delete(t.Name()) })
	return r
}

// ecsCmd runs `ec2-policy-routes ecs ARGS...` as an operator would (install
// and uninstall with --root udevRoot(t) unless the test gives --root).
func ecsCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if len(args) > 0 && (args[0] == "install" || args[0] == "uninstall") && !slices.Contains(args, "--root") {
		args = append([]string{args[0], "--root", udevRoot(t)}, args[1:]...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Binary(t), append([]string{"ecs"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatalf("ecs %v: %v", args, err)
	}
	return 0, out.String(), errb.String()
}

// upstreamDir is the agent image's plugin directory: the fake as every
// known plugin plus one the install has never heard of.
func upstreamDir(t *testing.T, dir string) {
	t.Helper()
	fake := fakeVPCENI(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(append([]string{}, ecsfront.KnownPlugins...), "ecs-imageonly") {
		copyFile(t, fake, filepath.Join(dir, name), 0o755)
	}
}

// TestECSInstallEndToEnd: `ecs install --write` lays out a directory the
// agent's libcni drives as-is (ADD puts the ENI in the task with our
// rules, DEL gives it back as ecs…), a re-run changes nothing, `ecs
// uninstall --write` removes it and the ecs.config line.
func TestECSInstallEndToEnd(t *testing.T) {
	h.RequireRoot(t)
	base := t.TempDir()
	up, dir := filepath.Join(base, "amazon-ecs-cni-plugins"), filepath.Join(base, "var/lib/ecs/ec2pr/cni-plugins")
	upstreamDir(t, up)
	logFile, cfg, ecsConfig := filepath.Join(base, "front.log"), filepath.Join(base, "front.json"), filepath.Join(base, "ecs.config")
	os.WriteFile(cfg, []byte(`{"logFile":"`+logFile+`","linkTimeout":"5s","imds":{"enabled":false}}`), 0o644)
	os.WriteFile(ecsConfig, []byte("ECS_CLUSTER=test\nECS_ENABLE_TASK_ENI=true\n"), 0o600)
	args := []string{"install", "--dir", dir, "--upstream", up, "--config", cfg, "--write", "--ecs-config", ecsConfig}
	code, out, errs := ecsCmd(t, args...)
	if code != 0 || !strings.Contains(out, "\nECS_CNI_PLUGINS_PATH="+dir+"\n") || !strings.Contains(out, "systemctl restart ecs") {
		t.Fatalf("install: exit %d\n%s%s", code, out, errs)
	}
	if target, _ := os.Readlink(filepath.Join(dir, "ecs-imageonly")); target != filepath.Join(up, "ecs-imageonly") {
		t.Errorf("plugin only in upstream not linked: %q", target)
	}
	if code, out, _ := ecsCmd(t, args...); code != 0 || !strings.Contains(out, "nothing changed") {
		t.Errorf("second install: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(ecsConfig); string(b) != "ECS_CLUSTER=test\nECS_ENABLE_TASK_ENI=true\nECS_CNI_PLUGINS_PATH="+dir+"\n" {
		t.Errorf("ecs.config: %q", b)
	}

	// The agent's startup probes, then one task ENI's ADD and DEL.
	for _, name := range []string{"vpc-eni", "vpc-branch-eni", "ecs-bridge", "ecs-ipam", "aws-appmesh"} {
		if b, err := exec.Command(filepath.Join(dir, name), "--capabilities").Output(); err != nil || !strings.Contains(string(b), "awsvpc-network-mode") {
			t.Errorf("%s --capabilities: %q %v", name, b, err)
		}
	}
	a := newAgent(t, &frontLayout{Dir: dir, Up: up, LogFile: logFile})
	task, eni := newTaskNS(t), newTaskENI(t, "10.0.5.20/24", "10.0.5.1")
	conf := eni.eniConf(false)
	if err := a.add(t, conf, task, "task-1"); err != nil {
		t.Fatalf("ADD through the installed front: %v", err)
	}
	rules, _ := h.Ours(t, task.Handle(t))
	if len(rules) != 1 || rules[0].Src.String() != "10.0.5.20/32" {
		t.Errorf("rules of ours after ADD: %v", h.RuleStrings(rules))
	}
	if err := a.del(t, conf, task, "task-1"); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if _, err := netlink.LinkByName(eni.hostName()); err != nil {
		t.Errorf("ENI not back in the host as %s: %v", eni.hostName(), err)
	}

	code, out, errs = ecsCmd(t, "uninstall", "--dir", dir, "--write", "--ecs-config", ecsConfig)
	if code != 0 || !strings.Contains(out, "removed "+dir) {
		t.Errorf("uninstall: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left: %v", dir, err)
	}
	if b, _ := os.ReadFile(ecsConfig); string(b) != "ECS_CLUSTER=test\nECS_ENABLE_TASK_ENI=true\n" {
		t.Errorf("ecs.config after uninstall: %q", b)
	}
}

// TestECSInstallRefusesCLI: the binary's exit status and message.
func TestECSInstallRefusesCLI(t *testing.T) {
	h.RequireRoot(t)
	base := t.TempDir()
	empty := filepath.Join(base, "empty")
	os.Mkdir(empty, 0o755)
	code, out, errs := ecsCmd(t, "install", "--dir", filepath.Join(base, "d"), "--upstream", empty, "--ecs-config", filepath.Join(base, "c"))
	if code != 1 || !strings.Contains(errs, "not a directory of ECS CNI plugins: "+empty+"/vpc-eni") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Lstat(filepath.Join(base, "d")); err == nil {
		t.Error("a refused install created its directory")
	}
	os.WriteFile(filepath.Join(base, "d"), nil, 0o644)
	if code, _, errs := ecsCmd(t, "uninstall", "--dir", filepath.Join(base, "d")); code != 1 || !strings.Contains(errs, "not an ec2-policy-routes ECS front") {
		t.Errorf("uninstall of a non-install: exit %d %s", code, errs)
	}
	if code, _, _ := ecsCmd(t, "install", "--bogus"); code != 2 {
		t.Errorf("usage error: exit %d", code)
	}
}

// TestECSInstallThroughAgentContainer: with UP only inside a running
// agent's filesystem (a chrooted /agent process), install lists and
// verifies it through /proc/<pid>/root and says so.
func TestECSInstallThroughAgentContainer(t *testing.T) {
	h.RequireRoot(t)
	base := t.TempDir()
	root := filepath.Join(base, "agent-root")
	up := "/amazon-ecs-cni-plugins-" + h.RandName("t") // absent on the host
	upstreamDir(t, filepath.Join(root, up))
	pid := startFakeAgent(t, root)
	dir := filepath.Join(base, "cni-plugins")
	code, out, errs := ecsCmd(t, "install", "--dir", dir, "--upstream", up, "--ecs-config", filepath.Join(base, "ecs.config"))
	want := fmt.Sprintf("seen through the running ECS agent's container (pid %d) at /proc/%d/root%s", pid, pid, up)
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("exit %d, want %q in\n%s%s", code, want, out, errs)
	}
	if target, _ := os.Readlink(filepath.Join(dir, "ecs-imageonly")); target != up+"/ecs-imageonly" {
		t.Errorf("plugin seen in the agent's image not linked: %q", target)
	}
}

// startFakeAgent runs integration/cmd/fake-agent as /agent chrooted in
// root with env and waits for its "ready" line.
func startFakeAgent(t *testing.T, root string, env ...string) int {
	t.Helper()
	bin := filepath.Join(root, "agent")
	build := exec.Command("go", "build", "-o", bin, "./integration/cmd/fake-agent")
	build.Dir, build.Env = h.RepoRoot(), append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build fake-agent: %v\n%s", err, b)
	}
	cmd := exec.Command("/agent")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Env = env // what ecs-init passes from ecs.config
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start fake agent: %v", err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() { line, _ := bufio.NewReader(stdout).ReadString('\n'); ready <- line }()
	select {
	case line := <-ready:
		if line != "ready\n" {
			t.Fatalf("fake agent: %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fake agent did not start within 10s")
	}
	return cmd.Process.Pid
}

// TestECSInstallReadOnlyDir: a directory install cannot write (read-only
// filesystem, which root cannot override) is refused with its path.
func TestECSInstallReadOnlyDir(t *testing.T) {
	h.RequireRoot(t)
	base := t.TempDir()
	up, ro := filepath.Join(base, "up"), filepath.Join(base, "ro")
	upstreamDir(t, up)
	os.Mkdir(ro, 0o755)
	if err := unix.Mount("tmpfs", ro, "tmpfs", unix.MS_RDONLY, "mode=0755"); err != nil {
		t.Skipf("cannot mount a read-only tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(ro, unix.MNT_DETACH) })
	dir := filepath.Join(ro, "cni-plugins")
	code, out, errs := ecsCmd(t, "install", "--dir", dir, "--upstream", up, "--ecs-config", filepath.Join(base, "ecs.config"))
	if code != 1 || !strings.Contains(errs, "cannot create "+dir) || !strings.Contains(errs, "read-only file system") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
	// ecs.config on a read-only filesystem: install done, --write refused.
	code, out, errs = ecsCmd(t, "install", "--dir", filepath.Join(base, "d"), "--upstream", up, "--write", "--ecs-config", filepath.Join(ro, "ecs.config"))
	if code != 1 || !strings.Contains(errs, "cannot write "+filepath.Join(ro, "ecs.config")) {
		t.Errorf("--write on a read-only ecs.config: exit %d\n%s%s", code, out, errs)
	}
}

// TestDoctorECSFrontThroughAgent: the doctor binary, on a host tree whose
// /proc/<pid> is the real chrooted /agent process, finds the front
// ecs.config names, runs the upstream vpc-eni --capabilities through the
// agent's /proc/<pid>/root, and flags a plugin only the image has once its
// link is gone.
func TestDoctorECSFrontThroughAgent(t *testing.T) {
	h.RequireRoot(t)
	base := t.TempDir()
	agentRoot, hostRoot := filepath.Join(base, "agent-root"), filepath.Join(base, "host")
	up := "/amazon-ecs-cni-plugins-" + h.RandName("d")
	upstreamDir(t, filepath.Join(agentRoot, up))
	pid := startFakeAgent(t, agentRoot, ecsfront.PluginsPathVar+"="+ecsfront.DefaultInstallDir)
	r := &docRoot{t: t, root: hostRoot}
	r.link(fmt.Sprintf("/proc/%d", pid), fmt.Sprintf("/proc/%d", pid))
	r.write("/etc/ecs/ecs.config", "ECS_CLUSTER=x\n"+ecsfront.PluginsPathVar+"="+ecsfront.DefaultInstallDir+"\n")
	r.write("/opt/cni/bin/.keep", "")
	copyFile(t, h.Binary(t), filepath.Join(hostRoot, "/opt/cni/bin/ec2-policy-routes"), 0o755)
	dir := filepath.Join(hostRoot, ecsfront.DefaultInstallDir)
	if code, out, errs := ecsCmd(t, "install", "--dir", dir, "--upstream", up, "--ecs-config", filepath.Join(base, "unused")); code != 0 {
		t.Fatalf("install: %d\n%s%s", code, out, errs)
	}
	// ecs-init bind-mounts the host's /var/lib/ecs into the agent's container.
	agentLib := filepath.Join(agentRoot, "var/lib/ecs")
	os.MkdirAll(agentLib, 0o755)
	if err := unix.Mount(filepath.Join(hostRoot, "var/lib/ecs"), agentLib, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(agentLib, unix.MNT_DETACH) })
	doctorJSON := func() *doctor.Report {
		t.Helper()
		out, err := exec.Command(h.Binary(t), "doctor", "--json", "--root", hostRoot, "--systemctl", "none", "--skip-netns").Output()
		var rep doctor.Report
		if jerr := json.Unmarshal(out, &rep); jerr != nil {
			t.Fatalf("doctor: %v %v\n%s", err, jerr, out)
		}
		return &rep
	}
	rep := doctorJSON()
	for _, id := range []string{doctor.CheckECSFront, doctor.CheckECSPlugins, doctor.CheckECSUpstream, doctor.CheckECSBinary} {
		if c := docCheck(t, rep, id); c.Status != doctor.StatusOK {
			t.Errorf("%s: %s %s %v", id, c.Status, c.Summary, c.Details)
		}
	}
	if rep.ECS == nil || rep.ECS.AgentPID != pid || rep.ECS.UpstreamSeenAt != filepath.Join(hostRoot, fmt.Sprintf("/proc/%d/root", pid), up) {
		t.Errorf("ecs front: %+v", rep.ECS)
	}
	os.Remove(filepath.Join(dir, "ecs-imageonly"))
	if c := docCheck(t, doctorJSON(), doctor.CheckECSPlugins); c.Status != doctor.StatusProblem || !strings.Contains(c.Summary, "ecs-imageonly") {
		t.Errorf("plugin missing after an agent upgrade: %s %s", c.Status, c.Summary)
	}
}

// TestECSInstallPopulatedDir (issue 22.1): `ecs install --dir /etc/ecs`
// next to the agent's ecs.config is refused, naming it; with --force it
// lays out beside it, and `ecs uninstall` removes only ours: ecs.config
// survives, and so does the directory.
func TestECSInstallPopulatedDir(t *testing.T) {
	h.RequireRoot(t)
	base := t.TempDir()
	up, etc := filepath.Join(base, "amazon-ecs-cni-plugins"), filepath.Join(base, "etc/ecs")
	upstreamDir(t, up)
	ecsConfig := filepath.Join(etc, "ecs.config")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(ecsConfig, []byte("ECS_CLUSTER=prod\n"), 0o644)
	args := []string{"install", "--dir", etc, "--upstream", up, "--ecs-config", ecsConfig}
	if code, out, errs := ecsCmd(t, args...); code != 1 || !strings.Contains(errs, "entries this install does not own: ecs.config") {
		t.Fatalf("install into a populated DIR: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := ecsCmd(t, append(args, "--force", "--write")...); code != 0 {
		t.Fatalf("install --force: exit %d\n%s%s", code, out, errs)
	}
	if b, _ := os.ReadFile(ecsConfig); string(b) != "ECS_CLUSTER=prod\nECS_CNI_PLUGINS_PATH="+etc+"\n" {
		t.Errorf("ecs.config after install: %q", b)
	}
	code, out, errs := ecsCmd(t, "uninstall", "--dir", etc, "--write", "--ecs-config", ecsConfig)
	if code != 0 || !strings.Contains(out, "left in "+etc+", not ours: ecs.config") {
		t.Errorf("uninstall: exit %d\n%s%s", code, out, errs)
	}
	if b, err := os.ReadFile(ecsConfig); err != nil || string(b) != "ECS_CLUSTER=prod\n" {
		t.Fatalf("ecs.config did not survive: %q %v", b, err)
	}
	if ents, _ := os.ReadDir(etc); len(ents) != 1 {
		t.Errorf("left in %s: %v, want ecs.config only", etc, ents)
	}
}

// TestECSFrontDefaultSettingsNoIMDS (issue 19.3): with the settings `ecs
// install` writes by default, a task ENI's ADD uses the agent's facts and
// succeeds with IMDS unreachable; a front whose settings enable IMDS
// explicitly still fails (and installs nothing) when IMDS is dead.
func TestECSFrontDefaultSettingsNoIMDS(t *testing.T) {
	h.RequireRoot(t)
	base := t.TempDir()
	up, dir := filepath.Join(base, "up"), filepath.Join(base, "cni-plugins")
	upstreamDir(t, up)
	logFile, cfg := filepath.Join(base, "front.log"), filepath.Join(base, "front.json")
	os.WriteFile(cfg, []byte(`{"logFile":"`+logFile+`","linkTimeout":"5s"}`), 0o644) // no "imds": the default
	if code, out, errs := ecsCmd(t, "install", "--dir", dir, "--upstream", up, "--config", cfg, "--ecs-config", filepath.Join(base, "ecs.config")); code != 0 ||
		!strings.Contains(out, "IMDS off") {
		t.Fatalf("install: exit %d\n%s%s", code, out, errs)
	}
	a := newAgent(t, &frontLayout{Dir: dir, Up: up, LogFile: logFile})
	task, eni := newTaskNS(t), newTaskENI(t, "10.0.7.20/24", "10.0.7.1")
	if err := a.add(t, eni.eniConf(false), task, "task-noimds"); err != nil {
		t.Fatalf("ADD with the default settings: %v", err)
	}
	rules, _ := h.Ours(t, task.Handle(t))
	if len(rules) != 1 || rules[0].Src.String() != "10.0.7.20/32" || rules[0].Table != 10000 {
		t.Errorf("rules of ours after ADD: %v", h.RuleStrings(rules))
	}
	if err := a.del(t, eni.eniConf(false), task, "task-noimds"); err != nil {
		t.Fatalf("DEL: %v", err)
	}

	// IMDS enabled explicitly, its endpoint dead: today's semantics.
	os.WriteFile(cfg, []byte(`{"logFile":"`+logFile+`","linkTimeout":"5s","imds":{"enabled":true,"endpoint":"http://127.0.0.1:1","timeout":"1s"}}`), 0o644)
	if code, out, errs := ecsCmd(t, "install", "--dir", dir, "--upstream", up, "--config", cfg, "--ecs-config", filepath.Join(base, "ecs.config")); code != 0 {
		t.Fatalf("install with IMDS: exit %d\n%s%s", code, out, errs)
	}
	task2, eni2 := newTaskNS(t), newTaskENI(t, "10.0.8.20/24", "10.0.8.1")
	if err := a.add(t, eni2.eniConf(false), task2, "task-imds-dead"); err == nil || !strings.Contains(err.Error(), "IMDS") {
		t.Fatalf("ADD with IMDS enabled and dead: %v", err)
	}
	if rules, _ := h.Ours(t, task2.Handle(t)); len(rules) != 0 {
		t.Errorf("rules left after a failed ADD: %v", h.RuleStrings(rules))
	}
}

// TestECSInstallUdevOverrideCLI (issue 19.2): install places the override
// in the host root where ec2-net-utils' rule is, says so, and uninstall
// removes it; --no-udev-override leaves it alone.
func TestECSInstallUdevOverrideCLI(t *testing.T) {
	h.RequireRoot(t)
	base := t.TempDir()
	up, dir, root := filepath.Join(base, "up"), filepath.Join(base, "cni-plugins"), filepath.Join(base, "host")
	upstreamDir(t, up)
	vendor := filepath.Join(root, "/usr/lib/udev/rules.d/99-vpc-policy-routes.rules")
	os.MkdirAll(filepath.Dir(vendor), 0o755)
	os.WriteFile(vendor, []byte("upstream\n"), 0o644)
	override := filepath.Join(root, "/etc/udev/rules.d/99-vpc-policy-routes.rules")
	common := []string{"--dir", dir, "--root", root, "--ecs-config", filepath.Join(base, "ecs.config")}
	if code, out, errs := ecsCmd(t, append([]string{"install", "--upstream", up, "--no-udev-override"}, common...)...); code != 0 || !strings.Contains(out, "left alone (--no-udev-override)") {
		t.Fatalf("install --no-udev-override: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Lstat(override); err == nil {
		t.Fatal("--no-udev-override placed the override")
	}
	if code, out, errs := ecsCmd(t, append([]string{"install", "--upstream", up}, common...)...); code != 0 || !strings.Contains(out, "wrote "+override) {
		t.Fatalf("install: exit %d\n%s%s", code, out, errs)
	}
	if b, _ := os.ReadFile(override); !strings.Contains(string(b), "ec2-policy-routes") {
		t.Errorf("override content: %q", b)
	}
	if code, out, errs := ecsCmd(t, append([]string{"uninstall"}, common...)...); code != 0 || !strings.Contains(out, "removed "+override) {
		t.Fatalf("uninstall: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Lstat(override); err == nil {
		t.Error("uninstall left the override it placed")
	}
}
