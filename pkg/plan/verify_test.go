package plan

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// installed is the namespace after an ADD that applied res: its rules and
// routes are ours, each link's table found through its routes.
func installed(t *testing.T, s Settings, cands []Candidate, obs Observed) Observed {
	t.Helper()
	res, err := Resolve(s, cands, obs)
	if err != nil {
		t.Fatal(err)
	}
	obs.Rules = slices.Clone(res.Plan.Rules)
	obs.Routes = slices.Clone(res.Plan.Routes)
	obs.OursByLink = map[int]int{}
	for _, ifc := range res.Interfaces {
		obs.OursByLink[ifc.Index] = ifc.Table
	}
	return obs
}

func checkedOf(c Candidate) Checked {
	ifc := c.Interface
	ifc.Table, ifc.Priority, ifc.MainRoutes = 0, 0, nil // Verify's to decide
	return Checked{Interface: ifc, IMDSTable: c.IMDSTable, Link: Link{Index: ifc.Index, Name: ifc.Name}}
}

// TestVerify: CHECK's decision without root. After the ADD that Resolve
// planned, nothing is missing; each way the namespace can drift from it is
// named, and what CHECK must tolerate is.
func TestVerify(t *testing.T) {
	eth0 := cand("eth0", 2, []string{"10.0.1.10/24"}, "10.0.1.1")
	imds0 := eth0
	imds0.IMDSTable = 10002
	imds0.Sources = append(slices.Clone(imds0.Sources), pfx("10.0.1.11/32"), pfx("10.0.1.64/28"))
	s := Settings{TableBase: 10000}
	base := observed()
	base.MainRejects = []Route{{Table: TableMain, Dst: pfx("169.254.169.254/32"), Type: Blackhole}}
	base.Main = []MainRoute{{Route: Route{Table: TableMain, Dst: pfx("10.100.0.0/16"), Type: Unicast, LinkIndex: 2, Gateway: addr("10.0.1.254")}, Protocol: 3}}

	tests := []struct {
		name    string
		cand    Candidate
		settle  func(*Observed)
		checked func(*Checked)
		missing []string // each problem, in order; nil: none
	}{
		{name: "converged", cand: eth0},
		{name: "converged with IMDS secondary IP and prefix rules", cand: imds0},
		{name: "a later plugin's rule and route are tolerated", cand: eth0, settle: func(o *Observed) {
			o.Rules = append(o.Rules, Rule{Src: pfx("10.0.9.9/32"), Table: 10000, Priority: 10000})
			o.Routes = append(o.Routes, Route{Table: 10000, Dst: pfx("192.0.2.0/24"), Type: Unicast, LinkIndex: 2, Gateway: addr("10.0.1.1")})
		}},
		{name: "the copy of a main route is not demanded (main may gain routes after ADD)", cand: eth0, settle: func(o *Observed) {
			o.Routes = slices.DeleteFunc(o.Routes, func(r Route) bool { return r.Dst == pfx("10.100.0.0/16") })
		}},
		{name: "source rule removed", cand: eth0, settle: func(o *Observed) { o.Rules = nil },
			missing: []string{"rule from 10.0.1.10/32 lookup 10000 priority 10000"}},
		{name: "IMDS prefix rule removed", cand: imds0, settle: func(o *Observed) {
			o.Rules = slices.DeleteFunc(o.Rules, func(r Rule) bool { return r.Src == pfx("10.0.1.64/28") })
		}, missing: []string{"rule from 10.0.1.64/28 lookup 10002 priority 10002"}},
		{name: "default route removed", cand: eth0, settle: func(o *Observed) {
			o.Routes = slices.DeleteFunc(o.Routes, func(r Route) bool { return r.Dst.Bits() == 0 })
		}, missing: []string{"route 0.0.0.0/0 via 10.0.1.1 dev #2 table 10000"}},
		{name: "reject copy removed", cand: eth0, settle: func(o *Observed) {
			o.Routes = slices.DeleteFunc(o.Routes, func(r Route) bool { return r.Type == Blackhole })
		}, missing: []string{"route blackhole 169.254.169.254/32 table 10000"}},
		{name: "no table of ours through the link", cand: eth0, settle: func(o *Observed) { o.OursByLink = map[int]int{} },
			missing: []string{"interface eth0 has no routing table of ours (no route with protocol 236 through it)"}},
		{name: "IMDS numbering disagrees with the table in use", cand: eth0,
			checked: func(c *Checked) { c.IMDSTable = 10005 },
			missing: []string{"interface eth0: routes in table 10000, IMDS numbering gives table 10005"}},
		{name: "altname ADD recorded is gone", cand: eth0,
			checked: func(c *Checked) {
				c.AltNames = []string{"eni-0aaa", "device-number-1"}
				c.Link.AltNames = []string{"eni-0aaa"}
			},
			missing: []string{"altname device-number-1 on interface eth0"}},
		{name: "IMDS enabled but not asked: on-link routes taken as installed", cand: imds0,
			checked: func(c *Checked) { c.IMDSTable, c.Subnets, c.SubnetsAsInstalled = 0, nil, true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obs := installed(t, s, []Candidate{tc.cand}, base)
			if tc.settle != nil {
				tc.settle(&obs)
			}
			c := checkedOf(tc.cand)
			if tc.checked != nil {
				tc.checked(&c)
			}
			got, err := Verify(s, []Checked{c}, obs)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.missing) {
				t.Fatalf("missing:\n got %q\nwant %q", got, tc.missing)
			}
		})
	}
}

// TestVerifyPriority: with a configured priority every rule is demanded at
// it, and a rule at the table number no longer counts.
func TestVerifyPriority(t *testing.T) {
	eth0 := cand("eth0", 2, []string{"10.0.1.10/24"}, "10.0.1.1")
	s := Settings{TableBase: 10000, Priority: 100}
	obs := installed(t, s, []Candidate{eth0}, observed())
	if got, err := Verify(s, []Checked{checkedOf(eth0)}, obs); err != nil || got != nil {
		t.Fatalf("converged: %q %v", got, err)
	}
	obs.Rules = []Rule{{Src: pfx("10.0.1.10/32"), Table: 10000, Priority: 10000}}
	got, err := Verify(s, []Checked{checkedOf(eth0)}, obs)
	if err != nil || !slices.Equal(got, []string{"rule from 10.0.1.10/32 lookup 10000 priority 100"}) {
		t.Fatalf("got %q %v", got, err)
	}
}

// TestVerifyTwoInterfaces: each interface is checked in its own table; a
// problem of one does not hide the other's.
func TestVerifyTwoInterfaces(t *testing.T) {
	eth0 := cand("eth0", 2, []string{"10.0.1.10/24"}, "10.0.1.1")
	eth1 := cand("eth1", 3, []string{"10.0.3.10/32"}, "10.0.3.1")
	s := Settings{TableBase: 10000}
	obs := installed(t, s, []Candidate{eth0, eth1}, observed())
	obs.Routes = slices.DeleteFunc(obs.Routes, func(r Route) bool { return r.LinkIndex == 3 && r.Dst.Bits() == 0 })
	delete(obs.OursByLink, 2)
	got, err := Verify(s, []Checked{checkedOf(eth0), checkedOf(eth1)}, obs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"interface eth0 has no routing table of ours (no route with protocol 236 through it)",
		"route 0.0.0.0/0 via 10.0.3.1 dev #3 onlink table 10001",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("missing:\n got %q\nwant %q", got, want)
	}
}

// TestVerifyRefusal: facts no plan can be built from (two IPv4 gateways)
// are a *Refusal.
func TestVerifyRefusal(t *testing.T) {
	bad := checkedOf(cand("eth0", 2, []string{"10.0.1.10/24"}, "10.0.1.1", "10.0.1.2"))
	obs := observed()
	obs.OursByLink[2] = 10000
	_, err := Verify(Settings{TableBase: 10000}, []Checked{bad}, obs)
	var r *Refusal
	if !errors.As(err, &r) || !strings.Contains(err.Error(), "eth0") {
		t.Fatalf("want a refusal naming eth0, got %v", err)
	}
}
