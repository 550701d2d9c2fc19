package integration

// Support for the ECS front tests: a plugin directory laid out as
// `ec2-policy-routes ecs install` does, an upstream directory holding the
// fake vpc-eni, task namespaces named by /proc/<pid>/ns/net as the agent
// passes them, and libcni driven the way the agent drives it.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

var (
	fakeOnce sync.Once
	fakePath string
	fakeErr  error
)

// fakeVPCENI builds integration/cmd/fake-vpc-eni once per test run.
func fakeVPCENI(t *testing.T) string {
	t.Helper()
	fakeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ec2pr-fake-")
		if err != nil {
			fakeErr = err
			return
		}
		fakePath = filepath.Join(dir, "fake-vpc-eni")
		cmd := exec.Command("go", "build", "-o", fakePath, "./integration/cmd/fake-vpc-eni")
		cmd.Dir = h.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fakeErr = fmt.Errorf("go build fake-vpc-eni: %w\n%s", err, out)
		}
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	return fakePath
}

// removeBuiltFake removes the directory fakeVPCENI built into (TestMain,
// after the run), so test runs leave no /tmp/ec2pr-fake-* behind.
func removeBuiltFake() {
	if fakePath != "" {
		_ = os.RemoveAll(filepath.Dir(fakePath))
	}
}

// frontLayout is an installed front: Dir is what ECS_CNI_PLUGINS_PATH
// names (front copies of the plugin as vpc-eni and vpc-branch-eni, the
// other names symlinked to Up, the settings file), Up holds the fake.
type frontLayout struct {
	Dir, Up  string
	LogFile  string
	Settings map[string]any
}

// newFrontLayout lays out Dir and Up in a root-owned temp dir; settings
// are merged over {upstream, logFile, linkTimeout 5s, imds off}.
func newFrontLayout(t *testing.T, settings map[string]any) *frontLayout {
	t.Helper()
	h.RequireRoot(t)
	base := t.TempDir()
	l := &frontLayout{Dir: filepath.Join(base, "cni-plugins"), Up: filepath.Join(base, "upstream"), LogFile: filepath.Join(base, "front.log")}
	for _, d := range []string{l.Dir, l.Up} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fake, bin := fakeVPCENI(t), h.Binary(t)
	for _, name := range ecsfront.KnownPlugins {
		copyFile(t, fake, filepath.Join(l.Up, name), 0o755)
		if ecsfront.IsFronted(name) {
			copyFile(t, bin, filepath.Join(l.Dir, name), 0o755)
		} else if err := os.Symlink(filepath.Join(l.Up, name), filepath.Join(l.Dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	l.Settings = map[string]any{"upstream": l.Up, "logFile": l.LogFile, "linkTimeout": "5s", "imds": map[string]any{"enabled": false}}
	for k, v := range settings {
		l.Settings[k] = v
	}
	l.writeSettings(t)
	return l
}

func (l *frontLayout) writeSettings(t *testing.T) {
	t.Helper()
	b, err := json.Marshal(l.Settings)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Dir, ecsfront.SettingsFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// setMode selects a misbehaviour of the fake upstream name ("" for none).
func (l *frontLayout) setMode(t *testing.T, name, mode string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(l.Up, name+".mode"), []byte(mode), 0o644); err != nil {
		t.Fatal(err)
	}
}

// calls lists the verbs the fake upstream name was executed with.
func (l *frontLayout) calls(name string) []string {
	b, _ := os.ReadFile(filepath.Join(l.Up, name+".calls"))
	return strings.Fields(string(b))
}

// logLines returns the front's log records.
func (l *frontLayout) logLines(t *testing.T) []map[string]any {
	t.Helper()
	b, _ := os.ReadFile(l.LogFile)
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		out = append(out, m)
	}
	return out
}

// taskNS is a task network namespace as the agent names it: the netns of
// a process inside it, /proc/<pid>/ns/net (the agent's /host/proc/...).
type taskNS struct {
	*h.Netns
	Proc  string
	sleep *exec.Cmd
}

// destroy ends the task: its process and the namespace go away, so the
// /proc path the agent holds names nothing.
func (n *taskNS) destroy() {
	_ = n.sleep.Process.Kill()
	_ = n.sleep.Wait()
	n.Delete()
}

func newTaskNS(t *testing.T) *taskNS {
	t.Helper()
	n := h.NewNetns(t)
	target, err := ns.GetNS(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	cmd := exec.Command("sleep", "3600")
	// Started from a thread inside the namespace, so it is born there.
	if err := target.Do(func(ns.NetNS) error { return cmd.Start() }); err != nil {
		t.Fatalf("start sleep in %s: %v", n.Name, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return &taskNS{Netns: n, Proc: fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), sleep: cmd}
}

// taskENI is a veth "ENI" in the host namespace with a MAC whose first
// three octets are unique to it, so that the host name vpc-eni's DEL gives
// it (ecs%x%x%x) is unique too.
type taskENI struct {
	*h.ENI
	Addr, Gateway string
}

func newTaskENI(t *testing.T, addr, gw string) *taskENI {
	t.Helper()
	e := h.NewENI(t)
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	e.SetMAC(t, fmt.Sprintf("0a:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4]))
	return &taskENI{ENI: e, Addr: addr, Gateway: gw}
}

// hostName is the name vpc-eni's DEL gives the ENI back in the host.
func (e *taskENI) hostName() string {
	return fmt.Sprintf("ecs%x%x%x", e.MAC[0], e.MAC[1], e.MAC[2])
}

// eniConf is the vpc-eni config the agent writes (NewENINetworkConfig)
// before libcni injects cniVersion and name.
func (e *taskENI) eniConf(branch bool) []byte {
	c := map[string]any{
		"cniVersion": "0.3.0", "name": "network-name", "type": "vpc-eni",
		"eniID": "eni-0123456789abcdef0", "eniMACAddress": e.MAC.String(),
		"eniIPAddresses": []string{e.Addr}, "gatewayIPAddresses": []string{e.Gateway},
		"blockInstanceMetadata": true,
	}
	if branch {
		c = map[string]any{
			"cniVersion": "0.3.0", "name": "network-name", "type": "vpc-branch-eni",
			"trunkMACAddress": "0a:00:00:00:00:01", "branchVlanID": "101", "branchMACAddress": e.MAC.String(),
			"ipAddresses": []string{e.Addr}, "gatewayIPAddresses": []string{e.Gateway},
			"blockInstanceMetadata": true, "interfaceType": "vlan",
		}
	}
	b, _ := json.Marshal(c)
	return b
}

// agent drives a front directory as the ECS agent does: libcni with
// CNI_PATH = the directory only, one config per call.
type agent struct {
	cni    *libcni.CNIConfig
	dir    string
	ifname string // "eth0" unless a test needs a second ENI in one task
}

func newAgent(t *testing.T, l *frontLayout) *agent {
	return &agent{cni: libcni.NewCNIConfigWithCacheDir([]string{l.Dir}, t.TempDir(), nil), dir: l.Dir, ifname: "eth0"}
}

func (a *agent) rt(task *taskNS, id string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: task.Proc, IfName: a.ifname}
}

func (a *agent) add(t *testing.T, conf []byte, task *taskNS, id string) error {
	t.Helper()
	nc, err := libcni.NetworkPluginConfFromBytes(conf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // the agent's ADD budget
	defer cancel()
	_, err = a.cni.AddNetwork(ctx, nc, a.rt(task, id))
	return err
}

func (a *agent) del(t *testing.T, conf []byte, task *taskNS, id string) error {
	t.Helper()
	nc, err := libcni.NetworkPluginConfFromBytes(conf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // the agent's DEL budget
	defer cancel()
	return a.cni.DelNetwork(ctx, nc, a.rt(task, id))
}

func (a *agent) check(t *testing.T, conf []byte, task *taskNS, id string) error {
	t.Helper()
	nc, err := libcni.NetworkPluginConfFromBytes(conf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.cni.CheckNetwork(ctx, nc, a.rt(task, id))
}

// probe runs dir/name with args as the agent's startup check does.
func probe(t *testing.T, dir, name string, args ...string) (stdout []byte, exit int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, name), args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	return out, 0
}

// assertENIInHost: the ENI is back in the host namespace under vpc-eni's
// DEL name, with its MAC.
func assertENIInHost(t *testing.T, e *taskENI) {
	t.Helper()
	l, err := netlink.LinkByName(e.hostName())
	if err != nil {
		t.Fatalf("ENI %s not back in the host as %s: %v", e.MAC, e.hostName(), err)
	}
	if l.Attrs().HardwareAddr.String() != e.MAC.String() {
		t.Fatalf("%s has MAC %s, want %s", e.hostName(), l.Attrs().HardwareAddr, e.MAC)
	}
	if plan.IsMark(l.Attrs().Alias) {
		t.Fatalf("%s came back to the host with our ownership mark %q", e.hostName(), l.Attrs().Alias)
	}
}

// assertNoLinkWithMAC: no link in the namespace carries mac (the ENI is
// not stranded there).
func assertNoLinkWithMAC(t *testing.T, nl *netlink.Handle, mac net.HardwareAddr) {
	t.Helper()
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac.String() {
			t.Fatalf("ENI %s stranded in the task namespace as %s", mac, l.Attrs().Name)
		}
	}
}

// running lists the processes executing the file at path.
func running(path string) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range procs {
		if exe, err := os.Readlink(p); err == nil && exe == path {
			var pid int
			if _, err := fmt.Sscanf(p, "/proc/%d/exe", &pid); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}

// startFront starts dir/name as the agent's libcni would (env, stdin),
// optionally under a wrapper (strace), and returns the running command.
func startFront(t *testing.T, l *frontLayout, name string, env h.Env, stdin []byte, wrapper ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	argv := append(slices.Clone(wrapper), filepath.Join(l.Dir, name))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{
		"CNI_COMMAND=" + env.Command, "CNI_CONTAINERID=" + env.ContainerID, "CNI_NETNS=" + env.Netns,
		"CNI_IFNAME=" + env.IfName, "CNI_PATH=" + l.Dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	}
	cmd.Env = append(cmd.Env, env.Extra...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, &out
}

// hasAddr reports whether ifname in the namespace carries addr.
func hasAddr(nl *netlink.Handle, ifname, addr string) bool {
	l, err := nl.LinkByName(ifname)
	if err != nil {
		return false
	}
	addrs, err := nl.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IPNet.String() == addr {
			return true
		}
	}
	return false
}

// execProbe starts a probe of the front under a wrapper.
func execProbe(t *testing.T, front string, wrapper, args []string) *exec.Cmd {
	t.Helper()
	argv := append(append(slices.Clone(wrapper), front), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
