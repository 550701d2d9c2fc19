package plan

import (
	"net/netip"
	"slices"
	"testing"
)

func via(dst, gw string) Route {
	r := Route{Dst: pfx(dst)}
	if gw != "" {
		r.Gateway = addr(gw)
	}
	return r
}

// TestBuildLinkRoutes: golden route lines for the routes a table carries
// through its link besides subnet and default (issue 12 items 2 and 4).
func TestBuildLinkRoutes(t *testing.T) {
	eth0 := func(addrs []string, gws ...string) Interface { return ifaceFromAddrs("eth0", 2, 10000, addrs, gws...) }
	tests := []struct {
		name         string
		ifc          Interface
		routes, main []Route
		rejects      []Route
		want         []string
		wantMirrored []string
	}{
		{
			name: "main route via another next hop is copied, mirrored",
			ifc:  eth0([]string{"10.0.1.10/24"}, "10.0.1.1"), main: []Route{via("10.100.0.0/16", "10.0.1.254")},
			want: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.10 table 10000",
				"route 10.100.0.0/16 via 10.0.1.254 dev #2 table 10000",
			},
			wantMirrored: []string{"route 10.100.0.0/16 via 10.0.1.254 dev #2 table 10000"},
		},
		{
			name: "prevResult route is copied and demanded by CHECK",
			ifc:  eth0([]string{"10.0.1.10/24"}, "10.0.1.1"), routes: []Route{via("10.100.0.0/16", "10.0.1.254")},
			want: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.10 table 10000",
				"route 10.100.0.0/16 via 10.0.1.254 dev #2 table 10000",
			},
		},
		{
			name:   "the same route from prevResult and main is one, not mirrored",
			ifc:    eth0([]string{"10.0.1.10/24"}, "10.0.1.1"),
			routes: []Route{via("10.100.0.0/16", "10.0.1.254")}, main: []Route{via("10.100.0.0/16", "10.0.1.254")},
			want: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.10 table 10000",
				"route 10.100.0.0/16 via 10.0.1.254 dev #2 table 10000",
			},
		},
		{
			name: "a route via the default gateway changes nothing: not copied",
			ifc:  eth0([]string{"10.0.1.10/24"}, "10.0.1.1"), main: []Route{via("203.0.113.0/24", "10.0.1.1")},
			want: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.10 table 10000",
			},
		},
		{
			name: "more specific route back to the default gateway under a copied one is copied too",
			ifc:  eth0([]string{"10.0.1.10/24"}, "10.0.1.1"),
			main: []Route{via("10.100.5.0/24", "10.0.1.1"), via("10.100.0.0/16", "10.0.1.254")},
			want: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.10 table 10000",
				"route 10.100.0.0/16 via 10.0.1.254 dev #2 table 10000",
				"route 10.100.5.0/24 via 10.0.1.1 dev #2 table 10000",
			},
			wantMirrored: []string{"route 10.100.0.0/16 via 10.0.1.254 dev #2 table 10000", "route 10.100.5.0/24 via 10.0.1.1 dev #2 table 10000"},
		},
		{
			name: "direct route is copied link-scoped; the subnet's own destination and other families are not",
			ifc:  eth0([]string{"10.0.1.10/24"}, "10.0.1.1"),
			main: []Route{via("10.200.0.0/16", ""), via("10.0.1.0/24", "10.0.1.9"), via("2001:db8:9::/48", "fe80::9")},
			want: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.10 table 10000",
				"route 10.200.0.0/16 dev #2 scope link table 10000",
			},
			wantMirrored: []string{"route 10.200.0.0/16 dev #2 scope link table 10000"},
		},
		{
			name:    "a route under a reject route is copied (the table would drop it)",
			ifc:     eth0([]string{"10.0.1.10/24"}, "10.0.1.1"),
			rejects: []Route{{Table: TableMain, Dst: pfx("10.50.0.0/16"), Type: Blackhole}},
			main:    []Route{via("10.50.1.0/24", "10.0.1.1")},
			want: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.10 table 10000",
				"route 10.50.1.0/24 via 10.0.1.1 dev #2 table 10000",
				"route blackhole 10.50.0.0/16 table 10000",
			},
			wantMirrored: []string{"route 10.50.1.0/24 via 10.0.1.1 dev #2 table 10000"},
		},
		{
			name:   "no gateway: a main route is left to main (the lookup falls through), a prevResult one is carried",
			ifc:    eth0([]string{"10.0.1.10/24"}),
			routes: []Route{via("10.100.0.0/16", "10.0.1.254")}, main: []Route{via("10.101.0.0/16", "10.0.1.253")},
			want: []string{
				"route 10.0.1.0/24 dev #2 scope link src 10.0.1.10 table 10000",
				"route 10.100.0.0/16 via 10.0.1.254 dev #2 table 10000",
			},
		},
		{
			name: "/32 with its gateway outside: the default route is onlink",
			ifc:  eth0([]string{"10.0.3.10/32"}, "10.0.3.1"),
			want: []string{
				"route 0.0.0.0/0 via 10.0.3.1 dev #2 onlink table 10000",
				"route 10.0.3.10/32 dev #2 scope link src 10.0.3.10 table 10000",
			},
		},
		{
			name: "/32 with a direct route to the gateway: no onlink needed",
			ifc:  eth0([]string{"10.0.3.10/32"}, "169.254.1.1"), main: []Route{via("169.254.1.1/32", "")},
			want: []string{
				"route 0.0.0.0/0 via 169.254.1.1 dev #2 table 10000",
				"route 10.0.3.10/32 dev #2 scope link src 10.0.3.10 table 10000",
				"route 169.254.1.1/32 dev #2 scope link table 10000",
			},
			wantMirrored: []string{"route 169.254.1.1/32 dev #2 scope link table 10000"},
		},
		{
			name:   "copied gateway route outside the subnets is onlink; IPv6 link-local gateways never are",
			ifc:    eth0([]string{"10.0.3.10/32", "2001:db8::5/128"}, "10.0.3.1", "fe80::1"),
			routes: []Route{via("10.100.0.0/16", "10.0.3.254")},
			want: []string{
				"route 0.0.0.0/0 via 10.0.3.1 dev #2 onlink table 10000",
				"route 10.0.3.10/32 dev #2 scope link src 10.0.3.10 table 10000",
				"route 10.100.0.0/16 via 10.0.3.254 dev #2 onlink table 10000",
				"route 2001:db8::5/128 dev #2 table 10000",
				"route ::/0 via fe80::1 dev #2 table 10000",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ifc := tc.ifc
			ifc.Routes, ifc.MainRoutes = tc.routes, tc.main
			p, err := Build([]Interface{ifc}, tc.rejects)
			if err != nil {
				t.Fatal(err)
			}
			if got := strs(p.Routes); !slices.Equal(got, tc.want) {
				t.Fatalf("routes:\n got %q\nwant %q", got, tc.want)
			}
			if got := strs(p.Mirrored); !slices.Equal(got, sorted(tc.wantMirrored)) {
				t.Fatalf("mirrored:\n got %q\nwant %q", got, tc.wantMirrored)
			}
		})
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	if out == nil {
		return []string{}
	}
	return out
}

// TestMissingSkipsMirrored: CHECK demands prevResult copies, not copies
// of main routes (main may have gained them after ADD).
func TestMissingSkipsMirrored(t *testing.T) {
	ifc := ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.10/24"}, "10.0.1.1")
	ifc.Routes = []Route{via("10.100.0.0/16", "10.0.1.254")}
	ifc.MainRoutes = []Route{via("10.101.0.0/16", "10.0.1.254")}
	p, err := Build([]Interface{ifc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := Missing(p, nil, nil)
	for _, m := range got {
		if m == "route 10.101.0.0/16 via 10.0.1.254 dev #2 table 10000" {
			t.Fatalf("CHECK demands a copy of a main route: %q", got)
		}
	}
	if !slices.Contains(got, "route 10.100.0.0/16 via 10.0.1.254 dev #2 table 10000") || len(got) != 4 {
		t.Fatalf("missing: %q", got)
	}
	if c := Compute(p, nil, nil); len(c.AddRoutes) != 4 {
		t.Fatalf("ADD must install the mirrored copy too: %q", strs(c.AddRoutes))
	}
}

func TestMainRoutesVia(t *testing.T) {
	r := func(dst, gw string, link, proto int) MainRoute {
		mr := MainRoute{Route: via(dst, gw), Protocol: proto}
		mr.Type, mr.LinkIndex, mr.Table = Unicast, link, TableMain
		return mr
	}
	onlink := r("10.101.0.0/16", "10.9.9.9", 2, 4)
	onlink.OnLink = true
	main := []MainRoute{
		r("10.100.0.0/16", "10.0.1.254", 2, 3), // boot: kept
		onlink,                                 // static, onlink kept
		r("10.0.1.0/24", "", 2, protoKernel),   // connected prefix
		r("2001:db8::/64", "", 2, protoRA),     // RA prefix
		r("0.0.0.0/0", "10.0.1.1", 2, 3),       // default: the gateway decision
		r("10.102.0.0/16", "10.0.2.254", 3, 4), // another link
		r("fe80::/64", "", 2, 3),               // link-local
		r("ff00::/8", "", 2, 3),                // multicast
		r("10.103.0.0/16", "10.0.1.254", 2, Protocol),
	}
	main = append(main, MainRoute{Route: Route{Dst: pfx("10.104.0.0/16"), Type: Blackhole, Table: TableMain}, Protocol: 4})
	got := strs(MainRoutesVia(main, 2))
	want := []string{"route 10.100.0.0/16 via 10.0.1.254 table 0", "route 10.101.0.0/16 via 10.9.9.9 onlink table 0"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestRouteOwner(t *testing.T) {
	two := [][]netip.Prefix{{pfx("10.0.1.10/24")}, {pfx("10.0.2.10/24"), pfx("2001:db8::5/64")}}
	tests := []struct {
		name  string
		r     Route
		addrs [][]netip.Prefix
		want  int
	}{
		{"sole interface takes its default route", via("0.0.0.0/0", "10.0.3.1"), [][]netip.Prefix{{pfx("10.0.3.10/32")}}, 0},
		{"sole interface: a route via a gateway outside its prefixes is unplaced", via("10.100.0.0/16", "10.0.1.254"), [][]netip.Prefix{{pfx("10.0.2.10/24")}}, -1},
		{"sole interface: a route via a gateway inside", via("10.100.0.0/16", "10.0.2.254"), [][]netip.Prefix{{pfx("10.0.2.10/24")}}, 0},
		{"sole interface takes a gateway-less route", via("10.200.0.0/16", ""), [][]netip.Prefix{{pfx("10.0.3.10/32")}}, 0},
		{"gateway in the second interface's subnet", via("0.0.0.0/0", "10.0.2.1"), two, 1},
		{"gateway in the first's", via("10.100.0.0/16", "10.0.1.254"), two, 0},
		{"ipv6 gateway by prefix", via("::/0", "2001:db8::1"), two, 1},
		{"link-local gateway among several: unplaced", via("::/0", "fe80::1"), two, -1},
		{"gateway-less among several: unplaced", via("10.200.0.0/16", ""), two, -1},
		{"gateway in both: unplaced", via("0.0.0.0/0", "10.0.1.1"), [][]netip.Prefix{{pfx("10.0.1.10/24")}, {pfx("10.0.1.20/24")}}, -1},
		{"gateway in neither: unplaced", via("0.0.0.0/0", "10.9.0.1"), two, -1},
	}
	for _, tc := range tests {
		if got := RouteOwner(tc.r, tc.addrs); got != tc.want {
			t.Errorf("%s: got %d want %d", tc.name, got, tc.want)
		}
	}
}
