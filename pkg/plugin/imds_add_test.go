package plugin

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
	"github.com/ec2-policy-routes/ec2-policy-routes/internal/netnstest"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// An in-process ADD against an IMDS that accepts connections and never
// answers: it ends within imds.timeout + 100 ms with code 11, and nothing
// (rule, route, altname, ownership record) is installed. Needs root for the
// namespace; skips otherwise.
func TestAddAgainstHangingIMDS(t *testing.T) {
	nsh, nl := netnstest.New(t)
	testENI(t, nl, "eth0", "peer0", mdENI1, "10.0.1.25/24")

	f := mdFake()
	f.SetHang(true)
	url := imdsfake.Start(t, f)
	stateDir := t.TempDir()
	p := &Plugin{Metadata: NewIMDSMetadata(), StateDir: stateDir}
	const timeout = 500 * time.Millisecond
	stdin := fmt.Sprintf(`{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","imds":{"endpoint":%q,"timeout":%q}}`, url, timeout)
	args := &skel.CmdArgs{ContainerID: "c", IfName: "eth0", StdinData: []byte(stdin),
		Netns: netnsPath(nsh)}
	t0 := time.Now()
	err := p.Add(args)
	el := time.Since(t0)
	wantCode(t, err, types.ErrTryAgainLater, "nothing was installed", url)
	if el > timeout+100*time.Millisecond {
		t.Errorf("ADD took %v with imds.timeout %v", el, timeout)
	}
	rules, err := nl.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if int(r.Protocol) == plan.Protocol {
			t.Errorf("rule installed: %v", r)
		}
	}
	routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0, Protocol: plan.Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil || len(routes) != 0 {
		t.Errorf("routes installed: %v %v", routes, err)
	}
	if l, _ := nl.LinkByName("eth0"); len(l.Attrs().AltNames) != 0 {
		t.Errorf("altnames added: %v", l.Attrs().AltNames)
	}
	if entries, _ := os.ReadDir(stateDir); len(entries) != 0 {
		t.Errorf("state written: %v", entries)
	}
}

// An IMDS table number that, as the default rule priority, would sit after
// the main rule (32766) is refused with code 7 before anything is installed:
// such rules would never match. Needs root; skips otherwise.
func TestAddRefusesTableAsPriorityAfterMain(t *testing.T) {
	nsh, nl := netnstest.New(t)
	testENI(t, nl, "eth0", "peer0", mdENI1, "10.0.1.25/24")
	// device-number 1 on card 1: table 32700 + 100 + 1 = 32801.
	f := imdsfake.New(mdPrimary, imdsfake.ENI{MAC: mdENI1, DeviceNumber: 1, NetworkCard: imdsfake.Card(1), LocalIPv4s: []string{"10.0.1.25"}})
	url := imdsfake.Start(t, f)
	p := &Plugin{Metadata: NewIMDSMetadata(), StateDir: t.TempDir()}
	stdin := fmt.Sprintf(`{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","tableBase":32700,"imds":{"endpoint":%q}}`, url)
	args := &skel.CmdArgs{ContainerID: "c", IfName: "eth0", StdinData: []byte(stdin),
		Netns: netnsPath(nsh)}
	wantCode(t, p.Add(args), types.ErrInvalidNetworkConfig, "table 32801", "set priority")
	routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0, Protocol: plan.Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil || len(routes) != 0 {
		t.Errorf("routes installed: %v %v", routes, err)
	}
}

// A table fixed by IMDS numbering that another link of the namespace already
// owns (configured with imds.enabled false) is refused with code 7, and the
// other link's routing is left intact. Needs root; skips otherwise.
func TestAddRefusesIMDSTableOwnedByAnotherLink(t *testing.T) {
	nsh, nl := netnstest.New(t)
	testENI(t, nl, "eth0", "peer0", "", "10.0.1.25/24")
	testENI(t, nl, "eth1", "peer1", mdENI1, "10.0.2.25/24")
	path := netnsPath(nsh)
	p := &Plugin{Metadata: NewIMDSMetadata(), StateDir: t.TempDir()}
	// eth0 without IMDS: allocated table 10001 (the lowest free from tableBase).
	noIMDS := `{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","tableBase":10001,"imds":{"enabled":false}}`
	if err := p.Add(&skel.CmdArgs{ContainerID: "c", IfName: "eth0", StdinData: []byte(noIMDS), Netns: path}); err != nil {
		t.Fatal(err)
	}
	ours := func() int {
		routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0, Protocol: plan.Protocol},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		return len(routes)
	}
	before := ours()
	// eth1 with IMDS: device-number 1 on card 0 is table 10000 + 1 = 10001.
	f := imdsfake.New(mdPrimary, imdsfake.ENI{MAC: mdENI1, DeviceNumber: 1, LocalIPv4s: []string{"10.0.2.25"}})
	url := imdsfake.Start(t, f)
	withIMDS := fmt.Sprintf(`{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","imds":{"endpoint":%q}}`, url)
	err := p.Add(&skel.CmdArgs{ContainerID: "c", IfName: "eth1", StdinData: []byte(withIMDS), Netns: path})
	wantCode(t, err, types.ErrInvalidNetworkConfig, "table 10001", "already holds")
	if after := ours(); after != before {
		t.Fatalf("eth0's routes changed: %d -> %d", before, after)
	}
}
