package ecsfront

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/kernel"
)

// observed is what the kernel shows of CNI_IFNAME in CNI_NETNS after the
// upstream ADD.
type observed struct {
	Found bool
	MAC   net.HardwareAddr
	Addrs []netip.Prefix // global-scope addresses
}

// observe reads the link named ifname in the namespace at netnsPath. It
// never creates anything at the path and refuses a path not on nsfs (a FIFO
// would block the open).
func observe(netnsPath, ifname string) (observed, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(netnsPath, &sfs); err != nil {
		return observed{}, fmt.Errorf("CNI_NETNS %s: %w", netnsPath, err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return observed{}, fmt.Errorf("CNI_NETNS %s is not a network namespace", netnsPath)
	}
	n, err := ns.GetNS(netnsPath)
	if err != nil {
		return observed{}, err
	}
	defer n.Close()
	h, err := kernel.NewHandle(n.Fd())
	if err != nil {
		return observed{}, err
	}
	defer h.Close()
	link, err := h.Netlink().LinkByName(ifname)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return observed{}, nil
	}
	if err != nil {
		return observed{}, fmt.Errorf("look up %s: %w", ifname, err)
	}
	addrs, err := h.LinkAddrs(link)
	if err != nil {
		return observed{}, err
	}
	return observed{Found: true, MAC: link.Attrs().HardwareAddr, Addrs: addrs}, nil
}

// problems lists where the link differs from what the config says the
// upstream made: vpc-eni reports success even when the rename, an address
// or the route failed inside the namespace.
func (f *ENIFacts) problems(o observed, ifname string) []string {
	if !o.Found {
		return []string{fmt.Sprintf("no interface %s (the ENI was not moved in or not renamed)", ifname)}
	}
	var out []string
	if f.MAC != nil && !bytes.Equal(o.MAC, f.MAC) {
		out = append(out, fmt.Sprintf("%s has MAC %s, not the ENI's %s", ifname, o.MAC, f.MAC))
	}
	for _, a := range f.Addrs {
		if !slices.Contains(o.Addrs, a) {
			out = append(out, fmt.Sprintf("%s lacks address %s", ifname, a))
		}
	}
	return out
}
