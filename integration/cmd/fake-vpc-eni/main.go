// Command fake-vpc-eni is a stand-in for the AWS vpc-eni and vpc-branch-eni
// CNI plugins (amazon-vpc-cni-plugins), faithful to what the ECS front
// depends on (see "Running under the stock ECS agent" in the field notes):
//
//   - ADD finds the ENI by MAC in the host namespace (one scan, missing is
//     an error), moves it into CNI_NETNS, renames it to CNI_IFNAME, adds the
//     IMDS blackholes (blockInstanceMetadata) and the default route in main,
//     the addresses, sets it up; errors inside the namespace are ignored,
//     as vpc-eni does. The result is one interface and one ip.
//   - DEL finds the ENI by MAC inside CNI_NETNS, sets it down, renames it
//     ecs%x%x%x (first three MAC octets), moves it back to the host; every
//     error is ignored, exit 0.
//   - --capabilities and --version print what the agent expects.
//
// It acts as vpc-eni or vpc-branch-eni by argv[0] (branch: branchMACAddress
// and ipAddresses; the branch link is treated like a plain ENI, as VLANs
// are not available here). Any other name is a trivial plugin that answers
// --capabilities and succeeds (ecs-bridge, ecs-ipam, ... stand-ins).
//
// A file <executable>.mode selects a misbehaviour of ADD: "noconfig"
// (moves the ENI, then exits 0 without renaming or addressing), "fail"
// (moves it, then exits 1), "hang" (configures it, then never exits),
// "down" (configures it but leaves it down, so the front's link wait runs).
// As vpc-branch-eni, "vlan" is the real plugin's DEL: it deletes whatever
// link is named CNI_IFNAME in CNI_NETNS and returns nothing to the host (the
// branch link, a VLAN on the trunk in reality, is the veth end carrying the
// branch MAC here; ADD is unchanged: a failed rename to CNI_IFNAME, e.g. a
// stale eth0, is ignored and the link stays under its own name).
//
// FAKE_VPC_ENI_NO_NETNS_CHECK=1 in the environment skips skel's check that
// CNI_NETNS is not the plugin's own namespace, as the real vpc-eni has
// none: ADD then configures whatever namespace it is given.
// FAKE_VPC_ENI_STDIN_WAIT=FILE appends to FILE, per ADD/DEL, how long
// (nanoseconds) reading the configuration from stdin blocked: make bench
// uses it to count only the time a front really held the stand-in back.
// Every invocation appends its verb (or first argument) to
// <executable>.calls.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	capabilities = `{"capabilities":["awsvpc-network-mode"]}`
	versionJSON  = `{"version":"fake-1.3.0","dirty":false,"gitShortHash":"fa4e0e1"}`
)

func main() {
	name := filepath.Base(os.Args[0])
	exe, _ := os.Executable()
	record(exe)
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "--capabilities":
			fmt.Println(capabilities)
			return
		case "--version":
			fmt.Println(versionJSON)
			return
		}
	}
	if name != "vpc-eni" && name != "vpc-branch-eni" {
		if os.Getenv("CNI_COMMAND") == "ADD" {
			fmt.Println(`{"cniVersion":"0.3.0"}`)
		}
		return
	}
	if p := os.Getenv("FAKE_VPC_ENI_STDIN_WAIT"); p != "" {
		timeStdin(p)
	}
	f := &fake{branch: name == "vpc-branch-eni", mode: readMode(exe)}
	skel.PluginMainFuncs(skel.CNIFuncs{Add: f.add, Del: f.del, Check: func(*skel.CmdArgs) error { return nil }},
		version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0"), "fake "+name)
}

// timeStdin reads the whole configuration, appends how long that blocked
// to file, and hands skel the same bytes through a pipe.
func timeStdin(file string) {
	t0 := time.Now()
	data, err := io.ReadAll(os.Stdin)
	waited := time.Since(t0)
	if err != nil {
		return
	}
	if f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
		fmt.Fprintf(f, "%d\n", waited.Nanoseconds())
		_ = f.Close()
	}
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	go func() { _, _ = w.Write(data); _ = w.Close() }()
	os.Stdin = r
}

func record(exe string) {
	what := os.Getenv("CNI_COMMAND")
	if what == "" && len(os.Args) > 1 {
		what = os.Args[1]
	}
	fh, err := os.OpenFile(exe+".calls", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		_, _ = fh.WriteString(what + "\n")
		_ = fh.Close()
	}
}

func readMode(exe string) string {
	b, _ := os.ReadFile(exe + ".mode")
	return strings.TrimSpace(string(b))
}

type fake struct {
	branch bool
	mode   string
}

type conf struct {
	types.NetConf
	ENIMACAddress      string   `json:"eniMACAddress"`
	ENIIPAddresses     []string `json:"eniIPAddresses"`
	BranchMACAddress   string   `json:"branchMACAddress"`
	IPAddresses        []string `json:"ipAddresses"`
	GatewayIPAddresses []string `json:"gatewayIPAddresses"`
	BlockIMDS          bool     `json:"blockInstanceMetadata"`
}

type eni struct {
	mac      net.HardwareAddr
	addrs    []*net.IPNet
	gateways []net.IP
	block    bool
	version  string
}

func (f *fake) parse(stdin []byte) (*eni, error) {
	var c conf
	if err := json.Unmarshal(stdin, &c); err != nil {
		return nil, fmt.Errorf("failed to parse network config: %w", err)
	}
	mac, addrs := c.ENIMACAddress, c.ENIIPAddresses
	if f.branch {
		mac, addrs = c.BranchMACAddress, c.IPAddresses
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, fmt.Errorf("invalid MAC address %q", mac)
	}
	e := &eni{mac: hw, block: c.BlockIMDS, version: c.CNIVersion}
	for _, a := range addrs {
		ip, n, err := net.ParseCIDR(a)
		if err != nil {
			return nil, fmt.Errorf("invalid IP address %s", a)
		}
		n.IP = ip
		e.addrs = append(e.addrs, n)
	}
	for _, g := range c.GatewayIPAddresses {
		e.gateways = append(e.gateways, net.ParseIP(g))
	}
	if len(e.addrs) == 0 || len(e.gateways) == 0 {
		return nil, fmt.Errorf("missing required parameter IP addresses or gateways")
	}
	return e, nil
}

func byMAC(h *netlink.Handle, mac net.HardwareAddr) (netlink.Link, error) {
	links, err := h.LinkList()
	// Concurrent ADDs move links while we dump and the kernel flags the
	// dump as interrupted: retry it, so that the stand-in is not the flaky
	// part of a concurrency test.
	for i := 0; i < 10 && errors.Is(err, netlink.ErrDumpInterrupted); i++ {
		links, err = h.LinkList()
	}
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac.String() {
			return l, nil
		}
	}
	return nil, fmt.Errorf("failed to find ENI with MAC address %s", mac)
}

func (f *fake) add(args *skel.CmdArgs) error {
	if os.Getenv("FAKE_VPC_ENI_NO_NETNS_CHECK") == "1" {
		args.NetnsOverride = "1"
	}
	e, err := f.parse(args.StdinData)
	if err != nil {
		return err
	}
	target, err := netns.GetFromPath(args.Netns)
	if err != nil {
		return fmt.Errorf("failed to find netns %s: %w", args.Netns, err)
	}
	defer target.Close()
	hostH, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer hostH.Close()
	link, err := byMAC(hostH, e.mac) // one scan, no wait: as vpc-eni
	if err != nil {
		return err
	}
	if err := netlink.LinkSetNsFd(link, int(target)); err != nil {
		return fmt.Errorf("failed to move eni: %w", err)
	}
	switch f.mode {
	case "fail":
		return fmt.Errorf("fake %s: failing after the move, as configured", filepath.Base(os.Args[0]))
	case "noconfig":
		return printResult(args, e)
	}
	configureInside(target, e, args.IfName, f.mode != "down") // errors ignored, as vpc-eni
	if f.mode == "hang" {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT) // only SIGKILL ends it
		time.Sleep(math.MaxInt64)                      // a timer: no deadlock panic
	}
	return printResult(args, e)
}

// configureInside renames, blocks IMDS, addresses, sets up and routes,
// ignoring every error (vpc-eni discards the errors of its netns closure).
func configureInside(target netns.NsHandle, e *eni, ifname string, up bool) {
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return
	}
	defer h.Close()
	link, err := byMAC(h, e.mac)
	if err != nil {
		return
	}
	_ = h.LinkSetName(link, ifname)
	if e.block {
		for _, dst := range []string{"169.254.169.254/32", "fd00:ec2::254/128"} {
			_, n, _ := net.ParseCIDR(dst)
			_ = h.RouteAdd(&netlink.Route{Dst: n, Type: unix.RTN_BLACKHOLE})
		}
	}
	for _, a := range e.addrs {
		_ = h.AddrAdd(link, &netlink.Addr{IPNet: a})
	}
	if up {
		_ = h.LinkSetUp(link)
	}
	for _, gw := range e.gateways {
		_ = h.RouteAdd(&netlink.Route{Gw: gw, LinkIndex: link.Attrs().Index})
	}
}

func printResult(args *skel.CmdArgs, e *eni) error {
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: args.IfName, Mac: e.mac.String(), Sandbox: args.Netns}},
		IPs:        []*current.IPConfig{{Interface: current.Int(0), Address: *e.addrs[0], Gateway: e.gateways[0]}},
	}
	return types.PrintResult(res, e.version)
}

func (f *fake) del(args *skel.CmdArgs) error {
	args.NetnsOverride = "1" // the namespace may be gone; that is fine
	e, err := f.parse(args.StdinData)
	if err != nil {
		return err
	}
	target, err := netns.GetFromPath(args.Netns)
	if err != nil {
		return nil // netns gone: nothing to do
	}
	defer target.Close()
	host, err := netns.Get()
	if err != nil {
		return nil
	}
	defer host.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return nil
	}
	defer h.Close()
	if f.branch && f.mode == "vlan" {
		if l, err := h.LinkByName(args.IfName); err == nil {
			_ = h.LinkDel(l) // whatever is named CNI_IFNAME, as vpc-branch-eni
		}
		return nil
	}
	link, err := byMAC(h, e.mac)
	if err != nil {
		return nil
	}
	_ = h.LinkSetDown(link)
	_ = h.LinkSetName(link, fmt.Sprintf("ecs%x%x%x", e.mac[0], e.mac[1], e.mac[2]))
	_ = h.LinkSetNsFd(link, int(host))
	return nil
}
