package plan

import (
	"net"
	"net/netip"
)

// The one conversion between the net package's address types (netlink,
// CNI results) and netip's (everything here).

// PrefixFromIPNet converts n, IPv4-mapped addresses unmapped; false when n
// is not an IPv4 or IPv6 prefix (nil IP, or a mask of another length).
func PrefixFromIPNet(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

// IPNet converts p back, keeping its host bits (an interface address).
func IPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
