// Package harness is the shared test support for integration tests and
// benchmarks: throw-away network namespaces with veth "ENIs", running the
// plugin binary by direct exec or through cnitool, and reading policy
// routing back through netlink. Everything it creates is removed by
// t.Cleanup, including when a test fails.
package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// TB is the subset of testing.TB the harness needs; benchmarks programs can
// provide their own.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Skipf(format string, args ...any)
	TempDir() string
}

var _ TB = (*testing.T)(nil)

// RequireRoot skips tests that need network namespaces.
func RequireRoot(t TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root for network namespaces")
	}
}

// RepoRoot finds the module root from the working directory.
func RepoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the plugin binary: $EC2PR_BIN, or a fresh build.
func Binary(t TB) string {
	t.Helper()
	if p := os.Getenv("EC2PR_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ec2pr-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "ec2-policy-routes")
		cmd := exec.Command("go", "build", "-o", buildPath, "./plugins/ec2-policy-routes")
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build plugin: %v", buildErr)
	}
	return buildPath
}

// Tool returns a helper binary (cnitool, host-device, static, sbr) from
// $EC2PR_TOOLS or .tools/bin; the test is skipped when it is missing (make
// test installs them).
func Tool(t TB, name string) string {
	t.Helper()
	dirs := []string{os.Getenv("EC2PR_TOOLS"), filepath.Join(RepoRoot(), ".tools", "bin")}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("%s not installed: run `make tools` (or make test)", name)
	return ""
}

// RandName returns prefix plus random hex, at most 15 bytes (IFNAMSIZ-1).
func RandName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n := prefix + hex.EncodeToString(b)
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// Netns is a throw-away named network namespace.
type Netns struct {
	Name string
	Path string
}

// NewNetns creates a namespace under /var/run/netns, removed on cleanup.
func NewNetns(t TB) *Netns {
	t.Helper()
	RequireRoot(t)
	name := RandName("ec2pr-")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	n := &Netns{Name: name, Path: "/var/run/netns/" + name}
	t.Cleanup(func() { n.Delete() })
	return n
}

// Delete removes the namespace (idempotent).
func (n *Netns) Delete() {
	_ = exec.Command("ip", "netns", "del", n.Name).Run()
}

// Handle opens a netlink handle inside the namespace.
func (n *Netns) Handle(t TB) *netlink.Handle {
	t.Helper()
	nsh, err := netns.GetFromPath(n.Path)
	if err != nil {
		t.Fatalf("open netns %s: %v", n.Path, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", n.Path, err)
	}
	t.Cleanup(h.Close)
	return h
}

// IP runs `ip -n <ns> args...` and fails the test on error.
func (n *Netns) IP(t TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Exec runs `ip netns exec <ns> args...` and returns combined output.
func (n *Netns) Exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...).CombinedOutput()
	return string(out), err
}

// ENI is a veth pair standing in for an ENI: Name is the end that gets moved
// into a task namespace; its peer stays in the host namespace.
type ENI struct {
	Name string
	Peer string
	MAC  net.HardwareAddr
}

// NewENI creates a veth pair in the host namespace, removed on cleanup
// (deleting either end removes both).
func NewENI(t TB) *ENI {
	t.Helper()
	RequireRoot(t)
	e := &ENI{Name: RandName("eni"), Peer: RandName("enp")}
	la := netlink.NewLinkAttrs()
	la.Name = e.Name
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: e.Peer}); err != nil {
		t.Fatalf("create veth %s: %v", e.Name, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(e.Peer); err == nil {
			_ = netlink.LinkDel(l)
		}
		if l, err := netlink.LinkByName(e.Name); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	l, err := netlink.LinkByName(e.Name)
	if err != nil {
		t.Fatalf("lookup %s: %v", e.Name, err)
	}
	e.MAC = l.Attrs().HardwareAddr
	return e
}

// SetMAC sets the ENI end's MAC (e.g. to match a fake IMDS) while it is
// still in the host namespace.
func (e *ENI) SetMAC(t TB, mac string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatalf("parse mac: %v", err)
	}
	l, err := netlink.LinkByName(e.Name)
	if err != nil {
		t.Fatalf("lookup %s: %v", e.Name, err)
	}
	if err := netlink.LinkSetHardwareAddr(l, hw); err != nil {
		t.Fatalf("set mac: %v", err)
	}
	e.MAC = hw
}

// MoveInto moves the ENI end into ns, renames it to ifname, adds addrs
// (CIDR strings), sets it up and, per gateway, adds a main default route:
// what vpc-eni does before ec2-policy-routes runs.
func (e *ENI) MoveInto(t TB, n *Netns, ifname string, addrs []string, gateways ...string) {
	t.Helper()
	e.MoveOnly(t, n, ifname)
	for _, a := range addrs {
		args := []string{"addr", "add", a, "dev", ifname}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		n.IP(t, args...)
	}
	n.IP(t, "link", "set", ifname, "up")
	for _, gw := range gateways {
		fam := "-4"
		if strings.Contains(gw, ":") {
			fam = "-6"
		}
		n.IP(t, fam, "route", "add", "default", "via", gw, "dev", ifname)
	}
}

// MoveOnly moves and renames the ENI end without configuring it.
func (e *ENI) MoveOnly(t TB, n *Netns, ifname string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "set", e.Name, "netns", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("move %s into %s: %v %s", e.Name, n.Name, err, out)
	}
	if ifname != e.Name {
		n.IP(t, "link", "set", e.Name, "name", ifname)
	}
}

// Result of one plugin exec.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
	Duration time.Duration
	Err      *types.Error // decoded from stdout on failure
}

// Env are the CNI_* variables for one call.
type Env struct {
	Command     string
	ContainerID string
	Netns       string
	IfName      string
	Path        string
	Extra       []string
}

func (e Env) list() []string {
	env := []string{
		"CNI_COMMAND=" + e.Command,
		"CNI_CONTAINERID=" + e.ContainerID,
		"CNI_NETNS=" + e.Netns,
		"CNI_IFNAME=" + e.IfName,
		"CNI_PATH=" + e.Path,
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	}
	return append(env, e.Extra...)
}

// Run executes the plugin directly with env and stdin, as a runtime does.
func Run(ctx context.Context, t TB, bin string, env Env, stdin []byte) Result {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = env.list()
	cmd.Stdin = bytes.NewReader(stdin)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: so.Bytes(), Stderr: se.Bytes(), Duration: time.Since(start)}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("exec %s: %v", bin, err)
		}
		r.ExitCode = ee.ExitCode()
		var te types.Error
		if json.Unmarshal(r.Stdout, &te) == nil && (te.Code != 0 || te.Msg != "") {
			r.Err = &te
		}
	}
	return r
}

// MustSucceed fails the test unless r exited 0.
func (r Result) MustSucceed(t TB, what string) Result {
	t.Helper()
	if r.ExitCode != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.ExitCode, r.Stdout, r.Stderr)
	}
	return r
}

// MustFailWith fails the test unless r failed with the CNI error code.
func (r Result) MustFailWith(t TB, what string, code uint) Result {
	t.Helper()
	if r.ExitCode == 0 || r.Err == nil || r.Err.Code != code {
		t.Fatalf("%s: want CNI error code %d, got exit %d\nstdout: %s\nstderr: %s", what, code, r.ExitCode, r.Stdout, r.Stderr)
	}
	return r
}

// Chain is a conflist workspace for cnitool: CNI_PATH with the plugin and
// helpers, NETCONFPATH and a private result cache.
type Chain struct {
	Dir     string
	Cnitool string
	Env     []string
}

// NewChain writes a conflist named name (plugins as raw JSON objects) and
// prepares a private CNI_PATH holding the plugin and the helpers it uses.
func NewChain(t TB, name, cniVersion string, plugins ...string) *Chain {
	t.Helper()
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	confDir := filepath.Join(dir, "net.d")
	cache := filepath.Join(dir, "cache")
	for _, d := range []string{binDir, confDir, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
	}
	must := func(err error) {
		if err != nil {
			t.Fatalf("chain setup: %v", err)
		}
	}
	must(os.Symlink(Binary(t), filepath.Join(binDir, "ec2-policy-routes")))
	for _, helper := range []string{"host-device", "static", "sbr"} {
		must(os.Symlink(Tool(t, helper), filepath.Join(binDir, helper)))
	}
	conf := fmt.Sprintf(`{"cniVersion": %q, "name": %q, "plugins": [%s]}`, cniVersion, name, strings.Join(plugins, ","))
	must(os.WriteFile(filepath.Join(confDir, name+".conflist"), []byte(conf), 0o644))
	return &Chain{
		Dir:     dir,
		Cnitool: Tool(t, "cnitool"),
		Env: []string{
			"CNI_PATH=" + binDir, "NETCONFPATH=" + confDir, "CNI_CACHE_DIR=" + cache,
			"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		},
	}
}

// Run runs `cnitool <verb> <name> <netns>`.
func (c *Chain) Run(t TB, verb, name string, n *Netns) (string, error) {
	t.Helper()
	cmd := exec.Command(c.Cnitool, verb, name, n.Path)
	cmd.Env = c.Env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// MustRun fails the test when cnitool fails.
func (c *Chain) MustRun(t TB, verb, name string, n *Netns) string {
	t.Helper()
	out, err := c.Run(t, verb, name, n)
	if err != nil {
		t.Fatalf("cnitool %s %s: %v\n%s", verb, name, err, out)
	}
	return out
}

// Ours lists the rules and routes stamped with the plugin's protocol.
func Ours(t TB, h *netlink.Handle) ([]netlink.Rule, []netlink.Route) {
	t.Helper()
	var rules []netlink.Rule
	all, err := h.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list rules: %v", err)
	}
	for _, r := range all {
		if int(r.Protocol) == plan.Protocol {
			rules = append(rules, r)
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: plan.Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	return rules, routes
}

// MainRoutes lists the main table (both families), normalised to strings,
// to compare before/after.
func MainRoutes(t TB, h *netlink.Handle) []string {
	t.Helper()
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatalf("list main routes: %v", err)
	}
	var out []string
	for _, r := range routes {
		if r.Family == unix.AF_INET6 && r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() {
			continue // kernel-managed fe80::/64, comes and goes with link state
		}
		out = append(out, fmt.Sprintf("%s|%v|%v|%d|%d", r.Dst, r.Gw, r.Src, r.LinkIndex, r.Type))
	}
	return out
}

// RuleStrings renders rules as "from <src> lookup <table> prio <p>".
func RuleStrings(rules []netlink.Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, fmt.Sprintf("from %s lookup %d prio %d", r.Src, r.Table, r.Priority))
	}
	return out
}

// Holders returns the PIDs, other than this test process, that hold the
// namespace: as their own network namespace or through an open fd. A plugin
// that left something running behind for this namespace shows up here,
// without confusing it with other tests' plugin processes.
func (n *Netns) Holders(t TB) []int {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(n.Path, &st); err != nil {
		return nil // namespace already gone: nobody can hold its path
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	self := os.Getpid()
	var out []int
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(p), "%d", &pid); err != nil || pid == self {
			continue
		}
		if l, _ := os.Readlink(p + "/ns/net"); l == want {
			out = append(out, pid)
			continue
		}
		fds, _ := filepath.Glob(p + "/fd/*")
		for _, fd := range fds {
			if l, _ := os.Readlink(fd); l == want {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
