package integration

// IMDS scenarios through the real binary: a fake IMDSv2 (internal/imdsfake) in
// this test process on 127.0.0.1, or AWS's ec2-metadata-mock bound to
// 127.0.0.1; veth pairs with their MACs set to what the metadata says.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/state"
)

const imdsPrimaryMAC = "0a:1e:00:00:00:01"

// imdsConf is a standalone (ECS) config with IMDS at endpoint.
func imdsConf(t *testing.T, endpoint, extra string) []byte {
	log := filepath.Join(t.TempDir(), "plugin.log")
	return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"imds-it","type":"ec2-policy-routes","linkTimeout":"5s",`+
		`"logFile":%q,"imds":{"endpoint":%q%s}}`, log, endpoint, extra))
}

func imdsEnv(t *testing.T, verb string, ns *h.Netns, ifname string) h.Env {
	return h.Env{Command: verb, ContainerID: "imds-" + strings.NewReplacer("/", "-").Replace(strings.ToLower(t.Name())), Netns: ns.Path, IfName: ifname, Path: "/x"}
}

// imdsStatePath is where the binary records altname ownership, removed on
// cleanup whatever the test did.
func imdsStatePath(t *testing.T, env h.Env) string {
	p := filepath.Join(state.DefaultDir, state.Name(env.ContainerID, env.IfName))
	t.Cleanup(func() { _ = os.Remove(p) })
	return p
}

func imdsExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// imdsRoutes renders our routes as "table dst [via gw] dev name [src a]".
func imdsRoutes(t *testing.T, nl *netlink.Handle) []string {
	t.Helper()
	_, routes := h.Ours(t, nl)
	var out []string
	for _, r := range routes {
		dst := "default"
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				dst = r.Dst.String()
			}
		}
		if dst == "default" && r.Family == unix.AF_INET6 {
			dst = "default6"
		}
		s := fmt.Sprintf("%d %s", r.Table, dst)
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		if l, err := nl.LinkByIndex(r.LinkIndex); err == nil {
			s += " dev " + l.Attrs().Name
		}
		if r.Src != nil {
			s += " src " + r.Src.String()
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func imdsRules(t *testing.T, nl *netlink.Handle) []string {
	t.Helper()
	rules, _ := h.Ours(t, nl)
	out := h.RuleStrings(rules)
	slices.Sort(out)
	return out
}

func imdsAltNames(t *testing.T, nl *netlink.Handle, ifname string) []string {
	t.Helper()
	l, err := nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("link %s: %v", ifname, err)
	}
	out := slices.Clone(l.Attrs().AltNames)
	slices.Sort(out)
	return out
}

// Two ENIs (device-number 1 on card 0, device-number 2 on card 1) with
// secondary IPv4s and an IPv4 prefix: one ADD installs ec2-net-utils'
// numbering, one rule per address and prefix, the VPC subnet routes and the
// altnames; CHECK asks IMDS as ADD does, DEL never; DEL removes only the
// altnames the plugin added.
func TestIMDSTwoENIsRuleByRule(t *testing.T) {
	h.RequireRoot(t)
	bin := h.Binary(t)
	ns := h.NewNetns(t)
	nl := ns.Handle(t)
	e1, e2 := h.NewENI(t), h.NewENI(t)
	e1.SetMAC(t, "0a:1e:00:00:01:01")
	e2.SetMAC(t, "0a:1e:00:00:01:02")
	// eth1: the ENI plugin set a main default route; its address mask is
	// the subnet's. eth2: no gateway anywhere, a narrower mask than the
	// VPC subnet, and an IPv6 address.
	e1.MoveInto(t, ns, "eth1", []string{"10.0.1.25/24"}, "10.0.1.1")
	e2.MoveInto(t, ns, "eth2", []string{"10.0.2.9/28", "2001:db8:2::9/64"})
	// An altname someone else (ec2-net-utils on the host) already added.
	ns.IP(t, "link", "property", "add", "dev", "eth1", "altname", "eni-0aaa00000000000e1")

	fake := imdsfake.New(imdsPrimaryMAC,
		imdsfake.ENI{
			MAC: "0a:1e:00:00:01:01", DeviceNumber: 1, NetworkCard: imdsfake.Card(0), InterfaceID: "eni-0aaa00000000000e1",
			LocalIPv4s: []string{"10.0.1.25", "10.0.1.26"}, IPv4Prefixes: []string{"10.0.1.48/28"},
			SubnetIPv4: "10.0.1.0/24",
		},
		imdsfake.ENI{
			MAC: "0a:1e:00:00:01:02", DeviceNumber: 2, NetworkCard: imdsfake.Card(1), InterfaceID: "eni-0bbb00000000000e2",
			LocalIPv4s: []string{"10.0.2.9", "10.0.2.10"}, IPv6s: []string{"2001:db8:2::9"},
			SubnetIPv4: "10.0.2.0/24", SubnetIPv6: []string{"2001:db8:2::/64"},
		},
	)
	url := imdsfake.Start(t, fake)
	conf := imdsConf(t, url, "")
	conf = []byte(strings.Replace(string(conf), `"linkTimeout"`, `"interfaces":["eth1","eth2"],"linkTimeout"`, 1))
	env := imdsEnv(t, "ADD", ns, "eth1")
	statePath := imdsStatePath(t, env)

	r := h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "ADD")
	t.Logf("ADD with two ENIs took %v, %d IMDS requests", r.Duration, fake.Count())

	equalSets(t, "rules", imdsRules(t, nl), []string{
		"from 10.0.1.25/32 lookup 10001 prio 10001",
		"from 10.0.1.26/32 lookup 10001 prio 10001",
		"from 10.0.1.48/28 lookup 10001 prio 10001",
		"from 10.0.2.9/32 lookup 10102 prio 10102",
		"from 10.0.2.10/32 lookup 10102 prio 10102",
		"from 2001:db8:2::9/128 lookup 10102 prio 10102",
	})
	equalSets(t, "routes", imdsRoutes(t, nl), []string{
		"10001 10.0.1.0/24 dev eth1 src 10.0.1.25",
		"10001 default via 10.0.1.1 dev eth1",     // from the link's main route
		"10102 10.0.2.0/24 dev eth2 src 10.0.2.9", // the VPC subnet, not the /28 mask
		"10102 2001:db8:2::/64 dev eth2",
		"10102 default via 10.0.2.1 dev eth2", // no gateway on the link: the VPC router
	})
	equalSets(t, "eth1 altnames", imdsAltNames(t, nl, "eth1"), []string{"eni-0aaa00000000000e1", "device-number-1.0"})
	equalSets(t, "eth2 altnames", imdsAltNames(t, nl, "eth2"), []string{"eni-0bbb00000000000e2", "device-number-2.1"})

	// One token for the invocation; per ENI the first round (device-number,
	// its listing, interface-id, local-ipv4s, the IPv4 subnet), then what
	// its listing names: card and prefix for eth1, card, ipv6s and the IPv6
	// subnets for eth2. 1 + 7 + 8.
	if fake.TokensIssued() != 1 || fake.Count() != 16 {
		t.Errorf("ADD made %d IMDS requests with %d tokens, want 16 with 1:\n%v", fake.Count(), fake.TokensIssued(), fake.Requests())
	}
	rec, err := state.Store{Dir: state.DefaultDir}.Load(env.ContainerID, env.IfName)
	if err != nil || rec == nil {
		t.Fatalf("no ownership record at %s: %v", statePath, err)
	}
	for _, l := range rec.Links {
		if l.IfName == "eth1" && slices.Contains(l.AltNames, "eni-0aaa00000000000e1") {
			t.Errorf("record claims an altname the plugin did not add: %+v", l)
		}
	}

	// A retried ADD converges without change and keeps ownership.
	fake.ResetLog()
	before := imdsRoutes(t, nl)
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "second ADD")
	equalSets(t, "routes after second ADD", imdsRoutes(t, nl), before)

	// CHECK verifies the IMDS-derived objects, so it asks what ADD asked;
	// DEL never asks.
	fake.ResetLog()
	env.Command = "CHECK"
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "CHECK")
	if fake.TokensIssued() != 1 || fake.Count() != 16 {
		t.Errorf("CHECK made %d IMDS requests with %d tokens, want 16 with 1", fake.Count(), fake.TokensIssued())
	}
	fake.ResetLog()
	env.Command = "DEL"
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "DEL")
	if fake.Count() != 0 {
		t.Errorf("DEL asked IMDS %d times", fake.Count())
	}
	if rules, routes := h.Ours(t, nl); len(rules)+len(routes) != 0 {
		t.Errorf("DEL left %v %v", h.RuleStrings(rules), routes)
	}
	equalSets(t, "eth1 altnames after DEL", imdsAltNames(t, nl, "eth1"), []string{"eni-0aaa00000000000e1"})
	equalSets(t, "eth2 altnames after DEL", imdsAltNames(t, nl, "eth2"), nil)
	if imdsExists(statePath) {
		t.Error("DEL left the ownership record")
	}
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "second DEL")
}

// A hanging IMDS costs at most imds.timeout (+100 ms), fails with code 11
// and installs nothing.
func TestIMDSHangingBudget(t *testing.T) {
	h.RequireRoot(t)
	bin := h.Binary(t)
	ns := h.NewNetns(t)
	nl := ns.Handle(t)
	e := h.NewENI(t)
	e.SetMAC(t, "0a:1e:00:00:02:01")
	e.MoveInto(t, ns, "eth0", []string{"10.0.1.25/24"}, "10.0.1.1")
	fake := imdsfake.New(imdsPrimaryMAC, imdsfake.ENI{MAC: "0a:1e:00:00:02:01", DeviceNumber: 1, LocalIPv4s: []string{"10.0.1.25"}})
	fake.SetHang(true)
	url := imdsfake.Start(t, fake)
	env := imdsEnv(t, "ADD", ns, "eth0")
	statePath := imdsStatePath(t, env)

	const timeout = time.Second
	r := h.Run(context.Background(), t, bin, env, imdsConf(t, url, `,"timeout":"1s"`)).MustFailWith(t, "ADD against hanging IMDS", 11)
	t.Logf("ADD against a hanging IMDS: %v: %s", r.Duration, r.Err.Msg)
	if r.Duration > timeout+100*time.Millisecond {
		t.Errorf("ADD took %v with imds.timeout %v", r.Duration, timeout)
	}
	if !strings.Contains(r.Err.Msg, url) || !strings.Contains(r.Err.Msg, "nothing was installed") {
		t.Errorf("message %q", r.Err.Msg)
	}
	if rules, routes := h.Ours(t, nl); len(rules)+len(routes) != 0 {
		t.Errorf("installed %v %v", h.RuleStrings(rules), routes)
	}
	equalSets(t, "altnames", imdsAltNames(t, nl, "eth0"), nil)
	if imdsExists(statePath) {
		t.Error("ownership record written")
	}
}

// device-number 0 on a secondary MAC: retried until IMDS catches up, or
// code 11 with nothing installed when it does not within the budget.
func TestIMDSPropagation(t *testing.T) {
	h.RequireRoot(t)
	bin := h.Binary(t)
	for _, tc := range []struct {
		name  string
		after int
	}{{"late", 3}, {"never", 1 << 30}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := h.NewNetns(t)
			nl := ns.Handle(t)
			e := h.NewENI(t)
			e.SetMAC(t, "0a:1e:00:00:03:01")
			e.MoveInto(t, ns, "eth0", []string{"10.0.3.25/24"}, "10.0.3.1")
			fake := imdsfake.New(imdsPrimaryMAC, imdsfake.ENI{MAC: "0a:1e:00:00:03:01", DeviceNumber: 3,
				LocalIPv4s: []string{"10.0.3.25"}, SubnetIPv4: "10.0.3.0/24", PropagateAfter: tc.after})
			url := imdsfake.Start(t, fake)
			env := imdsEnv(t, "ADD", ns, "eth0")
			imdsStatePath(t, env)
			r := h.Run(context.Background(), t, bin, env, imdsConf(t, url, `,"timeout":"800ms"`))
			if tc.after < 10 {
				r.MustSucceed(t, "ADD")
				equalSets(t, "rules", imdsRules(t, nl), []string{"from 10.0.3.25/32 lookup 10003 prio 10003"})
				return
			}
			r.MustFailWith(t, "ADD", 11)
			if !strings.Contains(r.Err.Msg, "not propagated") || r.Duration > 900*time.Millisecond {
				t.Errorf("after %v: %q", r.Duration, r.Err.Msg)
			}
			if rules, routes := h.Ours(t, nl); len(rules)+len(routes) != 0 {
				t.Errorf("installed %v %v", h.RuleStrings(rules), routes)
			}
		})
	}
}

func TestIMDSStatus(t *testing.T) {
	bin := h.Binary(t)
	fake := imdsfake.New(imdsPrimaryMAC)
	url := imdsfake.Start(t, fake)
	env := h.Env{Command: "STATUS", Path: "/x"}
	h.Run(context.Background(), t, bin, env, imdsConf(t, url, "")).MustSucceed(t, "STATUS, IMDS up")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	r := h.Run(context.Background(), t, bin, env, imdsConf(t, dead, `,"timeout":"500ms"`)).MustFailWith(t, "STATUS, IMDS down", 50)
	if !strings.Contains(r.Err.Msg, dead) {
		t.Errorf("message %q does not name %s", r.Err.Msg, dead)
	}
}

// GC drops the ownership record of an attachment the runtime no longer
// lists; a later DEL then leaves the altnames alone (it can no longer prove
// they are its own) but still removes rules and routes.
func TestIMDSGCDropsStaleRecord(t *testing.T) {
	h.RequireRoot(t)
	bin := h.Binary(t)
	ns := h.NewNetns(t)
	nl := ns.Handle(t)
	e := h.NewENI(t)
	e.SetMAC(t, "0a:1e:00:00:04:01")
	e.MoveInto(t, ns, "eth0", []string{"10.0.4.25/24"}, "10.0.4.1")
	fake := imdsfake.New(imdsPrimaryMAC, imdsfake.ENI{MAC: "0a:1e:00:00:04:01", DeviceNumber: 1,
		LocalIPv4s: []string{"10.0.4.25"}, SubnetIPv4: "10.0.4.0/24", InterfaceID: "eni-0ddd0000000000041"})
	url := imdsfake.Start(t, fake)
	env := imdsEnv(t, "ADD", ns, "eth0")
	statePath := imdsStatePath(t, env)
	conf := imdsConf(t, url, "")
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "ADD")
	if !imdsExists(statePath) {
		t.Fatal("no ownership record")
	}
	// The README's count for one IPv4-only ENI: token + 5 GETs.
	if fake.Count() != 6 || fake.TokensIssued() != 1 {
		t.Errorf("ADD of one ENI made %d IMDS requests (%d tokens), want 6 (1): %v", fake.Count(), fake.TokensIssued(), fake.Requests())
	}
	gc := func(valid string) {
		t.Helper()
		in := strings.TrimSuffix(string(conf), "}") + `,"cni.dev/valid-attachments":` + valid + `}`
		h.Run(context.Background(), t, bin, h.Env{Command: "GC", Path: "/x"}, []byte(in)).MustSucceed(t, "GC")
	}
	gc(fmt.Sprintf(`[{"containerID":%q,"ifname":"eth0"}]`, env.ContainerID))
	if !imdsExists(statePath) {
		t.Fatal("GC dropped a valid attachment's record")
	}
	gc(`[{"containerID":"someone-else","ifname":"eth0"}]`)
	if imdsExists(statePath) {
		t.Fatal("GC kept a stale record")
	}
	env.Command = "DEL"
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "DEL")
	if rules, routes := h.Ours(t, nl); len(rules)+len(routes) != 0 {
		t.Errorf("DEL left %v %v", h.RuleStrings(rules), routes)
	}
	equalSets(t, "altnames", imdsAltNames(t, nl, "eth0"), []string{"eni-0ddd0000000000041", "device-number-1"})
}

// The same client against AWS's own IMDS mock (ec2-metadata-mock v1.13.0,
// IMDSv2 only, bound to 127.0.0.1). AEMM serves one fixed MAC and calls the
// card key network-card-index; its config re-points the keys to our MAC and
// to the real key names, and serves ipv4-prefix through an unused key.
// ipv6s and ipv6-prefix stay absent (404).
func TestIMDSAgainstAEMM(t *testing.T) {
	h.RequireRoot(t)
	aemm := h.Tool(t, "ec2-metadata-mock")
	bin := h.Binary(t)
	const mac = "0a:1e:00:00:05:01"
	base := "/latest/meta-data/network/interfaces/macs/" + mac
	cfg := fmt.Sprintf(`{"metadata":{"paths":{
		"mac-device-number":"%[1]s/device-number",
		"mac-network-interface-card-index":"%[1]s/network-card",
		"mac-network-interface-id":"%[1]s/interface-id",
		"mac-local-ipv4s":"%[1]s/local-ipv4s",
		"mac-subnet-ipv4-cidr-block":"%[1]s/subnet-ipv4-cidr-block",
		"mac-vpc-ipv4-cidr-blocks":"%[1]s/ipv4-prefix"},
	"values":{
		"mac-device-number":"2","mac-network-interface-card-index":"1",
		"mac-network-interface-id":"eni-0eee0000000000051",
		"mac-local-ipv4s":"10.0.5.25\n10.0.5.26","mac-subnet-ipv4-cidr-block":"10.0.5.0/24",
		"mac-vpc-ipv4-cidr-blocks":"10.0.5.64/28"}}}`, base)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "aemm.json")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	url := imdsStartAEMM(t, aemm, cfgPath, dir)

	ns := h.NewNetns(t)
	nl := ns.Handle(t)
	e := h.NewENI(t)
	e.SetMAC(t, mac)
	e.MoveInto(t, ns, "eth1", []string{"10.0.5.25/24"}, "10.0.5.1")
	env := imdsEnv(t, "ADD", ns, "eth1")
	imdsStatePath(t, env)
	conf := imdsConf(t, url, "")
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "ADD against ec2-metadata-mock")
	equalSets(t, "rules", imdsRules(t, nl), []string{
		"from 10.0.5.25/32 lookup 10102 prio 10102",
		"from 10.0.5.26/32 lookup 10102 prio 10102",
		"from 10.0.5.64/28 lookup 10102 prio 10102",
	})
	equalSets(t, "routes", imdsRoutes(t, nl), []string{
		"10102 10.0.5.0/24 dev eth1 src 10.0.5.25",
		"10102 default via 10.0.5.1 dev eth1",
	})
	equalSets(t, "altnames", imdsAltNames(t, nl, "eth1"), []string{"eni-0eee0000000000051", "device-number-2.1"})
	env.Command = "DEL"
	h.Run(context.Background(), t, bin, env, conf).MustSucceed(t, "DEL")
	equalSets(t, "altnames after DEL", imdsAltNames(t, nl, "eth1"), nil)
	h.Run(context.Background(), t, bin, h.Env{Command: "STATUS", Path: "/x"}, conf).MustSucceed(t, "STATUS against ec2-metadata-mock")
}

// imdsStartAEMM runs ec2-metadata-mock on 127.0.0.1 and waits, bounded,
// until it accepts connections.
func imdsStartAEMM(t *testing.T, bin, cfgPath, dir string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-n", "127.0.0.1", "-p", port, "-I", "-c", cfgPath)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var logLines []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			logLines = append(logLines, sc.Text())
		}
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
		_ = cmd.Wait()
	})
	// AEMM logs before it listens: probe the port until it answers.
	addr := "127.0.0.1:" + port
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case <-exited:
			t.Fatalf("ec2-metadata-mock exited: %s", strings.Join(logLines, "\n"))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ec2-metadata-mock not listening on %s after 15s", addr)
		}
	}
}
