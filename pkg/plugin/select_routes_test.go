package plugin

import (
	"fmt"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
)

// TestSelectGatewayFromRoutes: prevResult routes give the gateway when
// ips[].gateway is absent, and the other routes through the interface, each
// placed on the interface whose addresses hold its gateway (issue 12 item 1).
func TestSelectGatewayFromRoutes(t *testing.T) {
	const ns = "/var/run/netns/task"
	two := `"interfaces":[{"name":"eth0","sandbox":"` + ns + `"},{"name":"eth1","sandbox":"` + ns + `"}],
		"ips":[{"address":"10.0.1.10/24","interface":0},{"address":"10.0.2.10/24","interface":1}]`
	tests := []struct {
		name    string
		prev    string
		wantGWs [][]string
		wantRts [][]string
	}{
		{
			name: "sole /32 interface: the default route's gateway; a gateway-less route carried, one via a gateway outside its prefix not",
			prev: `"interfaces":[{"name":"eth0","sandbox":"` + ns + `"}],"ips":[{"address":"10.0.3.10/32"}],
				"routes":[{"dst":"0.0.0.0/0","gw":"10.0.3.1"},{"dst":"10.100.0.0/16","gw":"10.0.3.254"},{"dst":"10.200.0.0/16"},{"dst":"::/0","gw":"fe80::1"}]`,
			wantGWs: [][]string{{"10.0.3.1", "fe80::1"}},
			wantRts: [][]string{{"route 10.200.0.0/16 table 0"}},
		},
		{
			name:    "two interfaces: each default placed by its gateway's subnet",
			prev:    two + `,"routes":[{"dst":"0.0.0.0/0","gw":"10.0.2.1"},{"dst":"10.100.0.0/16","gw":"10.0.1.254"},{"dst":"10.200.0.0/16"}]`,
			wantGWs: [][]string{nil, {"10.0.2.1"}},
			wantRts: [][]string{{"route 10.100.0.0/16 via 10.0.1.254 table 0"}, nil},
		},
		{
			name: "ips gateway wins over a route's; other tables and bad gateways ignored",
			prev: `"interfaces":[{"name":"eth0","sandbox":"` + ns + `"}],"ips":[{"address":"10.0.1.10/24","gateway":"10.0.1.1"}],
				"routes":[{"dst":"0.0.0.0/0","gw":"10.0.1.9"},{"dst":"10.7.0.0/16","gw":"10.0.1.7","table":100},{"dst":"10.8.0.0/16","gw":"fe80::8"},{"dst":"0.0.0.0/0"}]`,
			wantGWs: [][]string{{"10.0.1.1"}},
			wantRts: [][]string{nil},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"n","type":"ec2-policy-routes","prevResult":{"cniVersion":"1.1.0",%s}}`, tc.prev)))
			if err != nil {
				t.Fatal(err)
			}
			sel, err := selectInterfaces(cfg, &skel.CmdArgs{Netns: ns, IfName: "eth0"})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range sel {
				var gws, rts []string
				for _, g := range s.gateways {
					gws = append(gws, g.String())
				}
				for _, r := range s.routes {
					rts = append(rts, r.String())
				}
				if !slices.Equal(gws, tc.wantGWs[i]) || !slices.Equal(rts, tc.wantRts[i]) {
					t.Errorf("%s: gateways %q routes %q, want %q %q", s.name, gws, rts, tc.wantGWs[i], tc.wantRts[i])
				}
			}
		})
	}
}
