package plan

import (
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func strs[T interface{ String() string }](in []T) []string {
	out := make([]string, 0, len(in))
	for _, x := range in {
		out = append(out, x.String())
	}
	sort.Strings(out)
	return out
}

func ifaceFromAddrs(name string, index, table int, addrs []string, gws ...string) Interface {
	var ps []netip.Prefix
	for _, a := range addrs {
		ps = append(ps, pfx(a))
	}
	src, sub := AddressFacts(ps)
	ifc := Interface{Name: name, Index: index, Table: table, Priority: table, Sources: src, Subnets: sub}
	for _, g := range gws {
		ifc.Gateways = append(ifc.Gateways, addr(g))
	}
	return ifc
}

func TestBuild(t *testing.T) {
	blackholeIMDS := Route{Table: TableMain, Dst: pfx("169.254.169.254/32"), Type: Blackhole}
	blackholeIMDS6 := Route{Table: TableMain, Dst: pfx("fd00:ec2::254/128"), Type: Blackhole}
	tests := []struct {
		name       string
		ifaces     []Interface
		rejects    []Route
		wantRules  []string
		wantRoutes []string
	}{
		{
			name:      "ipv4 single address",
			ifaces:    []Interface{ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.5/24"}, "10.0.1.1")},
			wantRules: []string{"rule from 10.0.1.5/32 lookup 10000 priority 10000"},
			wantRoutes: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.5 table 10000",
			},
		},
		{
			name:      "ipv6 only, link-local gateway, no src on the on-link route",
			ifaces:    []Interface{ifaceFromAddrs("eth0", 3, 10001, []string{"2001:db8::5/64"}, "fe80::1")},
			wantRules: []string{"rule from 2001:db8::5/128 lookup 10001 priority 10001"},
			wantRoutes: []string{
				"route ::/0 via fe80::1 dev #3 table 10001",
				"route 2001:db8::/64 dev #3 table 10001",
			},
		},
		{
			name:    "dual stack with reject routes of both families",
			ifaces:  []Interface{ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.5/24", "2001:db8::5/64"}, "10.0.1.1", "2001:db8::1")},
			rejects: []Route{blackholeIMDS, blackholeIMDS6},
			wantRules: []string{
				"rule from 10.0.1.5/32 lookup 10000 priority 10000",
				"rule from 2001:db8::5/128 lookup 10000 priority 10000",
			},
			wantRoutes: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.5 table 10000",
				"route ::/0 via 2001:db8::1 dev #2 table 10000",
				"route 2001:db8::/64 dev #2 table 10000",
				"route blackhole 169.254.169.254/32 table 10000",
				"route blackhole fd00:ec2::254/128 table 10000",
			},
		},
		{
			name:      "reject routes only for families the interface has",
			ifaces:    []Interface{ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.5/24"})},
			rejects:   []Route{blackholeIMDS, blackholeIMDS6, {Table: TableMain, Dst: pfx("0.0.0.0/0"), Type: Unicast}},
			wantRules: []string{"rule from 10.0.1.5/32 lookup 10000 priority 10000"},
			wantRoutes: []string{
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.5 table 10000",
				"route blackhole 169.254.169.254/32 table 10000",
			},
		},
		{
			name: "multiple addresses in one subnet share one on-link route",
			ifaces: []Interface{ifaceFromAddrs("eth0", 2, 10000,
				[]string{"10.0.1.5/24", "10.0.1.6/24", "10.0.1.5/24"}, "10.0.1.1")},
			wantRules: []string{
				"rule from 10.0.1.5/32 lookup 10000 priority 10000",
				"rule from 10.0.1.6/32 lookup 10000 priority 10000",
			},
			wantRoutes: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.5 table 10000",
			},
		},
		{
			name:      "host address gets an on-link host route",
			ifaces:    []Interface{ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.5/32"})},
			wantRules: []string{"rule from 10.0.1.5/32 lookup 10000 priority 10000"},
			wantRoutes: []string{
				"route 10.0.1.5/32 dev #2 scope link src 10.0.1.5 table 10000",
			},
		},
		{
			name: "two interfaces, two tables",
			ifaces: []Interface{
				ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.5/24"}, "10.0.1.1"),
				ifaceFromAddrs("eth1", 3, 10001, []string{"10.0.2.5/24"}, "10.0.2.1"),
			},
			wantRules: []string{
				"rule from 10.0.1.5/32 lookup 10000 priority 10000",
				"rule from 10.0.2.5/32 lookup 10001 priority 10001",
			},
			wantRoutes: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 0.0.0.0/0 via 10.0.2.1 dev #3 table 10001",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.5 table 10000",
				"route 10.0.2.0/24 dev #3 scope link src 10.0.2.5 table 10001",
			},
		},
		{
			name: "delegated prefix is one rule, unmasked input is masked",
			ifaces: []Interface{{Name: "eth0", Index: 2, Table: 10000, Priority: 9000,
				Sources: []netip.Prefix{pfx("10.0.1.5/32"), pfx("10.0.9.7/28")},
				Subnets: []Subnet{{Prefix: pfx("10.0.1.99/24"), Src: addr("10.0.1.5")}}}},
			wantRules: []string{
				"rule from 10.0.1.5/32 lookup 10000 priority 9000",
				"rule from 10.0.9.0/28 lookup 10000 priority 9000",
			},
			wantRoutes: []string{"route 10.0.1.0/24 dev #2 scope link src 10.0.1.5 table 10000"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Build(tc.ifaces, tc.rejects)
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(tc.wantRules)
			sort.Strings(tc.wantRoutes)
			if got := strs(p.Rules); !slices.Equal(got, tc.wantRules) {
				t.Errorf("rules\n got %q\nwant %q", got, tc.wantRules)
			}
			if got := strs(p.Routes); !slices.Equal(got, tc.wantRoutes) {
				t.Errorf("routes\n got %q\nwant %q", got, tc.wantRoutes)
			}
		})
	}
}

func TestBuildRejects(t *testing.T) {
	base := ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.5/24"}, "10.0.1.1")
	tests := []struct {
		name string
		mod  func(*Interface)
		want string
	}{
		{"main table", func(i *Interface) { i.Table = TableMain }, "reserved"},
		{"local table", func(i *Interface) { i.Table = TableLocal }, "reserved"},
		{"default table", func(i *Interface) { i.Table = TableDefault }, "reserved"},
		{"table 0", func(i *Interface) { i.Table = 0 }, "reserved"},
		{"negative table", func(i *Interface) { i.Table = -4 }, "out of range"},
		{"priority 0", func(i *Interface) { i.Priority = 0 }, "kernel default rule"},
		{"priority main", func(i *Interface) { i.Priority = PriorityMain }, "kernel default rule"},
		{"priority default", func(i *Interface) { i.Priority = PriorityDefault }, "kernel default rule"},
		{"no link index", func(i *Interface) { i.Index = 0 }, "no link index"},
		{"two ipv4 gateways", func(i *Interface) { i.Gateways = append(i.Gateways, addr("10.0.1.2")) }, "more than one ipv4 gateway"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ifc := base
			ifc.Gateways = slices.Clone(base.Gateways)
			tc.mod(&ifc)
			_, err := Build([]Interface{ifc}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestAllocateTable(t *testing.T) {
	tests := []struct {
		name     string
		base     int
		existing int
		used     []int
		want     int
		wantErr  bool
	}{
		{"empty namespace", 10000, 0, nil, 10000, false},
		{"retried ADD keeps its table", 10000, 10003, []int{10000, 10003}, 10003, false},
		{"skips used tables, ours or foreign", 10000, 0, []int{10000, 10001, 10003}, 10002, false},
		{"skips reserved tables", 252, 0, nil, 256, false},
		{"exhausted", 10000, 0, rangeInts(10000, 10000+maxTableProbe), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			used := map[int]bool{}
			for _, u := range tc.used {
				used[u] = true
			}
			got, err := AllocateTable(tc.base, tc.existing, used)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("AllocateTable = %d, %v; want %d (err %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func rangeInts(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestCompute(t *testing.T) {
	r1 := Rule{Src: pfx("10.0.1.5/32"), Table: 10000, Priority: 10000}
	r2 := Rule{Src: pfx("10.0.1.6/32"), Table: 10000, Priority: 10000}
	stale := Rule{Src: pfx("10.0.1.7/32"), Table: 10000, Priority: 10000}
	rt1 := Route{Table: 10000, Dst: pfx("0.0.0.0/0"), Type: Unicast, LinkIndex: 2, Gateway: addr("10.0.1.1")}
	rtOld := Route{Table: 10000, Dst: pfx("0.0.0.0/0"), Type: Unicast, LinkIndex: 2, Gateway: addr("10.0.1.254")}
	want := Plan{Rules: []Rule{r1, r2}, Routes: []Route{rt1}}

	tests := []struct {
		name                           string
		haveRules                      []Rule
		haveRoutes                     []Route
		addRules, delRules, addRoutes  int
		delRoutes, presRules, presRout int
	}{
		{"nothing yet", nil, nil, 2, 0, 1, 0, 0, 0},
		{"converged", []Rule{r1, r2}, []Route{rt1}, 0, 0, 0, 0, 2, 1},
		{"partial (killed mid-apply)", nil, []Route{rt1}, 2, 0, 0, 0, 0, 1},
		{"stale objects of ours go", []Rule{r1, stale}, []Route{rtOld}, 1, 1, 1, 1, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Compute(want, tc.haveRules, tc.haveRoutes)
			got := []int{len(d.AddRules), len(d.DelRules), len(d.AddRoutes), len(d.DelRoutes), len(want.Rules) - len(d.AddRules), len(want.Routes) - len(d.AddRoutes)}
			exp := []int{tc.addRules, tc.delRules, tc.addRoutes, tc.delRoutes, tc.presRules, tc.presRout}
			if !slices.Equal(got, exp) {
				t.Fatalf("diff counts %v, want %v (%+v)", got, exp, d)
			}
		})
	}
	if m := Missing(want, []Rule{r1}, nil); len(m) != 2 || !strings.Contains(strings.Join(m, ";"), "10.0.1.6") {
		t.Fatalf("Missing should name each absent object: %q", m)
	}
}

func TestPlanTables(t *testing.T) {
	p := Plan{
		Rules:  []Rule{{Src: pfx("10.0.0.1/32"), Table: 10001, Priority: 1}},
		Routes: []Route{{Table: 10000, Dst: pfx("0.0.0.0/0")}, {Table: 10001, Dst: pfx("0.0.0.0/0")}},
	}
	if got := p.Tables(); !slices.Equal(got, []int{10000, 10001}) {
		t.Fatalf("Tables() = %v", got)
	}
}

// Only blackhole, unreachable and prohibit routes of main are copied: any
// other non-unicast type there (an AnyIP "local" route, throw, multicast)
// is not a block to carry, and a local route copied without its device is
// refused by the kernel, failing ADD.
func TestBuildCopiesOnlyRejectTypes(t *testing.T) {
	ifc := ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.5/24"})
	rejects := []Route{
		{Table: TableMain, Dst: pfx("10.7.1.0/24"), Type: Blackhole},
		{Table: TableMain, Dst: pfx("10.7.2.0/24"), Type: Unreachable},
		{Table: TableMain, Dst: pfx("10.7.3.0/24"), Type: Prohibit},
		{Table: TableMain, Dst: pfx("10.9.0.0/24"), Type: 2}, // RTN_LOCAL
		{Table: TableMain, Dst: pfx("224.0.0.0/4"), Type: 5}, // RTN_MULTICAST
		{Table: TableMain, Dst: pfx("10.8.0.0/16"), Type: 9}, // RTN_THROW
	}
	p, err := Build([]Interface{ifc}, rejects)
	if err != nil {
		t.Fatal(err)
	}
	got := strs(p.Routes)
	want := []string{
		"route 10.0.1.0/24 dev #2 scope link src 10.0.1.5 table 10000",
		"route blackhole 10.7.1.0/24 table 10000",
		"route prohibit 10.7.3.0/24 table 10000",
		"route unreachable 10.7.2.0/24 table 10000",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("routes:\n got %q\nwant %q", got, want)
	}
}

// A reject copy keeps the metric of the main route it duplicates, so a
// fallback "unreachable default metric N" ranks below the table's default
// route instead of colliding with it at metric 0.
func TestBuildKeepsRejectMetric(t *testing.T) {
	ifc := ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.5/24"}, "10.0.1.1")
	rejects := []Route{{Table: TableMain, Dst: pfx("0.0.0.0/0"), Type: Unreachable, Metric: 4278198272}}
	p, err := Build([]Interface{ifc}, rejects)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
		"route 10.0.1.0/24 dev #2 scope link src 10.0.1.5 table 10000",
		"route unreachable 0.0.0.0/0 metric 4278198272 table 10000",
	}
	if got := strs(p.Routes); !slices.Equal(got, want) {
		t.Fatalf("routes:\n got %q\nwant %q", got, want)
	}
}
