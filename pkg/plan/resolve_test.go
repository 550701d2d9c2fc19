package plan

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func cand(name string, index int, addrs []string, gws ...string) Candidate {
	return Candidate{Interface: ifaceFromAddrs(name, index, 0, addrs, gws...)}
}

func observed() Observed {
	return Observed{OursByLink: map[int]int{}, Used: map[int]bool{}, Foreign: map[int]Foreign{}, Orphans: map[int]bool{}}
}

// TestResolveTables: which table and priority each interface gets, the
// tables ADD converges, and the notes, without root (issue 12 items 5, 7,
// 8, 9 and the allocation it keeps).
func TestResolveTables(t *testing.T) {
	eth0 := cand("eth0", 2, []string{"10.0.1.10/24"}, "10.0.1.1")
	eth1 := cand("eth1", 3, []string{"10.0.2.10/24"}, "10.0.2.1")
	imds := func(c Candidate, table int) Candidate { c.IMDSTable = table; return c }
	tests := []struct {
		name        string
		s           Settings
		cands       []Candidate
		obs         func(*Observed)
		wantTables  []int // per candidate
		wantPrio    []int
		wantManaged []int
		wantNote    string
	}{
		{name: "fresh: lowest free from tableBase, a table a foreign object uses is skipped",
			s: Settings{TableBase: 10000}, cands: []Candidate{eth0, eth1},
			obs:        func(o *Observed) { o.Used[10000] = true; o.Foreign[10000] = Foreign{"route 198.51.100.0/24", 4} },
			wantTables: []int{10001, 10002}, wantPrio: []int{10001, 10002}, wantManaged: []int{10001, 10002}},
		{name: "retried ADD keeps the link's table",
			s: Settings{TableBase: 10000}, cands: []Candidate{eth0},
			obs: func(o *Observed) {
				o.OursByLink[2] = 10003
				for tb := 10000; tb <= 10003; tb++ {
					o.Used[tb] = true
				}
			},
			wantTables: []int{10003}, wantPrio: []int{10003}, wantManaged: []int{10003}},
		{name: "tableBase raised: the link moves to the new range, the old table converges to empty",
			s: Settings{TableBase: 20000}, cands: []Candidate{eth0},
			obs:        func(o *Observed) { o.OursByLink[2] = 10000; o.Used[10000] = true },
			wantTables: []int{20000}, wantPrio: []int{20000}, wantManaged: []int{10000, 20000},
			wantNote: "interface eth0 moved from table 10000 to 20000 (tableBase 20000)"},
		{name: "tableBase lowered with the table still in range: kept, and the note says why",
			s: Settings{TableBase: 9000}, cands: []Candidate{eth0},
			obs:        func(o *Observed) { o.OursByLink[2] = 10000; o.Used[10000] = true },
			wantTables: []int{10000}, wantPrio: []int{10000}, wantManaged: []int{10000},
			wantNote: "interface eth0 keeps table 10000, inside tableBase 9000's range (a fresh ADD would choose 9000; DEL and ADD to renumber)"},
		{name: "retried ADD with a foreign route added to our table: kept, no note",
			s: Settings{TableBase: 10000}, cands: []Candidate{eth0},
			obs: func(o *Observed) {
				o.OursByLink[2] = 10000
				o.Used[10000] = true
				o.Foreign[10000] = Foreign{"route 198.51.100.0/24", 4}
			},
			wantTables: []int{10000}, wantPrio: []int{10000}, wantManaged: []int{10000}},
		{name: "IMDS numbering moves the link off its allocated table",
			s: Settings{TableBase: 10000}, cands: []Candidate{imds(eth0, 10002)},
			obs:        func(o *Observed) { o.OursByLink[2] = 10000; o.Used[10000] = true },
			wantTables: []int{10002}, wantPrio: []int{10002}, wantManaged: []int{10000, 10002},
			wantNote: "interface eth0 moved from table 10000 to 10002 (IMDS numbering from tableBase 10000)"},
		{name: "IMDS table the link already owns: a foreign route added after ADD is tolerated",
			s: Settings{TableBase: 10000}, cands: []Candidate{imds(eth0, 10002)},
			obs: func(o *Observed) {
				o.OursByLink[2] = 10002
				o.Foreign[10002] = Foreign{"route 10.9.0.0/16", 4}
			},
			wantTables: []int{10002}, wantPrio: []int{10002}, wantManaged: []int{10002}},
		{name: "explicit priority for every rule",
			s: Settings{TableBase: 40000, Priority: 100}, cands: []Candidate{eth0, eth1},
			obs:        func(*Observed) {},
			wantTables: []int{40000, 40001}, wantPrio: []int{100, 100}, wantManaged: []int{40000, 40001}},
		{name: "orphan tables are managed",
			s: Settings{TableBase: 10000}, cands: []Candidate{eth0},
			obs:        func(o *Observed) { o.Orphans[10007] = true; o.Used[10007] = true },
			wantTables: []int{10000}, wantPrio: []int{10000}, wantManaged: []int{10000, 10007}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obs := observed()
			tc.obs(&obs)
			res, err := Resolve(tc.s, tc.cands, obs)
			if err != nil {
				t.Fatal(err)
			}
			for i, ifc := range res.Interfaces {
				if ifc.Table != tc.wantTables[i] || ifc.Priority != tc.wantPrio[i] {
					t.Errorf("%s: table %d priority %d, want %d %d", ifc.Name, ifc.Table, ifc.Priority, tc.wantTables[i], tc.wantPrio[i])
				}
			}
			var managed []int
			for tb := range res.Managed {
				managed = append(managed, tb)
			}
			slices.Sort(managed)
			if !slices.Equal(managed, tc.wantManaged) {
				t.Errorf("managed %v, want %v", managed, tc.wantManaged)
			}
			if got := strings.Join(res.Notes, "; "); got != tc.wantNote {
				t.Errorf("note %q, want %q", got, tc.wantNote)
			}
		})
	}
}

// TestResolveRefusals: every refusal is a *Refusal (code 7) naming what
// to change; running out of tables is not (code 11).
func TestResolveRefusals(t *testing.T) {
	eth0 := cand("eth0", 2, []string{"10.0.1.10/24"}, "10.0.1.1")
	imds0 := eth0
	imds0.IMDSTable = 10002
	tests := []struct {
		name    string
		s       Settings
		cands   []Candidate
		obs     func(*Observed)
		refusal bool
		msg     []string
	}{
		{name: "one link listed twice", s: Settings{TableBase: 10000}, cands: []Candidate{eth0, eth0},
			obs: func(*Observed) {}, refusal: true, msg: []string{"eth0 and eth0 name one link (#2)"}},
		{name: "IMDS table holding a foreign route", s: Settings{TableBase: 10000}, cands: []Candidate{imds0},
			obs:     func(o *Observed) { o.Foreign[10002] = Foreign{"route 10.9.0.0/16", 4} },
			refusal: true, msg: []string{"table 10002 (from IMDS numbering)", "route 10.9.0.0/16 proto static (4)", "not this plugin's"}},
		{name: "IMDS table a foreign rule points at", s: Settings{TableBase: 10000}, cands: []Candidate{imds0},
			obs:     func(o *Observed) { o.Foreign[10002] = Foreign{"rule from 192.0.2.7/32 lookup 10002", 200} },
			refusal: true, msg: []string{"table 10002", "rule from 192.0.2.7/32 lookup 10002 proto 200"}},
		{name: "IMDS table another link of ours owns", s: Settings{TableBase: 10000}, cands: []Candidate{imds0},
			obs:     func(o *Observed) { o.OursByLink[7] = 10002 },
			refusal: true, msg: []string{"table 10002 (from IMDS numbering) already holds this plugin's routes for link #7"}},
		{name: "IMDS table at the main rule's priority", s: Settings{TableBase: 32000}, cands: []Candidate{func() Candidate { c := eth0; c.IMDSTable = 32800; return c }()},
			obs: func(*Observed) {}, refusal: true, msg: []string{"table 32800 as rule priority would sit after the main rule (32766)"}},
		{name: "no free table", s: Settings{TableBase: 10000}, cands: []Candidate{eth0},
			obs: func(o *Observed) {
				for tb := 10000; tb < 10000+maxTableProbe; tb++ {
					o.Used[tb] = true
				}
			}, msg: []string{"interface eth0: no free routing table in 10000..14095"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obs := observed()
			tc.obs(&obs)
			_, err := Resolve(tc.s, tc.cands, obs)
			if err == nil {
				t.Fatal("accepted")
			}
			var r *Refusal
			if errors.As(err, &r) != tc.refusal {
				t.Fatalf("refusal %v, want %v: %v", !tc.refusal, tc.refusal, err)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("%q does not say %q", err, m)
				}
			}
		})
	}
}

// TestResolveGolden: the wanted state of two ENIs in one namespace, as
// ip-rule/ip-route-like lines: each ENI's table holds its own gateway, the
// main route through eth0 via another next hop is carried into eth0's
// table only, and the /32 ENI's default is onlink.
func TestResolveGolden(t *testing.T) {
	eth0 := cand("eth0", 2, []string{"10.0.1.10/24"}, "10.0.1.1")
	eth1 := cand("eth1", 3, []string{"10.0.3.10/32"}, "10.0.3.1")
	obs := observed()
	mr := func(dst, gw string, link int) MainRoute {
		return MainRoute{Route: Route{Table: TableMain, Dst: pfx(dst), Type: Unicast, LinkIndex: link, Gateway: addr(gw)}, Protocol: 3}
	}
	obs.Main = []MainRoute{mr("10.100.0.0/16", "10.0.1.254", 2), mr("0.0.0.0/0", "10.0.1.1", 2)}
	obs.MainRejects = []Route{{Table: TableMain, Dst: pfx("169.254.169.254/32"), Type: Blackhole}}
	res, err := Resolve(Settings{TableBase: 10000}, []Candidate{eth0, eth1}, obs)
	if err != nil {
		t.Fatal(err)
	}
	got := append(strs(res.Plan.Rules), strs(res.Plan.Routes)...)
	want := []string{
		"rule from 10.0.1.10/32 lookup 10000 priority 10000",
		"rule from 10.0.3.10/32 lookup 10001 priority 10001",
		"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000",
		"route 0.0.0.0/0 via 10.0.3.1 dev #3 onlink table 10001",
		"route 10.0.1.0/24 dev #2 scope link src 10.0.1.10 table 10000",
		"route 10.0.3.10/32 dev #3 scope link src 10.0.3.10 table 10001",
		"route 10.100.0.0/16 via 10.0.1.254 dev #2 table 10000",
		"route blackhole 169.254.169.254/32 table 10000",
		"route blackhole 169.254.169.254/32 table 10001",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("plan:\n got %q\nwant %q", got, want)
	}
}

func TestOrphanTables(t *testing.T) {
	rules := []Rule{{Table: 10000}, {Table: 10001}}
	routes := []Route{{Table: 10000, LinkIndex: 4}, {Table: 10001, Type: Blackhole}}
	got := OrphanTables(rules, routes, map[int]int{4: 10000})
	if len(got) != 1 || !got[10001] {
		t.Fatalf("orphans = %v, want only 10001", got)
	}
}

func TestObservedInTables(t *testing.T) {
	o := Observed{
		Rules:  []Rule{{Table: 10000}, {Table: 10001}, {Table: 10002}},
		Routes: []Route{{Table: 10000, LinkIndex: 4}, {Table: 10002, LinkIndex: 5}, {Table: 10003}},
	}
	rules, routes := o.InTables(map[int]bool{10000: true, 10002: true})
	if len(rules) != 2 || rules[0].Table != 10000 || rules[1].Table != 10002 ||
		len(routes) != 2 || routes[0].Table != 10000 || routes[1].Table != 10002 {
		t.Fatalf("in 10000 and 10002: rules %v, routes %v", rules, routes)
	}
}
