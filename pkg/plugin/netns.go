package plugin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/kernel"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// target is an open task network namespace with a netlink handle in it.
type target struct {
	path     string
	ns       ns.NetNS
	h        *kernel.Handle
	borrowed bool // Plugin.Netns's: its owner closes it
}

func (t *target) fd() int { return int(t.ns.Fd()) }

func (t *target) Close() {
	if t.borrowed {
		return
	}
	if t.h != nil {
		t.h.Close()
	}
	_ = t.ns.Close()
}

// errNoNetns marks a CNI_NETNS that is missing or not a namespace; DEL treats
// it as "nothing left to clean".
var errNoNetns = errors.New("network namespace is gone")

// openTarget opens CNI_NETNS without ever creating anything at the path and
// refuses the plugin's own namespace: policy routes there would reroute the
// host.
func openTarget(path string) (*target, error) {
	// ns.GetNS also opens procfs files (any /proc path); refuse anything
	// that is not on nsfs before opening it, so a hostile CNI_NETNS never
	// gets opened (a FIFO would block, a device could react to open).
	var sfs unix.Statfs_t
	if unix.Statfs(path, &sfs) == nil && sfs.Type != unix.NSFS_MAGIC {
		return nil, fmt.Errorf("%w: %w", errNoNetns,
			types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS %s is not a network namespace", path), ""))
	}
	n, err := ns.GetNS(path)
	if err != nil {
		var missing ns.NSPathNotExistErr
		var notNS ns.NSPathNotNSErr
		switch {
		case errors.As(err, &missing):
			return nil, fmt.Errorf("%w: %w", errNoNetns,
				types.NewError(types.ErrUnknownContainer, fmt.Sprintf("CNI_NETNS %s does not exist", path), ""))
		case errors.As(err, &notNS):
			return nil, fmt.Errorf("%w: %w", errNoNetns,
				types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS %s is not a network namespace", path), ""))
		}
		return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("open CNI_NETNS %s: %v", path, err), "")
	}
	// nsfs also holds mount, pid, user... namespaces (/proc/self/ns/mnt):
	// setns would fail with EINVAL and DEL would report an I/O error
	// instead of "nothing to clean". Ask the kernel for the type.
	if !isNetns(int(n.Fd())) {
		_ = n.Close()
		return nil, fmt.Errorf("%w: %w", errNoNetns,
			types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS %s is not a network namespace", path), ""))
	}
	refusal, err := hostNetnsRefusal(int(n.Fd()))
	if err != nil {
		_ = n.Close()
		return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("compare CNI_NETNS with the plugin's namespace: %v", err), "")
	}
	if refusal != "" {
		_ = n.Close()
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("CNI_NETNS %s is %s; refusing to install policy routing there", path, refusal), "")
	}
	h, err := kernel.NewHandle(n.Fd())
	if err != nil {
		_ = n.Close()
		return nil, types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	return &target{path: path, ns: n, h: h}, nil
}

// openTarget is Netns when it was opened at path, else openTarget(path).
func (p *Plugin) openTarget(path string) (*target, error) {
	if n := p.Netns; n != nil && n.t.path == path {
		t := *n.t
		t.borrowed = true
		return &t, nil
	}
	return openTarget(path)
}

// hostNetnsRefusal compares the namespace at fd with the one this thread
// runs in and with PID 1's (see plan.HostNetnsRefusal).
func hostNetnsRefusal(fd int) (string, error) {
	target, err := kernel.NetnsOfFd(fd)
	if err != nil {
		return "", err
	}
	self, err := kernel.ThreadNetns()
	if err != nil {
		return "", err
	}
	return plan.HostNetnsRefusal(target, self, kernel.InitNetns()), nil
}

// nsGetNSType is NS_GET_NSTYPE, _IO(0xb7, 0x3) in linux/nsfs.h (Linux 4.11+).
const nsGetNSType = 0xb703

// isNetns reports whether fd is a network namespace. On a kernel without
// NS_GET_NSTYPE (ENOTTY on nsfs too) it trusts an nsfs file and lets setns
// decide.
func isNetns(fd int) bool {
	t, err := unix.IoctlRetInt(fd, nsGetNSType)
	if err == nil {
		return t == unix.CLONE_NEWNET
	}
	var st unix.Statfs_t
	return errors.Is(err, unix.ENOTTY) && unix.Fstatfs(fd, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// LinkFacts is what the kernel shows of one link in a task namespace.
type LinkFacts struct {
	Found bool
	MAC   net.HardwareAddr
	Addrs []netip.Prefix // global-scope addresses
}

// InspectLink reads the link named ifname in the namespace at netnsPath,
// opened as every verb opens it (openTarget: nothing created at the path,
// nsfs network namespaces only, the host's refused). A missing link is
// Found false, not an error.
func InspectLink(netnsPath, ifname string) (LinkFacts, error) {
	t, err := openTarget(netnsPath)
	if err != nil {
		return LinkFacts{}, err
	}
	defer t.Close()
	return t.inspect(ifname)
}

// TaskNetns is CNI_NETNS opened once, as every verb opens it (openTarget):
// a caller that must refuse the host namespace before anything else runs
// keeps it open and reads the same namespace afterwards.
type TaskNetns struct{ t *target }

// OpenTaskNetns opens the namespace at path; errors are *types.Error
// (code 7 for the host's or the plugin's own namespace, 3 when missing).
func OpenTaskNetns(path string) (*TaskNetns, error) {
	t, err := openTarget(path)
	if err != nil {
		return nil, err
	}
	return &TaskNetns{t: t}, nil
}

// Close releases the namespace and its netlink socket.
func (n *TaskNetns) Close() { n.t.Close() }

// Inspect is InspectLink on the open namespace.
func (n *TaskNetns) Inspect(ifname string) (LinkFacts, error) { return n.t.inspect(ifname) }

// LinksWithMAC names the namespace's links that carry mac.
func (n *TaskNetns) LinksWithMAC(mac net.HardwareAddr) ([]string, error) {
	links, err := n.t.h.Links()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		if l.MAC == mac.String() {
			out = append(out, l.Name)
		}
	}
	return out, nil
}

func (t *target) inspect(ifname string) (LinkFacts, error) {
	link, err := t.h.LinkByName(ifname)
	if errors.Is(err, kernel.ErrNoLink) {
		return LinkFacts{}, nil
	}
	if err != nil {
		return LinkFacts{}, err
	}
	addrs, err := t.h.LinkAddrs(link)
	if err != nil {
		return LinkFacts{}, err
	}
	return LinkFacts{Found: true, MAC: link.HardwareAddr(), Addrs: addrs}, nil
}
