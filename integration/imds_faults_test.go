package integration

// Reliability: IMDS faults through the binary (issue 4, scenario 9), against
// the in-process fake (internal/imdsfake) and two transports of our own: a
// closed port (IMDS down) and a listener whose accept queue is full, so the
// kernel drops every SYN (IMDS black-holed). Each fault ends ADD within
// imds.timeout (+ process overhead) with the documented code, nothing
// installed: no rule, route, altname or ownership record.

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
)

const (
	faultMAC     = "0a:1e:00:00:09:01"
	faultPrimary = "0a:1e:00:00:09:00"
	faultBudget  = time.Second
	// faultSlack covers process start, the link wait and a loaded 2-core
	// machine on top of imds.timeout.
	faultSlack = 400 * time.Millisecond
)

func faultENI() imdsfake.ENI {
	return imdsfake.ENI{
		MAC: faultMAC, DeviceNumber: 1, InterfaceID: "eni-0fa01700000000901",
		LocalIPv4s: []string{"10.0.90.25"}, SubnetIPv4: "10.0.90.0/24",
	}
}

// closedPort returns a URL on which nothing listens: connection refused.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// blackHole returns a URL whose listener never accepts and whose accept
// queue is full: the kernel drops every further SYN, as a firewall DROP
// rule would.
func blackHole(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	// With backlog 0 one connection fills the accept queue.
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if c2, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c2.Close()
		t.Skip("the kernel accepted a connection beyond the full accept queue; cannot black-hole")
	}
	return "http://" + addr
}

// TestIMDSFaults: one ADD per fault, on a fresh namespace and fake.
func TestIMDSFaults(t *testing.T) {
	rep := scenario(t, "I1", "IMDS faults: down, black-holed, slow, hanging, 404 per key, 429, 5xx, malformed bodies, wrong MAC")
	h.RequireRoot(t)
	big := strings.Repeat("10.0.90.25\n", 10000) // > 64 KiB
	type tc struct {
		name     string
		fault    func(f *imdsfake.Fake)
		endpoint func(t *testing.T) string
		eni      func(e *imdsfake.ENI)
		mac      string // the link's MAC when not faultMAC
		code     uint   // 0: ADD succeeds (the fault is tolerated)
		msg      string
		atBudget bool // the fault can only end at imds.timeout
	}
	status := func(suffix string, code, times int) func(f *imdsfake.Fake) {
		return func(f *imdsfake.Fake) { f.Fail(suffix, code, times) }
	}
	raw := func(suffix, body string) func(f *imdsfake.Fake) {
		return func(f *imdsfake.Fake) { f.SetRaw(suffix, body) }
	}
	cases := []tc{
		{name: "down (connection refused)", endpoint: closedPort, code: 11, msg: "unavailable"},
		{name: "black-holed (SYNs dropped)", endpoint: blackHole, code: 11, msg: "nothing was installed"},
		// The client's per-request bound (1 s) and the budget (1 s) end
		// together here: either message, code 11, at the budget.
		{name: "accepts and never answers", fault: func(f *imdsfake.Fake) { f.SetHang(true) }, code: 11, msg: "nothing was installed", atBudget: true},
		// Each answer within the client's per-request bound (1 s), the
		// lookup's sequence of them beyond the 1 s budget.
		{name: "slower than the budget (700ms per answer)", fault: func(f *imdsfake.Fake) { f.SetLatency(700 * time.Millisecond) }, code: 11, msg: "did not answer within imds.timeout 1s", atBudget: true},
		{name: "answers slower than the per-request bound (2s)", fault: func(f *imdsfake.Fake) { f.SetLatency(2 * time.Second) }, code: 11, msg: "nothing was installed", atBudget: true},
		{name: "slow within the budget (100ms per answer)", fault: func(f *imdsfake.Fake) { f.SetLatency(100 * time.Millisecond) }},
		{name: "not propagated (device-number stays 0)", eni: func(e *imdsfake.ENI) { e.PropagateAfter = 1 << 30 }, code: 11, msg: "not propagated", atBudget: true},
		{name: "wrong MAC (link not known to IMDS)", mac: "0a:1e:00:00:09:99", code: 7, msg: "lists no network interface with MAC 0a:1e:00:00:09:99"},

		{name: "429 on the token, always", fault: status("api/token", 429, -1), code: 11, msg: "unavailable"},
		{name: "429 on device-number, always", fault: status("/device-number", 429, -1), code: 11, msg: "unavailable"},
		{name: "429 twice, then answers", fault: status("/device-number", 429, 2)},
		{name: "500 on local-ipv4s, always", fault: status("/local-ipv4s", 500, -1), code: 11, msg: "unavailable"},
		{name: "503 on subnet-ipv4-cidr-block, always", fault: status("/subnet-ipv4-cidr-block", 503, -1), code: 11, msg: "unavailable"},
		{name: "500 on the token, always", fault: status("api/token", 500, -1), code: 11, msg: "unavailable"},
		{name: "403 on interface-id", fault: status("/interface-id", 403, -1), code: 5, msg: "refused"},

		{name: "404 on the token", fault: status("api/token", 404, -1), code: 11, msg: "failed to get API token"},
		{name: "404 on device-number", fault: status("/device-number", 404, -1), code: 7, msg: "lists no network interface"},
		{name: "404 on network-card (single-card type: card 0)", fault: status("/network-card", 404, -1)},
		{name: "404 on interface-id (no eni- altname)", fault: status("/interface-id", 404, -1)},
		{name: "404 on local-ipv4s", fault: status("/local-ipv4s", 404, -1)},
		{name: "404 on ipv6s (none)", fault: status("/ipv6s", 404, -1)},
		{name: "404 on ipv4-prefix (none)", fault: status("/ipv4-prefix", 404, -1)},
		{name: "404 on ipv6-prefix (none)", fault: status("/ipv6-prefix", 404, -1)},
		{name: "404 on subnet-ipv4-cidr-block", fault: status("/subnet-ipv4-cidr-block", 404, -1)},
		{name: "404 on the primary mac (asked for device 0)", eni: func(e *imdsfake.ENI) { e.DeviceNumber = 0 }, fault: status("latest/meta-data/mac", 404, -1), code: 5, msg: "primary MAC"},

		{name: "malformed device-number", fault: raw("/device-number", "one"), code: 5, msg: "device-number"},
		{name: "negative device-number", fault: raw("/device-number", "-1"), code: 5, msg: "device-number"},
		{name: "huge device-number", fault: raw("/device-number", "4294967296"), code: 5, msg: "device-number"},
		{name: "malformed network-card", fault: raw("/network-card", "x"), code: 5, msg: "network-card"},
		{name: "malformed local-ipv4s", fault: raw("/local-ipv4s", "999.1.1.1"), code: 5, msg: "local-ipv4s"},
		{name: "IPv6 in local-ipv4s", fault: raw("/local-ipv4s", "2001:db8::1"), code: 5, msg: "local-ipv4s"},
		{name: "malformed ipv4-prefix", fault: raw("/ipv4-prefix", "10.0.90.0/33"), code: 5, msg: "ipv4-prefix"},
		{name: "malformed subnet-ipv4-cidr-block", fault: raw("/subnet-ipv4-cidr-block", "a subnet"), code: 5, msg: "subnet-ipv4-cidr-block"},
		{name: "interface-id that is a path", fault: raw("/interface-id", "../../etc/passwd"), code: 5, msg: "interface-id"},
		{name: "binary garbage in local-ipv4s", fault: raw("/local-ipv4s", "\x00\xff\xfe\n\x1b[2J"), code: 5, msg: "local-ipv4s"},
		// Cut at 64 KiB this list would end in "10.0.90.2": a valid, wrong
		// address. Refused whole (regression).
		{name: "body over 64 KiB", fault: raw("/local-ipv4s", big), code: 5, msg: "larger than"},
	}
	counts := map[string]int{}
	var slowest time.Duration
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := h.NewNetns(t)
			nl := ns.Handle(t)
			eni := h.NewENI(t)
			mac := faultMAC
			if c.mac != "" {
				mac = c.mac
			}
			eni.SetMAC(t, mac)
			eni.MoveInto(t, ns, "eth1", []string{"10.0.90.25/24"}, "10.0.90.1")
			e := faultENI()
			if c.eni != nil {
				c.eni(&e)
			}
			primary := faultPrimary
			fake := imdsfake.New(primary, e)
			url := imdsfake.Start(t, fake)
			if c.fault != nil {
				c.fault(fake)
			}
			if c.endpoint != nil {
				url = c.endpoint(t)
			}
			conf := []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"imds-faults","type":"ec2-policy-routes","linkTimeout":"5s","imds":{"endpoint":%q,"timeout":"1s"}}`, url))
			r, add := runPlugin(t, cniEnv("ADD", ns, "eth1"), conf)
			if r.Duration > faultBudget+faultSlack {
				t.Fatalf("ADD took %s, want <= imds.timeout %s + %s", r.Duration, faultBudget, faultSlack)
			}
			if c.atBudget && r.Duration < faultBudget {
				t.Fatalf("ADD ended after %s, before imds.timeout", r.Duration)
			}
			slowest = max(slowest, r.Duration)
			if c.code == 0 {
				r.MustSucceed(t, "ADD")
				if ru, _ := oursCount(t, nl); ru == 0 {
					t.Fatal("ADD succeeded without installing a rule")
				}
				d, del := runPlugin(t, cniEnv("DEL", ns, "eth1"), conf)
				d.MustSucceed(t, "DEL")
				assertNoResidue(t, []*h.Netns{ns}, add, del)
				counts["tolerated (ADD ok, DEL clean)"]++
				rep.add("%s: ADD ok in %s", c.name, r.Duration.Round(time.Millisecond))
				return
			}
			mustFail(t, r, "ADD", c.code, c.msg)
			if c.endpoint == nil && !strings.Contains(r.Err.Msg, url) {
				t.Fatalf("message does not name the endpoint %s: %q", url, r.Err.Msg)
			}
			assertNoResidue(t, []*h.Netns{ns}, add)
			d, del := runPlugin(t, cniEnv("DEL", ns, "eth1"), conf)
			d.MustSucceed(t, "DEL after the failed ADD")
			assertNoResidue(t, []*h.Netns{ns}, del)
			counts[fmt.Sprintf("code %d", r.Err.Code)]++
			rep.add("%s: ADD exit 1 code %d in %s, nothing installed", c.name, r.Err.Code, r.Duration.Round(time.Millisecond))
		})
	}
	var parts []string
	for _, k := range []string{"code 11", "code 7", "code 5", "tolerated (ADD ok, DEL clean)"} {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, counts[k]))
	}
	rep.add("**%d faults**: %s; every ADD within imds.timeout 1s + %s (slowest %s); no rule, route, altname or ownership record after a failure",
		len(cases), strings.Join(parts, ", "), faultSlack, slowest.Round(time.Millisecond))
}

// TestIMDSFaultsStatus: STATUS with IMDS enabled reports code 50 within
// imds.timeout when IMDS is down, black-holed or hanging.
func TestIMDSFaultsStatus(t *testing.T) {
	rep := scenario(t, "I2", "STATUS with IMDS down, black-holed or hanging: code 50 within the budget")
	h.RequireRoot(t)
	for _, c := range []struct {
		name     string
		endpoint func(t *testing.T) string
	}{
		{"down", closedPort},
		{"black-holed", blackHole},
		{"hanging", func(t *testing.T) string {
			f := imdsfake.New(faultPrimary)
			f.SetHang(true)
			return imdsfake.Start(t, f)
		}},
		{"500 always", func(t *testing.T) string {
			f := imdsfake.New(faultPrimary)
			f.Fail("api/token", http.StatusInternalServerError, -1)
			return imdsfake.Start(t, f)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			url := c.endpoint(t)
			conf := []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"imds-faults","type":"ec2-policy-routes","imds":{"endpoint":%q,"timeout":"1s"}}`, url))
			r, p := runPlugin(t, h.Env{Command: "STATUS", Path: "/nonexistent"}, conf)
			mustFail(t, r, "STATUS", types.ErrPluginNotAvailable, url)
			if r.Duration > faultBudget+faultSlack {
				t.Fatalf("STATUS took %s", r.Duration)
			}
			assertNoResidue(t, nil, p)
			rep.add("%s: STATUS exit 1 code 50 in %s", c.name, r.Duration.Round(time.Millisecond))
		})
	}
}
