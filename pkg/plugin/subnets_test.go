package plugin

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

func TestSubnetsFromMetadata(t *testing.T) {
	p := netip.MustParsePrefix
	addrs := []netip.Prefix{p("10.0.1.25/24"), p("2001:db8:1::25/64")}
	_, fromAddrs := plan.AddressFacts(addrs)
	tests := []struct {
		name string
		imds []netip.Prefix
		want []string
	}{
		{"both families from IMDS", []netip.Prefix{p("10.0.0.0/20"), p("2001:db8:1::/56")},
			[]string{"10.0.0.0/20 src 10.0.1.25", "2001:db8:1::/56"}},
		{"IPv6 subnet not propagated: the address's own /64 stays", []netip.Prefix{p("10.0.0.0/20")},
			[]string{"10.0.0.0/20 src 10.0.1.25", "2001:db8:1::/64"}},
		{"IPv4 subnet missing: the address's /24 stays", []netip.Prefix{p("2001:db8:1::/56")},
			[]string{"2001:db8:1::/56", "10.0.1.0/24 src 10.0.1.25"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, s := range subnetsFromMetadata(tc.imds, addrs, fromAddrs) {
				str := s.Prefix.String()
				if s.Src.IsValid() {
					str += " src " + s.Src.String()
				}
				got = append(got, str)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
