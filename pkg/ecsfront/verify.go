package ecsfront

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plugin"
)

// observed is what the kernel shows of CNI_IFNAME in CNI_NETNS after the
// upstream ADD.
type observed = plugin.LinkFacts

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
