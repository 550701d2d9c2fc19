package integration

// A private containerd for TestContainerdCRI: its own root, state, socket,
// runc root, CNI directories and pod cgroup parent, all named by one token,
// so that everything it creates can be found again and removed — by CRI
// first, as the kubelet would, then by force — and so that the test can
// prove nothing of it is left on the machine.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
)

// netnsDir is where containerd 1.6 bind-mounts pod namespaces (cni-<uuid>).
const netnsDir = "/var/run/netns"

// sbinPath is searched after $PATH (runc is in /usr/sbin) and is the PATH
// containerd and its shims get.
const sbinPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ctrdTools returns the host binaries the test drives, or a reason to skip.
func ctrdTools() (map[string]string, string) {
	if os.Geteuid() != 0 {
		return nil, "needs root (containerd, network namespaces)"
	}
	paths := map[string]string{}
	for _, name := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc"} {
		p, err := exec.LookPath(name)
		for _, d := range filepath.SplitList(sbinPath) {
			if err != nil {
				p, err = exec.LookPath(filepath.Join(d, name))
			}
		}
		if err != nil {
			return nil, name + " not installed (apt-get install containerd runc; .ci/run does)"
		}
		paths[name] = p
	}
	return paths, ""
}

// ctrd is one private containerd with the CRI plugin.
type ctrd struct {
	t       *testing.T
	dir     string // root of everything this containerd owns
	token   string // base name of dir: in argv of its processes and its cgroup parent
	image   string
	cmd     *exec.Cmd
	exited  chan struct{}
	conn    *grpc.ClientConn
	rt      cri.RuntimeServiceClient
	netnsMu sync.Mutex
	netns   map[string]bool // pod namespaces seen or created while it ran
	before  map[string]bool // cni-* entries of netnsDir before it started
}

func (c *ctrd) path(elem ...string) string { return filepath.Join(append([]string{c.dir}, elem...)...) }

// sock is the CRI/containerd socket.
func (c *ctrd) sock() string { return c.path("containerd.sock") }

// cniConfDir is the CNI conf_dir of a runtime handler ("" is the default,
// the plugin section's conf_dir).
func (c *ctrd) cniConfDir(handler string) string {
	if handler == "" {
		return c.path("cni", "net.d")
	}
	return c.path("cni", "net.d-"+handler)
}

// cgroupParent is the pods' cgroup parent, owned by this containerd.
func (c *ctrd) cgroupParent() string { return "/" + c.token }

// newCtrd lays out the directories and CNI binaries; handlers are extra
// runtime handlers, each with its own CNI conf dir (containerd 1.6's
// per-runtime cni_conf_dir). Conflists must be written before start.
func newCtrd(t *testing.T, handlers ...string) *ctrd {
	t.Helper()
	dir, err := os.MkdirTemp("", "ec2pr-ctrd-")
	if err != nil {
		t.Fatalf("mkdtemp: %v", err)
	}
	c := &ctrd{t: t, dir: dir, token: filepath.Base(dir), exited: make(chan struct{}), netns: map[string]bool{}, before: cniNetns()}
	// Registered before anything else of the test's, so it runs last.
	t.Cleanup(c.shutdown)
	c.image = "ec2pr.invalid/pause:" + c.token
	dirs := []string{c.path("cni", "bin"), c.cniConfDir(""), c.path("log")}
	for _, hd := range handlers {
		dirs = append(dirs, c.cniConfDir(hd))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
	}
	// loopback: containerd's CRI runs it for every pod besides the conflist.
	links := map[string]string{"ec2-policy-routes": h.Binary(t), "host-device": h.Tool(t, "host-device"),
		"static": h.Tool(t, "static"), "loopback": h.Tool(t, "loopback")}
	for name, target := range links {
		if err := os.Symlink(target, c.path("cni", "bin", name)); err != nil {
			t.Fatalf("cni bin: %v", err)
		}
	}
	if err := os.WriteFile(c.path("config.toml"), []byte(c.config(handlers)), 0o644); err != nil {
		t.Fatalf("config.toml: %v", err)
	}
	return c
}

// config is containerd's config.toml. restrict_oom_score_adj: lowering
// oom_score_adj is refused on these machines; native: no overlayfs needed.
func (c *ctrd) config(handlers []string) string {
	var b strings.Builder
	const cri = `plugins."io.containerd.grpc.v1.cri"`
	fmt.Fprintf(&b, `version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.overlayfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[%s]
  sandbox_image = %q
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[%s.cni]
  bin_dir = %q
  conf_dir = %q
[%s.containerd]
  snapshotter = "native"
  default_runtime_name = "runc"
`, c.path("root"), c.path("state"), c.sock(), c.sock()+".ttrpc", c.path("opt"),
		cri, c.image, cri, c.path("cni", "bin"), c.cniConfDir(""), cri)
	for _, hd := range append([]string{"runc"}, handlers...) {
		fmt.Fprintf(&b, "[%s.containerd.runtimes.%q]\n  runtime_type = \"io.containerd.runc.v2\"\n", cri, hd)
		if hd != "runc" {
			fmt.Fprintf(&b, "  cni_conf_dir = %q\n  cni_max_conf_num = 1\n", c.cniConfDir(hd))
		}
		// A private runc root: its containers are not mixed with any other runtime's.
		fmt.Fprintf(&b, "[%s.containerd.runtimes.%q.options]\n  Root = %q\n", cri, hd, c.path("runc"))
	}
	return b.String()
}

// writeConflist writes the shipped conf/containerd/10-task-eni.conflist,
// its ENI (MAC, address, gateway) replaced, IMDS off (no EC2 here) and the
// log in the test's directory, into the handler's conf dir.
func (c *ctrd) writeConflist(t *testing.T, handler string, mac net.HardwareAddr, addr, gw string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(h.RepoRoot(), "conf", "containerd", "10-task-eni.conflist"))
	if err != nil {
		t.Fatalf("shipped conflist: %v", err)
	}
	var conf struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &conf); err != nil || len(conf.Plugins) != 2 {
		t.Fatalf("shipped conflist is not host-device + ec2-policy-routes: %v", err)
	}
	dev, ours := conf.Plugins[0], conf.Plugins[1]
	if dev["type"] != "host-device" || ours["type"] != "ec2-policy-routes" {
		t.Fatalf("shipped conflist changed shape: %s", raw)
	}
	dev["hwaddr"] = mac.String()
	dev["ipam"] = map[string]any{
		"type":      "static",
		"addresses": []any{map[string]any{"address": addr, "gateway": gw}},
		"routes":    []any{map[string]any{"dst": "0.0.0.0/0", "gw": gw}},
	}
	ours["imds"] = map[string]any{"enabled": false}
	ours["logFile"] = c.path("log", "ec2-policy-routes.log")
	ours["logLevel"] = "debug"
	out, _ := json.MarshalIndent(conf, "", "  ")
	if err := os.WriteFile(filepath.Join(c.cniConfDir(handler), "10-task-eni.conflist"), out, 0o644); err != nil {
		t.Fatalf("write conflist: %v", err)
	}
}

// start runs containerd, connects CRI and imports the sandbox image.
// newCtrd's cleanup stops it.
func (c *ctrd) start(t *testing.T, tools map[string]string) {
	t.Helper()
	logf, err := os.Create(c.path("log", "containerd.log"))
	if err != nil {
		t.Fatalf("log: %v", err)
	}
	defer logf.Close()
	c.cmd = exec.Command(tools["containerd"], "--config", c.path("config.toml"))
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.Env = append(os.Environ(), "PATH="+sbinPath)
	// Dies with the test binary's thread that started it (go test -timeout).
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()

	// Short reconnect backoff: the socket appears a few ms after start.
	fast := grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond}, MinConnectTimeout: 5 * time.Second}
	c.conn, err = grpc.Dial(c.sock(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithConnectParams(fast),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		t.Fatalf("grpc dial: %v", err)
	}
	c.rt = cri.NewRuntimeServiceClient(c.conn)
	// CRI answers "not initialized" until it has recovered its state.
	c.until(t, "CRI to serve", 30*time.Second, func(ctx context.Context) error {
		_, err := c.rt.Version(ctx, &cri.VersionRequest{})
		return err
	})
	tarball := c.buildImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	imp := exec.CommandContext(ctx, tools["ctr"], "--address", c.sock(), "-n", "k8s.io",
		"images", "import", "--snapshotter", "native", tarball)
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	// CRI learns of the import from containerd's event stream.
	img := cri.NewImageServiceClient(c.conn)
	c.until(t, "CRI to list the sandbox image", 30*time.Second, func(ctx context.Context) error {
		st, err := img.ImageStatus(ctx, &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: c.image}})
		if err == nil && st.Image == nil {
			err = errors.New("not listed yet")
		}
		return err
	})
}

// until retries fn (each try bounded) until it succeeds, containerd exits
// or the limit passes: for states with no event to wait on.
func (c *ctrd) until(t *testing.T, what string, limit time.Duration, fn func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := fn(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-c.exited:
			t.Fatalf("containerd exited while waiting for %s: %v\n%s", what, err, c.logTail("containerd.log", 40))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v\n%s", limit, what, err, c.logTail("containerd.log", 40))
		}
	}
}

// pauseBinary builds integration/cmd/ctrd-pause, static, into dir (the
// go build cache makes the second build cheap).
func pauseBinary(t *testing.T, dir string) []byte {
	t.Helper()
	bin := filepath.Join(dir, "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./integration/cmd/ctrd-pause")
	cmd.Dir, cmd.Env = h.RepoRoot(), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ctrd-pause: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatalf("read pause: %v", err)
	}
	return b
}

// buildImage writes the sandbox image as a docker-archive tar (what
// `docker save` writes: manifest.json, the image config, one layer tar)
// holding /pause, run as `/pause <token>`.
func (c *ctrd) buildImage(t *testing.T) string {
	t.Helper()
	var layer bytes.Buffer
	writeTar(t, &layer, map[string][]byte{"pause": pauseBinary(t, c.dir)}, 0o755)
	layerSum := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Cmd": []string{"/pause", c.token}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(layerSum[:])}},
	})
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{c.image}, "Layers": []string{"layer.tar"}}})
	var archive bytes.Buffer
	writeTar(t, &archive, map[string][]byte{"manifest.json": manifest, configName: config, "layer.tar": layer.Bytes()}, 0o644)
	p := c.path("pause-image.tar")
	if err := os.WriteFile(p, archive.Bytes(), 0o644); err != nil {
		t.Fatalf("write image: %v", err)
	}
	return p
}

func writeTar(t *testing.T, w *bytes.Buffer, files map[string][]byte, mode int64) {
	t.Helper()
	tw := tar.NewWriter(w)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: mode, Size: int64(len(files[n])), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar: %v", err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatalf("tar: %v", err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("tar: %v", err)
	}
}

// logTail returns the last n lines of a log under dir/log.
func (c *ctrd) logTail(name string, n int) string {
	b, _ := os.ReadFile(c.path("log", name))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- " + name + " (tail):\n" + strings.Join(lines, "\n")
}

// ---------------------------------------------------------------------------
// Pods through CRI, as the kubelet drives them.

type pod struct {
	id, name, handler string
	netns             string // the runtime's cni-… namespace, from PodSandboxStatus
}

// runPod is RunPodSandbox; the pod is stopped and removed on t's cleanup.
// Safe to call from several goroutines.
func (c *ctrd) runPod(ctx context.Context, t *testing.T, name, handler string) (*pod, error) {
	cfg := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: name, Uid: c.token + "-" + name, Namespace: "ec2pr-test"},
		Hostname:     name,
		LogDirectory: c.path("log", "pods", name),
		Linux: &cri.LinuxPodSandboxConfig{
			CgroupParent: c.cgroupParent(),
			SecurityContext: &cri.LinuxSandboxSecurityContext{
				NamespaceOptions: &cri.NamespaceOption{Network: cri.NamespaceMode_POD, Pid: cri.NamespaceMode_CONTAINER, Ipc: cri.NamespaceMode_POD},
			},
		},
	}
	resp, err := c.rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		return nil, fmt.Errorf("RunPodSandbox %s (handler %q): %w", name, handler, err)
	}
	p := &pod{id: resp.PodSandboxId, name: name, handler: handler}
	t.Cleanup(func() { c.removePod(t, p.id) })
	_, p.netns, err = c.status(ctx, p.id)
	return p, err
}

// status is PodSandboxStatus (verbose) and the pod's network namespace
// path from the runtime spec containerd reports.
func (c *ctrd) status(ctx context.Context, id string) (*cri.PodSandboxStatus, string, error) {
	resp, err := c.rt.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		return nil, "", fmt.Errorf("PodSandboxStatus %s: %w", id, err)
	}
	var info struct {
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct{ Type, Path string } `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		return nil, "", fmt.Errorf("PodSandboxStatus %s: verbose info: %w", id, err)
	}
	for _, ns := range info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" && ns.Path != "" {
			c.netnsMu.Lock()
			c.netns[ns.Path] = true
			c.netnsMu.Unlock()
			return resp.Status, ns.Path, nil
		}
	}
	return resp.Status, "", fmt.Errorf("PodSandboxStatus %s: no network namespace path in %s", id, resp.Info["info"])
}

func (c *ctrd) stopPod(ctx context.Context, id string) error {
	_, err := c.rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: id})
	if err != nil {
		return fmt.Errorf("StopPodSandbox %s: %w", id, err)
	}
	return nil
}

// removePod stops and removes a pod, as the kubelet does when it is done;
// a pod already gone is fine.
func (c *ctrd) removePod(t *testing.T, id string) {
	select {
	case <-c.exited:
		return // nothing to ask; shutdown's force path takes over
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, call := range []func() error{
		func() error {
			_, err := c.rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: id})
			return err
		},
		func() error {
			_, err := c.rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: id})
			return err
		},
	} {
		if err := call(); err != nil && status.Code(err) != codes.NotFound && !strings.Contains(err.Error(), "not found") {
			t.Errorf("cleanup of pod %s: %v", id, err)
			return
		}
	}
}

// ---------------------------------------------------------------------------
// Shutdown: CRI, then the daemon, then by force; and the leak check.

func (c *ctrd) shutdown() {
	t := c.t
	if c.cmd != nil && c.cmd.Process != nil {
		c.removeAllPods()
		c.stopDaemon()
	}
	// The pods' cgroup parent is the kubelet's, which removes it once its
	// pods are gone (runc removes only each container's own cgroup):
	// rmdir, which fails while a pod's cgroup is left in it.
	for _, cg := range c.cgroups() {
		_ = unix.Rmdir(cg)
	}
	if c.conn != nil {
		_ = c.conn.Close()
	}
	if t.Failed() {
		t.Log(c.logTail("containerd.log", 60))
		t.Log(c.logTail("ec2-policy-routes.log", 30))
	}
	// After a clean run, CRI and the daemon's own shutdown must have left
	// nothing (a shim exits on its own once its last container is deleted:
	// give it a few seconds); after a failure leftovers are expected.
	c.waitNoProcs(5 * time.Second)
	if left := c.leftovers(); len(left) > 0 && !t.Failed() {
		t.Errorf("left behind by containerd after Stop/RemovePodSandbox and its shutdown:\n%s", strings.Join(left, "\n"))
	}
	c.force()
	if left := c.leftovers(); len(left) > 0 {
		t.Errorf("could not remove what containerd left behind:\n%s", strings.Join(left, "\n"))
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("remove %s: %v", c.dir, err)
	}
}

// removeAllPods stops and removes every pod CRI still lists.
func (c *ctrd) removeAllPods() {
	select {
	case <-c.exited:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	resp, err := c.rt.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	cancel()
	if err != nil {
		c.t.Logf("ListPodSandbox at shutdown: %v", err)
		return
	}
	for _, p := range resp.Items {
		c.removePod(c.t, p.Id)
	}
}

// stopDaemon sends SIGTERM and waits; SIGKILL after 15 s.
func (c *ctrd) stopDaemon() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		c.t.Errorf("containerd did not exit 15 s after SIGTERM; killing it")
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// procs lists live processes whose command line names this containerd's
// token: the daemon, its shims (-address <dir>/containerd.sock), runc calls
// (--root <dir>/runc) and the pause processes (/pause <token>).
func (c *ctrd) procs() map[int]string {
	out := map[int]string{}
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(c.token)) {
			continue
		}
		out[pid] = strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
	}
	return out
}

// mounts lists mount points under dir or at a pod namespace path.
func (c *ctrd) mounts() []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	c.netnsMu.Lock()
	defer c.netnsMu.Unlock()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		mp := fields[1]
		if strings.HasPrefix(mp, c.dir+"/") || c.netns[mp] {
			out = append(out, mp)
		}
	}
	return out
}

// cniNetns lists the cni-* entries of netnsDir.
func cniNetns() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "cni-") {
			out[filepath.Join(netnsDir, e.Name())] = true
		}
	}
	return out
}

// podNetns is every namespace path this containerd is known or presumed to
// have made: those PodSandboxStatus named, plus cni-* entries that appeared
// while it ran (a pod whose status was never read).
func (c *ctrd) podNetns() []string {
	c.netnsMu.Lock()
	defer c.netnsMu.Unlock()
	for p := range cniNetns() {
		if !c.before[p] {
			c.netns[p] = true
		}
	}
	var out []string
	for p := range c.netns {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// cgroups lists this containerd's pod cgroup parent in every hierarchy.
func (c *ctrd) cgroups() []string {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", c.token))
	if d := filepath.Join("/sys/fs/cgroup", c.token); isDir(d) {
		dirs = append(dirs, d)
	}
	return dirs
}

func isDir(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }

// leftovers describes every process, mount, namespace and cgroup of this
// containerd still present.
func (c *ctrd) leftovers() []string {
	var out []string
	for pid, cmdline := range c.procs() {
		out = append(out, fmt.Sprintf("process %d: %s", pid, cmdline))
	}
	for _, m := range c.mounts() {
		out = append(out, "mount "+m)
	}
	for _, p := range c.podNetns() {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, "namespace "+p)
		}
	}
	for _, d := range c.cgroups() {
		out = append(out, "cgroup "+d)
	}
	slices.Sort(out)
	return out
}

// waitNoProcs waits, bounded, until no process of this containerd is
// left. Polled: processes that are not our children have no exit event to
// wait on from here.
func (c *ctrd) waitNoProcs(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for len(c.procs()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// force kills what is left, unmounts, removes namespaces and cgroups.
func (c *ctrd) force() {
	for pid := range c.procs() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	c.waitNoProcs(10 * time.Second)
	m := c.mounts()
	for i := len(m) - 1; i >= 0; i-- { // innermost first
		_ = unix.Unmount(m[i], unix.MNT_DETACH)
	}
	for _, p := range c.podNetns() {
		_ = unix.Unmount(p, unix.MNT_DETACH)
		_ = os.Remove(p)
	}
	for _, cg := range c.cgroups() {
		removeCgroup(cg)
	}
}

// removeCgroup removes a cgroup directory tree, children first (cgroupfs
// only removes empty cgroups with rmdir).
func removeCgroup(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			removeCgroup(filepath.Join(dir, e.Name()))
		}
	}
	_ = unix.Rmdir(dir)
}

// pluginCalls returns the plugin's log records of one verb for one
// container (the pod sandbox ID is CNI_CONTAINERID).
func (c *ctrd) pluginCalls(t *testing.T, verb, container string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(c.path("log", "ec2-policy-routes.log"))
	if err != nil {
		t.Fatalf("plugin log: %v", err)
	}
	var out []map[string]any
	for _, line := range bytes.Split(b, []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil && rec["verb"] == verb && rec["container"] == container {
			out = append(out, rec)
		}
	}
	return out
}

// assertDEL: the plugin ran DEL for the pod with CNI_NETNS netns, and every
// DEL it logged for the pod succeeded.
func (c *ctrd) assertDEL(t *testing.T, p *pod, netns string) {
	t.Helper()
	calls := c.pluginCalls(t, "DEL", p.id)
	seen := false
	for _, rec := range calls {
		if rec["outcome"] != "ok" {
			t.Fatalf("pod %s: DEL failed: %v", p.name, rec)
		}
		seen = seen || rec["netns"] == netns
	}
	if !seen {
		t.Fatalf("pod %s: no DEL with CNI_NETNS=%q logged; DELs: %v", p.name, netns, calls)
	}
}
