package integration

// Issue 11 through the binary: a MAC IMDS lists late, a MAC it never lists
// (the documented rule: waited for only on a physical link or with
// imds.awaitUnlisted true), the early lookup in chained mode, and CHECK
// verifying the IMDS-derived objects.

import (
	"fmt"
	"testing"
	"time"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
)

const listMAC = "0a:1e:00:00:07:01"

func listENI() imdsfake.ENI {
	return imdsfake.ENI{MAC: listMAC, DeviceNumber: 2, InterfaceID: "eni-0777000000000701",
		LocalIPv4s: []string{"10.0.7.25", "10.0.7.26"}, IPv4Prefixes: []string{"10.0.7.48/28"}, SubnetIPv4: "10.0.7.0/24"}
}

// listNetns is a namespace with a veth "ENI" eth1 carrying listMAC.
func listNetns(t *testing.T) *h.Netns {
	ns := h.NewNetns(t)
	e := h.NewENI(t)
	e.SetMAC(t, listMAC)
	e.MoveInto(t, ns, "eth1", []string{"10.0.7.25/24"}, "10.0.7.1")
	return ns
}

// chainedIMDSConf is a chained config whose prevResult names the ENI and
// its MAC, as the ECS front synthesises one: the lookup starts before any
// kernel work.
func chainedIMDSConf(ns *h.Netns, url, mac, imdsExtra string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"imds-list","type":"ec2-policy-routes","linkTimeout":"5s",`+
		`"imds":{"endpoint":%q%s},"prevResult":{"cniVersion":"1.0.0",`+
		`"interfaces":[{"name":"eth1","mac":%q,"sandbox":%q}],"ips":[{"interface":0,"address":"10.0.7.25/24","gateway":"10.0.7.1"}]}}`,
		url, imdsExtra, mac, ns.Path))
}

var listRules = []string{
	"from 10.0.7.25/32 lookup 10002 prio 10002",
	"from 10.0.7.26/32 lookup 10002 prio 10002",
	"from 10.0.7.48/28 lookup 10002 prio 10002",
}

// IMDS answers 404 for the MAC for its first three asks, then lists it:
// with the wait enabled (a veth needs imds.awaitUnlisted true; a physical
// NIC gets it by default) ADD polls within imds.timeout and succeeds, in
// standalone and chained mode.
func TestIMDSLateListedMAC(t *testing.T) {
	h.RequireRoot(t)
	for _, mode := range []string{"standalone", "chained"} {
		t.Run(mode, func(t *testing.T) {
			ns := listNetns(t)
			e := listENI()
			e.ListAfter = 3
			fake := imdsfake.New(imdsPrimaryMAC, e)
			url := imdsfake.Start(t, fake)
			conf := imdsConf(t, url, `,"awaitUnlisted":true`)
			if mode == "chained" {
				conf = chainedIMDSConf(ns, url, listMAC, `,"awaitUnlisted":true`)
			}
			r, add := runPlugin(t, cniEnv("ADD", ns, "eth1"), conf)
			r.MustSucceed(t, "ADD of a late-listed MAC")
			equalSets(t, "rules", imdsRules(t, ns.Handle(t)), listRules)
			// 1 token, the first round of 5 (404s), 3 more polls of
			// device-number (the 4th ask finds it), the other 4 first-round
			// keys again, then the prefix its listing names.
			if fake.TokensIssued() != 1 || fake.Count() != 1+5+3+4+1 {
				t.Errorf("%d requests, %d tokens: %v", fake.Count(), fake.TokensIssued(), fake.Requests())
			}
			d, del := runPlugin(t, cniEnv("DEL", ns, "eth1"), conf)
			d.MustSucceed(t, "DEL")
			assertNoResidue(t, []*h.Netns{ns}, add, del)
		})
	}
}

// A MAC IMDS never lists. On a veth (the default rule: virtual links are
// not waited for) ADD fails at once, one round of requests, code 7 naming
// the MAC. With imds.awaitUnlisted true it polls until imds.timeout and
// fails with code 11 naming the MAC. Nothing is installed either way.
func TestIMDSNeverListedMAC(t *testing.T) {
	h.RequireRoot(t)
	for _, tc := range []struct {
		name, extra string
		code        uint
		msg         string
		min, max    time.Duration
	}{
		{"veth, default", "", 7, "lists no network interface with MAC " + listMAC, 0, 500 * time.Millisecond},
		{"awaitUnlisted true", `,"awaitUnlisted":true`, 11, "still lists no network interface with MAC " + listMAC + " after imds.timeout 800ms", 800 * time.Millisecond, 800*time.Millisecond + faultSlack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := listNetns(t)
			fake := imdsfake.New(imdsPrimaryMAC) // lists no ENI at all
			url := imdsfake.Start(t, fake)
			conf := imdsConf(t, url, `,"timeout":"800ms"`+tc.extra)
			r, add := runPlugin(t, cniEnv("ADD", ns, "eth1"), conf)
			mustFail(t, r, "ADD", tc.code, tc.msg, url, "nothing was installed")
			if r.Duration < tc.min || r.Duration > tc.max {
				t.Errorf("ADD took %v, want %v..%v", r.Duration, tc.min, tc.max)
			}
			if tc.code == 7 && fake.Count() != 6 {
				t.Errorf("not waited for, yet %d requests (want the token and one round of 5): %v", fake.Count(), fake.Requests())
			}
			assertNoResidue(t, []*h.Netns{ns}, add)
		})
	}
}

// Chained mode: the lookup starts from prevResult's MAC before the
// namespace is opened. A prevResult MAC that is not the link's is dropped
// for the link's own (and the link's is what IMDS is asked about).
func TestIMDSChainedEarlyLookup(t *testing.T) {
	h.RequireRoot(t)
	for _, tc := range []struct{ name, mac string }{{"prevResult MAC", listMAC}, {"prevResult MAC not the link's", "0a:1e:00:00:07:99"}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := listNetns(t)
			fake := imdsfake.New(imdsPrimaryMAC, listENI())
			url := imdsfake.Start(t, fake)
			conf := chainedIMDSConf(ns, url, tc.mac, "")
			r, add := runPlugin(t, cniEnv("ADD", ns, "eth1"), conf)
			r.MustSucceed(t, "chained ADD")
			equalSets(t, "rules", imdsRules(t, ns.Handle(t)), listRules)
			// token + the first round of 5 + the prefix its listing names.
			if tc.mac == listMAC && (fake.Count() != 7 || fake.TokensIssued() != 1) {
				t.Errorf("%d requests, %d tokens, want 7 and 1: %v", fake.Count(), fake.TokensIssued(), fake.Requests())
			}
			d, del := runPlugin(t, cniEnv("DEL", ns, "eth1"), conf)
			d.MustSucceed(t, "DEL")
			assertNoResidue(t, []*h.Netns{ns}, add, del)
		})
	}
}

// CHECK with IMDS enabled verifies what ADD derived from IMDS: a removed
// secondary-IP rule, prefix rule, subnet route or altname is reported (code
// 11); with IMDS down or hanging CHECK fails with code 11 saying it could
// not verify, within imds.timeout.
func TestIMDSCheck(t *testing.T) {
	h.RequireRoot(t)
	ns := listNetns(t)
	nl := ns.Handle(t)
	fake := imdsfake.New(imdsPrimaryMAC, listENI())
	url := imdsfake.Start(t, fake)
	conf := imdsConf(t, url, `,"timeout":"1s"`)
	env := cniEnv("ADD", ns, "eth1")
	imdsStatePath(t, env)
	check := func(what string) h.Result {
		t.Helper()
		r, _ := runPlugin(t, cniEnv("CHECK", ns, "eth1"), conf)
		return r
	}
	add := func() {
		t.Helper()
		r, _ := runPlugin(t, env, conf)
		r.MustSucceed(t, "ADD")
	}
	add()
	check("CHECK").MustSucceed(t, "CHECK after ADD")

	for _, tc := range []struct {
		name   string
		break_ []string // ip(8) arguments inside the namespace
		msg    string
	}{
		{"secondary-IP rule", []string{"rule", "del", "from", "10.0.7.26", "table", "10002"}, "rule from 10.0.7.26/32 lookup 10002"},
		{"prefix rule", []string{"rule", "del", "from", "10.0.7.48/28", "table", "10002"}, "rule from 10.0.7.48/28 lookup 10002"},
		{"subnet route", []string{"route", "del", "10.0.7.0/24", "table", "10002"}, "route 10.0.7.0/24"},
		{"altname", []string{"link", "property", "del", "dev", "eth1", "altname", "eni-0777000000000701"}, "altname eni-0777000000000701 on interface eth1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns.IP(t, tc.break_...)
			mustFail(t, check(tc.name), "CHECK", 11, "CHECK failed", tc.msg)
			add()
			check("CHECK").MustSucceed(t, "CHECK after re-ADD")
		})
	}
	t.Run("IMDS hanging", func(t *testing.T) {
		fake.SetHang(true)
		defer fake.SetHang(false)
		r := check("CHECK")
		mustFail(t, r, "CHECK with IMDS hanging", 11, url, "CHECK cannot verify")
		if r.Duration > time.Second+faultSlack {
			t.Errorf("CHECK took %v with imds.timeout 1s", r.Duration)
		}
	})
	t.Run("IMDS down", func(t *testing.T) {
		dead := closedPort(t)
		r, _ := runPlugin(t, cniEnv("CHECK", ns, "eth1"), imdsConf(t, dead, `,"timeout":"1s"`))
		mustFail(t, r, "CHECK with IMDS down", 11, dead, "unavailable", "CHECK cannot verify")
	})
	if rules, _ := oursCount(t, nl); rules != 3 {
		t.Errorf("CHECK changed the rules: %d of ours", rules)
	}
	env.Command = "DEL"
	r, _ := runPlugin(t, env, conf)
	r.MustSucceed(t, "DEL")
}
