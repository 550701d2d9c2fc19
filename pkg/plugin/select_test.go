package plugin

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
)

func TestSelectInterfaces(t *testing.T) {
	const ns = "/var/run/netns/task"
	prev := `"prevResult":{"cniVersion":"1.0.0",
		"interfaces":[{"name":"veth1","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","sandbox":"/var/run/netns/task"},{"name":"eth1","sandbox":"/var/run/netns/task"},{"name":"eth2","sandbox":"/var/run/netns/other"}],
		"ips":[{"address":"10.0.0.5/24","gateway":"10.0.0.1","interface":1},{"address":"2001:db8::5/64","gateway":"2001:db8::1","interface":1},{"address":"10.0.1.5/24","interface":2},{"address":"10.0.2.5/24","interface":3}]}`
	tests := []struct {
		name      string
		conf      string
		ifname    string
		wantNames []string
		wantAddrs [][]string
		wantGWs   [][]string
		wantCode  uint
	}{
		{name: "standalone uses CNI_IFNAME", conf: `{}`, ifname: "eth0", wantNames: []string{"eth0"}, wantAddrs: [][]string{nil}, wantGWs: [][]string{nil}},
		{name: "standalone with interfaces", conf: `{"interfaces":["eth1","eth2"]}`, ifname: "eth0", wantNames: []string{"eth1", "eth2"}, wantAddrs: [][]string{nil, nil}, wantGWs: [][]string{nil, nil}},
		{name: "standalone bad CNI_IFNAME", conf: `{}`, ifname: "a/b", wantCode: types.ErrInvalidEnvironmentVariables},
		{
			name: "chained: sandbox interfaces only, ips by index", conf: `{` + prev + `}`, ifname: "eth0",
			wantNames: []string{"eth0", "eth1"},
			wantAddrs: [][]string{{"10.0.0.5/24", "2001:db8::5/64"}, {"10.0.1.5/24"}},
			wantGWs:   [][]string{{"10.0.0.1", "2001:db8::1"}, nil},
		},
		{
			name: "chained narrowed by interfaces", conf: `{"interfaces":["eth1"],` + prev + `}`, ifname: "eth0",
			wantNames: []string{"eth1"}, wantAddrs: [][]string{{"10.0.1.5/24"}}, wantGWs: [][]string{nil},
		},
		{name: "chained: nothing in this netns", conf: `{"interfaces":["eth9"],` + prev + `}`, ifname: "eth0", wantCode: types.ErrInvalidNetworkConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdin := []byte(`{"cniVersion":"1.0.0","name":"n","type":"ec2-policy-routes"` + strings.Replace(tc.conf, "{", ",", 1))
			stdin = []byte(strings.Replace(string(stdin), ",}", "}", 1))
			cfg, err := config.Parse(stdin)
			if err != nil {
				t.Fatal(err)
			}
			sel, err := selectInterfaces(cfg, &skel.CmdArgs{Netns: ns, IfName: tc.ifname})
			if tc.wantCode != 0 {
				var te *types.Error
				if !errors.As(err, &te) || te.Code != tc.wantCode {
					t.Fatalf("want code %d, got %v", tc.wantCode, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for i, s := range sel {
				names = append(names, s.name)
				var addrs, gws []string
				for _, a := range s.addrs {
					addrs = append(addrs, a.String())
				}
				for _, g := range s.gateways {
					gws = append(gws, g.String())
				}
				if !slices.Equal(addrs, tc.wantAddrs[i]) || !slices.Equal(gws, tc.wantGWs[i]) {
					t.Fatalf("%s: addrs %v gws %v, want %v %v", s.name, addrs, gws, tc.wantAddrs[i], tc.wantGWs[i])
				}
			}
			if !slices.Equal(names, tc.wantNames) {
				t.Fatalf("names %v, want %v", names, tc.wantNames)
			}
		})
	}
}

// TestSameNetnsPath: prevResult's sandbox and CNI_NETNS may spell the same
// namespace differently (/var/run is a symlink to /run on most hosts).
func TestSameNetnsPath(t *testing.T) {
	dir := t.TempDir()
	a := dir + "/ns"
	if err := os.WriteFile(a, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(a, dir+"/alias"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/other", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{a, a, true},
		{a, a + "/", true},
		{a, dir + "/alias", true},
		{a, dir + "/other", false},
		{a, dir + "/missing", false},
		{"/var/run/netns/x", "/run/netns/y", false},
	} {
		if got := sameNetnsPath(tc.a, tc.b); got != tc.want {
			t.Errorf("sameNetnsPath(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
