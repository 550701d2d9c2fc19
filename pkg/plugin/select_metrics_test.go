package plugin

import (
	"fmt"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
)

// TestSelectRouteMetrics (issue 22.6): CNI 1.1 routes' mtu and advmss reach
// the interface's routes, and its default routes' metrics the table's
// default route (Defaults); priority, scope and other tables are not ours.
func TestSelectRouteMetrics(t *testing.T) {
	const ns = "/var/run/netns/task"
	prev := `"interfaces":[{"name":"eth0","sandbox":"` + ns + `"}],"ips":[{"address":"10.0.3.10/24","gateway":"10.0.3.1"}],
		"routes":[{"dst":"0.0.0.0/0","gw":"10.0.3.1","mtu":1500,"advmss":1460,"priority":100},
			{"dst":"10.100.0.0/16","gw":"10.0.3.254","mtu":1300,"scope":0},{"dst":"10.7.0.0/16","gw":"10.0.3.7","mtu":1200,"table":100}]`
	cfg, err := config.Parse([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"n","type":"ec2-policy-routes","prevResult":{"cniVersion":"1.1.0",%s}}`, prev)))
	if err != nil {
		t.Fatal(err)
	}
	sel, err := selectInterfaces(cfg, &skel.CmdArgs{Netns: ns, IfName: "eth0"})
	if err != nil || len(sel) != 1 {
		t.Fatalf("selectInterfaces = %v, %v", sel, err)
	}
	var rts, defs []string
	for _, r := range sel[0].routes {
		rts = append(rts, r.String())
	}
	for _, r := range sel[0].defaults {
		defs = append(defs, r.String())
	}
	if want := []string{"route 10.100.0.0/16 via 10.0.3.254 mtu 1300 table 0"}; !slices.Equal(rts, want) {
		t.Errorf("routes %q, want %q", rts, want)
	}
	if want := []string{"route 0.0.0.0/0 via 10.0.3.1 mtu 1500 advmss 1460 table 0"}; !slices.Equal(defs, want) {
		t.Errorf("defaults %q, want %q", defs, want)
	}
}
