package plugin

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

var fuzzVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// prevResultSeeds start FuzzPrevResult besides the checked-in corpus.
var prevResultSeeds = []struct {
	prev, netns, ifname, narrow string
	ver                         uint8
}{
	{`{"cniVersion":"1.0.0","interfaces":[{"name":"veth1","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","sandbox":"/var/run/netns/task"},{"name":"eth1","sandbox":"/var/run/netns/task"}],` +
		`"ips":[{"address":"10.0.0.5/24","gateway":"10.0.0.1","interface":1},{"address":"2001:db8::5/64","gateway":"2001:db8::1","interface":1},{"address":"10.0.1.5/24","interface":2}]}`, fuzzNetns, "eth0", "", 3},
	{`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/task/"}],"ips":[{"address":"10.0.0.5/32"},{"address":"::ffff:10.0.0.6/120","gateway":"::ffff:10.0.0.1"}]}`, fuzzNetns, "eth0", "eth0", 4},
	{`{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/task"}],"ips":[{"version":"4","address":"10.0.0.5/24","gateway":"10.0.0.1","interface":0},{"version":"4","address":"10.0.0.9/24","gateway":"10.0.0.254","interface":0}]}`, fuzzNetns, "eth0", "", 2},
	{`{"cniVersion":"0.3.0","interfaces":[{"name":"eth0","sandbox":"/proc/1/ns/net"}],"ips":[{"version":"4","address":"10.0.0.5/24"}]}`, fuzzNetns, "eth0", "", 0},
	{`{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/task"},{"name":"eth0","sandbox":"/var/run/netns/task"}],"ips":[{"address":"fe80::1/64","interface":0},{"address":"0.0.0.0/0","interface":1}]}`, fuzzNetns, "eth0", "", 4},
	{`{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.5/24","interface":0}]}`, fuzzNetns, "eth0", "", 3},
	{`{}`, "", "", "", 1},
}

const fuzzNetns = "/var/run/netns/task"

// FuzzPrevResult drives prevResult handling the way ADD does, minus the
// kernel: parse (config.Parse), select the interfaces of CNI_NETNS
// (selectInterfaces, delNames), turn their addresses and gateways into plan
// input, allocate tables and build the plan, convert the prevResult back to
// the request's version (what ADD prints). Nothing may panic; every error is
// a *types.Error with a CNI code, never 999; every plan that is built is
// consistent and idempotent. Seed corpus: testdata/fuzz/FuzzPrevResult.
func FuzzPrevResult(f *testing.F) {
	for _, s := range prevResultSeeds {
		f.Add([]byte(s.prev), s.netns, s.ifname, s.narrow, s.ver)
	}
	f.Fuzz(func(t *testing.T, prev []byte, netns, ifname, narrow string, ver uint8) {
		version := fuzzVersions[int(ver)%len(fuzzVersions)]
		var stdin strings.Builder
		stdin.WriteString(`{"cniVersion":"` + version + `","name":"n","type":"ec2-policy-routes","imds":{"enabled":false}`)
		if narrow != "" {
			stdin.WriteString(`,"interfaces":[` + quote(narrow) + `]`)
		}
		stdin.WriteString(`,"prevResult":`)
		stdin.Write(prev)
		stdin.WriteString(`}`)
		cfg, err := config.Parse([]byte(stdin.String()))
		if err != nil {
			mustCNIError(t, err, types.ErrDecodingFailure, types.ErrInvalidNetworkConfig)
			return
		}
		args := &skel.CmdArgs{ContainerID: "c", Netns: netns, IfName: ifname, StdinData: []byte(stdin.String())}
		_ = delNames(cfg, args) // DEL's fallback path must not panic either
		sel, err := selectInterfaces(cfg, args)
		if err != nil {
			mustCNIError(t, err, types.ErrInvalidNetworkConfig, types.ErrInvalidEnvironmentVariables)
			return
		}
		if len(sel) == 0 {
			t.Fatal("no interface selected and no error")
		}
		if cfg.PrevResult != nil {
			// ADD prints the prevResult back in the request's version.
			_, _ = cfg.PrevResult.GetAsVersion(cfg.CNIVersion)
		}
		used := map[int]bool{}
		var ifaces []plan.Interface
		for i, s := range sel {
			if err := config.ValidateIfName(s.name); err != nil {
				t.Fatalf("selected interface name %q: %v", s.name, err)
			}
			if cfg.PrevResult != nil {
				if s.ifIndex < 0 || s.ifIndex >= len(cfg.PrevResult.Interfaces) {
					t.Fatalf("ifIndex %d out of range", s.ifIndex)
				}
				if ifc := cfg.PrevResult.Interfaces[s.ifIndex]; !sameNetnsPath(ifc.Sandbox, netns) || ifc.Name != s.name {
					t.Fatalf("selected %q (sandbox %q) for CNI_NETNS %q", ifc.Name, ifc.Sandbox, netns)
				}
			}
			fams := map[plan.Family]bool{}
			for _, g := range s.gateways {
				if !g.IsValid() || g.Is4In6() || fams[plan.FamilyOf(g)] {
					t.Fatalf("gateways %v: invalid, mapped or two of a family", s.gateways)
				}
				fams[plan.FamilyOf(g)] = true
			}
			gws := s.gateways
			for _, g := range cfg.Gateways {
				gws = replaceGateway(gws, g)
			}
			table, err := plan.AllocateTable(cfg.TableBase, 0, used)
			if err != nil {
				t.Fatalf("allocate table: %v", err)
			}
			used[table] = true
			ifc := plan.Interface{Name: s.name, Index: i + 1, Table: table, Priority: cfg.Priority, Gateways: gws}
			if ifc.Priority == 0 {
				ifc.Priority = table
			}
			ifc.Sources, ifc.Subnets = plan.AddressFacts(s.addrs)
			ifaces = append(ifaces, ifc)
		}
		rejects := []plan.Route{
			{Table: plan.TableMain, Dst: netip.MustParsePrefix("169.254.169.254/32"), Type: plan.Blackhole},
			{Table: plan.TableMain, Dst: netip.MustParsePrefix("fd00:ec2::254/128"), Type: plan.Blackhole},
		}
		want, err := plan.Build(ifaces, rejects)
		if err != nil {
			t.Fatalf("plan.Build rejected what selection produced: %v", err)
		}
		checkPlan(t, want, ifaces)
	})
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func mustCNIError(t *testing.T, err error, codes ...uint) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("error is %T, not *types.Error: %v", err, err)
	}
	for _, c := range codes {
		if te.Code == c && te.Msg != "" {
			return
		}
	}
	t.Fatalf("code %d (%q), want one of %v", te.Code, te.Msg, codes)
}

// checkPlan: the plan uses only the allocated tables and the interfaces'
// links, each route's gateway is of its destination's family, and applying
// it to itself changes nothing (a retried ADD converges).
func checkPlan(t *testing.T, want plan.Plan, ifaces []plan.Interface) {
	t.Helper()
	tables := map[int]int{}
	for _, ifc := range ifaces {
		tables[ifc.Table] = ifc.Index
	}
	for _, r := range want.Rules {
		if _, ok := tables[r.Table]; !ok || !r.Src.IsValid() || plan.ValidatePriority(r.Priority) != nil {
			t.Fatalf("bad rule %s", r)
		}
	}
	for _, r := range want.Routes {
		idx, ok := tables[r.Table]
		if !ok || !r.Dst.IsValid() {
			t.Fatalf("bad route %s", r)
		}
		if r.Type == plan.Unicast && r.LinkIndex != idx {
			t.Fatalf("route %s not through its interface #%d", r, idx)
		}
		if r.Gateway.IsValid() && plan.FamilyOf(r.Gateway) != r.Family() {
			t.Fatalf("route %s: gateway of the other family", r)
		}
	}
	if d := plan.Compute(want, nil, nil); len(d.AddRules) != len(want.Rules) || len(d.AddRoutes) != len(want.Routes) {
		t.Fatalf("diff from nothing does not add the whole plan")
	}
	if d := plan.Compute(want, want.Rules, want.Routes); !d.Empty() {
		t.Fatalf("plan is not a fixed point: %+v", d)
	}
	if m := plan.Missing(want, want.Rules, want.Routes); len(m) != 0 {
		t.Fatalf("Missing reports %v for a complete state", m)
	}
}

// TestWriteFuzzSeeds regenerates the named seeds of the checked-in corpus
// (testdata/fuzz/FuzzPrevResult):
// EC2PR_WRITE_SEEDS=1 go test -run TestWriteFuzzSeeds ./pkg/plugin
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("EC2PR_WRITE_SEEDS") == "" {
		t.Skip("set EC2PR_WRITE_SEEDS=1 to regenerate testdata/fuzz/FuzzPrevResult")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzPrevResult")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range prevResultSeeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nstring(%s)\nstring(%s)\nstring(%s)\nbyte(%s)\n",
			strconv.Quote(s.prev), strconv.Quote(s.netns), strconv.Quote(s.ifname), strconv.Quote(s.narrow), strconv.QuoteRune(rune(s.ver)))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
