package plugin

import (
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testENI adds an up veth named name (peer: peer, MAC mac unless empty)
// addressed cidr inside the test namespace: what an ENI plugin leaves.
func testENI(t *testing.T, nl *netlink.Handle, name, peer, mac, cidr string) netlink.Link {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			t.Fatal(err)
		}
		la.HardwareAddr = hw
	}
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
		t.Fatal(err)
	}
	link, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	return link
}

// netnsPath names the test namespace as CNI_NETNS through this process's fd.
func netnsPath(nsh netns.NsHandle) string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(nsh))
}
