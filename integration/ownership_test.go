package integration

import (
	"fmt"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// Ownership (issue 12 items 3 and 10): DEL and CHECK act only on the links
// that are the attachment's own — by the MAC prevResult gives, else by the
// mark ADD left on the link — never by whatever is called eth0 now.

// taskEnv is cniEnv with an explicit container ID (the task).
func taskEnv(verb string, ns *h.Netns, task string) h.Env {
	e := cniEnv(verb, ns, "eth0")
	e.ContainerID = task
	return e
}

func ourRoutingOf(t *testing.T, nl *netlink.Handle) []string {
	t.Helper()
	rules, routes := h.Ours(t, nl)
	return append(h.RuleStrings(rules), routeSet(routes)...)
}

// An ENI added as taskA, then a DEL as taskB for "eth0" in the same
// namespace path (ECS: /host/proc/<pid>/ns/net after PID reuse), once with a
// prevResult naming taskB's own MAC and address, once as ECS sends it (no
// prevResult): taskA's routing stays; taskA's own DEL then removes it all.
func TestOwnershipDelByAnotherTask(t *testing.T) {
	rep := scenario(t, "OWN1", "DEL by another attachment (PID reuse: same netns path, ifname eth0) leaves the owner's routing")
	ns := h.NewNetns(t)
	nl := ns.Handle(t)
	eni := h.NewENI(t)
	eni.MoveInto(t, ns, "eth0", []string{"10.0.21.10/24"}, "10.0.21.1")
	conf := relConf("")
	a, _ := runPlugin(t, taskEnv("ADD", ns, "taskA"), conf)
	a.MustSucceed(t, "ADD taskA")
	before := ourRoutingOf(t, nl)
	if len(before) == 0 {
		t.Fatal("ADD installed nothing")
	}
	l, err := nl.LinkByName("eth0")
	if err != nil || !plan.IsMark(l.Attrs().Alias) {
		t.Fatalf("eth0 carries no ownership mark after ADD: %q %v", l.Attrs().Alias, err)
	}

	prevB := fmt.Sprintf(`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"0a:1e:00:00:21:0b","sandbox":%q}],"ips":[{"address":"10.0.21.99/24","gateway":"10.0.21.1","interface":0}]}`, ns.Path)
	for _, tc := range []struct {
		name string
		conf []byte
	}{
		{"prevResult naming taskB's MAC and address", chainedConf(t, "1.0.0", prevB)},
		{"no prevResult (ECS)", conf},
	} {
		d, _ := runPlugin(t, taskEnv("DEL", ns, "taskB"), tc.conf)
		d.MustSucceed(t, "DEL taskB, "+tc.name)
		if after := ourRoutingOf(t, nl); !slices.Equal(before, after) {
			t.Fatalf("DEL taskB (%s) changed taskA's routing:\nbefore %q\nafter  %q", tc.name, before, after)
		}
	}
	c, _ := runPlugin(t, taskEnv("CHECK", ns, "taskB"), chainedConf(t, "1.0.0", prevB))
	mustFail(t, c, "CHECK as taskB with its prevResult", 11, "interface eth0 is missing (no link with MAC 0a:1e:00:00:21:0b)")
	c, _ = runPlugin(t, taskEnv("CHECK", ns, "taskB"), conf11(""))
	mustFail(t, c, "CHECK as taskB without prevResult", 11, "belongs to another attachment")
	ca, _ := runPlugin(t, taskEnv("CHECK", ns, "taskA"), conf11(""))
	ca.MustSucceed(t, "CHECK taskA")
	d, p := runPlugin(t, taskEnv("DEL", ns, "taskA"), conf)
	d.MustSucceed(t, "DEL taskA")
	assertNoResidue(t, []*h.Netns{ns}, p)
	if l, _ := nl.LinkByName("eth0"); l.Attrs().Alias != "" {
		t.Errorf("DEL left the mark %q", l.Attrs().Alias)
	}
	rep.add("ADD taskA (%d rules/routes); DEL taskB with prevResult naming another MAC/address, and without prevResult: exit 0, taskA's routing unchanged; CHECK as taskB: code 11 (its MAC missing; eth0 another attachment's); DEL taskA: nothing left, mark cleared", len(before))
}

// After `ip link set eth0 name other` inside the namespace, DEL for eth0
// still removes every rule and route of its attachment: found by the mark
// (standalone) or by prevResult's MAC (chained), not by the current name.
func TestOwnershipRenamedLink(t *testing.T) {
	rep := scenario(t, "OWN2", "DEL after the link was renamed inside the namespace")
	for _, mode := range []string{"standalone (mark)", "chained (prevResult MAC)"} {
		t.Run(mode, func(t *testing.T) {
			ns := h.NewNetns(t)
			nl := ns.Handle(t)
			eni := h.NewENI(t)
			eni.MoveInto(t, ns, "eth0", []string{"10.0.22.10/24", "2001:db8:22::10/64"}, "10.0.22.1", "2001:db8:22::1")
			conf := relConf("")
			if mode != "standalone (mark)" {
				prev := fmt.Sprintf(`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":%q,"sandbox":%q}],"ips":[`+
					`{"address":"10.0.22.10/24","gateway":"10.0.22.1","interface":0}]}`, eni.MAC.String(), ns.Path)
				conf = chainedConf(t, "1.0.0", prev)
			}
			a, _ := runPlugin(t, cniEnv("ADD", ns, "eth0"), conf)
			a.MustSucceed(t, "ADD")
			if n := len(ourRoutingOf(t, nl)); n == 0 {
				t.Fatal("ADD installed nothing")
			}
			ns.IP(t, "link", "set", "eth0", "name", "other")
			// A new eth0 (another ENI) must not be mistaken for it.
			other := h.NewENI(t)
			other.MoveInto(t, ns, "eth0", []string{"10.0.23.10/24"})
			d, p := runPlugin(t, cniEnv("DEL", ns, "eth0"), conf)
			d.MustSucceed(t, "DEL after rename")
			assertNoResidue(t, []*h.Netns{ns}, p)
			if l, _ := nl.LinkByName("other"); l.Attrs().Alias != "" {
				t.Errorf("mark %q left on the renamed link", l.Attrs().Alias)
			}
		})
	}
	rep.add("ADD eth0, `ip link set eth0 name other`, a new eth0 moved in, DEL eth0: exit 0, no rule or route of ours left, mark cleared; standalone (mark) and chained (prevResult MAC)")
}
