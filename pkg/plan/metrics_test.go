package plan

import (
	"slices"
	"strings"
	"testing"
)

func mainRoute(dst, gw string, link int, m Metrics) MainRoute {
	r := via(dst, gw)
	r.Type, r.LinkIndex, r.Table, r.Metrics = Unicast, link, TableMain, m
	return MainRoute{Route: r, Protocol: 4}
}

// TestResolveCarriesMetrics (issue 22.6): main holds "default via 10.0.3.1
// dev eth0 mtu 1500 advmss 1460" and "10.100.0.0/16 via 10.0.3.254 dev eth0
// mtu 1300": the table's default route and its copy keep them.
func TestResolveCarriesMetrics(t *testing.T) {
	obs := Observed{Main: []MainRoute{
		mainRoute("0.0.0.0/0", "10.0.3.1", 2, Metrics{MTU: 1500, AdvMSS: 1460}),
		mainRoute("10.100.0.0/16", "10.0.3.254", 2, Metrics{MTU: 1300}),
		mainRoute("10.101.0.0/16", "10.0.3.254", 3, Metrics{MTU: 1200}), // another link
	}}
	ifc := ifaceFromAddrs("eth0", 2, 0, []string{"10.0.3.10/24"}, "10.0.3.1")
	res, err := Resolve(Settings{TableBase: DefaultTableBase}, []Candidate{{Interface: ifc}}, obs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"route 0.0.0.0/0 via 10.0.3.1 dev #2 mtu 1500 advmss 1460 table 10000",
		"route 10.0.3.0/24 dev #2 scope link src 10.0.3.10 table 10000",
		"route 10.100.0.0/16 via 10.0.3.254 dev #2 mtu 1300 table 10000",
	}
	if got := strs(res.Plan.Routes); !slices.Equal(got, want) {
		t.Fatalf("routes\n got %q\nwant %q", got, want)
	}
	// CHECK: the same facts verify against that plan as installed.
	missing, err := Verify(Settings{TableBase: DefaultTableBase}, []Checked{{Interface: ifc}},
		Observed{OursByLink: map[int]int{2: 10000}, Main: obs.Main, Rules: res.Plan.Rules, Routes: res.Plan.Routes})
	if err != nil || len(missing) != 0 {
		t.Fatalf("Verify = %q, %v", missing, err)
	}
}

// TestBuildMetrics: which metrics the table's routes take.
func TestBuildMetrics(t *testing.T) {
	m := func(mtu, advmss int) Metrics { return Metrics{MTU: mtu, AdvMSS: advmss} }
	def := func(gw string, mt Metrics) Route {
		dst := "0.0.0.0/0"
		if strings.Contains(gw, ":") {
			dst = "::/0"
		}
		r := via(dst, gw)
		r.Metrics = mt
		return r
	}
	copyOf := func(dst, gw string, mt Metrics) Route { r := via(dst, gw); r.Metrics = mt; return r }
	tests := []struct {
		name         string
		defaults     []Route
		routes, main []Route
		want         []string
	}{
		{
			name:     "default: the one via the table's gateway wins over the family's first",
			defaults: []Route{def("10.0.1.9", m(9000, 0)), def("10.0.1.1", m(1500, 1460))},
			want:     []string{"route 0.0.0.0/0 via 10.0.1.1 dev #2 mtu 1500 advmss 1460 table 10000"},
		},
		{
			name:     "default: another gateway's metrics when none is via the table's",
			defaults: []Route{def("2001:db8::1", m(1280, 0)), def("10.0.1.9", Metrics{MTU: 1400, MTULock: true, HopLimit: 9})},
			want:     []string{"route 0.0.0.0/0 via 10.0.1.1 dev #2 mtu lock 1400 hoplimit 9 table 10000"},
		},
		{
			name:     "default: prevResult's (listed first) wins over main's",
			defaults: []Route{def("10.0.1.1", m(1400, 0)), def("10.0.1.1", m(1500, 1460))},
			want:     []string{"route 0.0.0.0/0 via 10.0.1.1 dev #2 mtu 1400 table 10000"},
		},
		{
			name:   "prevResult copy keeps mtu and advmss",
			routes: []Route{copyOf("10.100.0.0/16", "10.0.1.254", m(1300, 1260))},
			want: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 10.100.0.0/16 via 10.0.1.254 dev #2 mtu 1300 advmss 1260 table 10000",
			},
		},
		{
			name: "a route via the default gateway is copied when only its metrics differ",
			main: []Route{copyOf("203.0.113.0/24", "10.0.1.1", m(1300, 0)), copyOf("198.51.100.0/24", "10.0.1.1", Metrics{})},
			want: []string{
				"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
				"route 203.0.113.0/24 via 10.0.1.1 dev #2 mtu 1300 table 10000",
			},
		},
		{
			name:     "a route with the default route's hop and metrics is not copied",
			defaults: []Route{def("10.0.1.1", m(1500, 0))},
			main:     []Route{copyOf("203.0.113.0/24", "10.0.1.1", m(1500, 0))},
			want:     []string{"route 0.0.0.0/0 via 10.0.1.1 dev #2 mtu 1500 table 10000"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ifc := ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.10/24"}, "10.0.1.1")
			ifc.Defaults, ifc.Routes, ifc.MainRoutes = tc.defaults, tc.routes, tc.main
			p, err := Build([]Interface{ifc}, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]string{"route 10.0.1.0/24 dev #2 scope link src 10.0.1.10 table 10000"}, tc.want...)
			if got := strs(p.Routes); !slices.Equal(got, sorted(want)) {
				t.Fatalf("\n got %q\nwant %q", got, sorted(want))
			}
		})
	}
}

// TestMissingNamesMetricDrift: CHECK names a route installed with other
// metrics than wanted, and the metrics that differ; a copy of a main route
// is tolerated as before (main may have changed after ADD).
func TestMissingNamesMetricDrift(t *testing.T) {
	ifc := ifaceFromAddrs("eth0", 2, 10000, []string{"10.0.1.10/24"}, "10.0.1.1")
	ifc.Defaults = []Route{{Dst: pfx("0.0.0.0/0"), Gateway: addr("10.0.1.1"), Metrics: Metrics{MTU: 1500, AdvMSS: 1460}}}
	ifc.Routes = []Route{{Dst: pfx("10.100.0.0/16"), Gateway: addr("10.0.1.254"), Metrics: Metrics{MTU: 1300}}}
	ifc.MainRoutes = []Route{{Dst: pfx("10.101.0.0/16"), Gateway: addr("10.0.1.254"), Metrics: Metrics{MTU: 1200}}}
	p, err := Build([]Interface{ifc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	have := slices.Clone(p.Routes)
	for i, r := range have {
		switch r.Dst.String() {
		case "0.0.0.0/0":
			have[i].Metrics = Metrics{MTU: 1500} // advmss lost
		case "10.100.0.0/16":
			have[i].Metrics = Metrics{MTU: 1400, HopLimit: 3}
		case "10.101.0.0/16":
			have[i].Metrics = Metrics{}
		}
	}
	got := Missing(p, p.Rules, have)
	want := []string{
		"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000 with advmss 1460 (installed: no advmss)",
		"route 10.100.0.0/16 via 10.0.1.254 dev #2 table 10000 with mtu 1300, no hoplimit (installed: mtu 1400, hoplimit 3)",
	}
	if !slices.Equal(sorted(got), want) {
		t.Fatalf("\n got %q\nwant %q", got, want)
	}
	// Missing altogether: named with its metrics.
	got = Missing(p, p.Rules, have[:1])
	if !slices.Contains(got, "route 10.100.0.0/16 via 10.0.1.254 dev #2 mtu 1300 table 10000") {
		t.Fatalf("missing route not named with its metrics: %q", got)
	}
	// ADD converges: the drifted routes are replaced.
	d := Compute(p, p.Rules, have)
	if len(d.DelRoutes) != 3 || len(d.AddRoutes) != 3 || !strings.Contains(strings.Join(strs(d.AddRoutes), ";"), "mtu 1200") {
		t.Fatalf("diff: +%q -%q", strs(d.AddRoutes), strs(d.DelRoutes))
	}
}

func TestMetricsString(t *testing.T) {
	for _, tc := range []struct {
		m    Metrics
		want string
	}{
		{Metrics{}, ""},
		{Metrics{MTU: 1300}, "mtu 1300"},
		{Metrics{MTU: 1300, MTULock: true, AdvMSS: 1260, HopLimit: 64, InitCwnd: 10, InitRwnd: 20}, "mtu lock 1300 advmss 1260 hoplimit 64 initcwnd 10 initrwnd 20"},
	} {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestMainDefaultsVia(t *testing.T) {
	ra := mainRoute("::/0", "fe80::1", 2, Metrics{HopLimit: 64})
	ra.Protocol = protoRA
	ours := mainRoute("0.0.0.0/0", "10.0.1.9", 2, Metrics{})
	ours.Protocol = Protocol
	main := []MainRoute{
		mainRoute("0.0.0.0/0", "10.0.1.1", 2, Metrics{MTU: 1500}),
		mainRoute("0.0.0.0/0", "10.0.2.1", 3, Metrics{MTU: 9001}), // another link
		mainRoute("10.100.0.0/16", "10.0.1.254", 2, Metrics{MTU: 1300}),
		ra, ours,
	}
	got := strs(MainDefaultsVia(main, 2))
	want := []string{"route 0.0.0.0/0 via 10.0.1.1 mtu 1500 table 0", "route ::/0 via fe80::1 hoplimit 64 table 0"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
}
