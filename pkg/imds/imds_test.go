package imds_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/imds"
)

const (
	primaryMAC = "0a:00:00:00:00:01"
	eniMAC     = "0a:00:00:00:00:02"
)

func secondary() imdsfake.ENI {
	return imdsfake.ENI{
		MAC:          eniMAC,
		DeviceNumber: 2,
		NetworkCard:  imdsfake.Card(1),
		InterfaceID:  "eni-0123456789abcdef0",
		LocalIPv4s:   []string{"10.0.1.25", "10.0.1.26"},
		IPv4Prefixes: []string{"10.0.1.48/28"},
		SubnetIPv4:   "10.0.1.0/24",
	}
}

func mac(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func start(t *testing.T, enis ...imdsfake.ENI) (*imdsfake.Fake, *imds.Client) {
	t.Helper()
	f := imdsfake.New(primaryMAC, enis...)
	url := imdsfake.Start(t, f)
	return f, imds.New(imds.Options{Endpoint: url, PropagationPoll: 10 * time.Millisecond})
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func paths(f *imdsfake.Fake) []string {
	var out []string
	for _, r := range f.Requests() {
		out = append(out, r.Method+" "+strings.TrimPrefix(r.Path, "/latest/meta-data/network/interfaces/macs/"+eniMAC+"/"))
	}
	slices.Sort(out)
	return out
}

func TestLookupSecondaryENI(t *testing.T) {
	f, c := start(t, secondary())
	eni, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, eniMAC))
	if err != nil {
		t.Fatal(err)
	}
	if eni.DeviceNumber != 2 || eni.NetworkCard != 1 || !eni.CardKnown || eni.Primary {
		t.Errorf("numbering: %+v", eni)
	}
	if eni.InterfaceID != "eni-0123456789abcdef0" {
		t.Errorf("interface id %q", eni.InterfaceID)
	}
	want4 := []netip.Addr{netip.MustParseAddr("10.0.1.25"), netip.MustParseAddr("10.0.1.26")}
	if !slices.Equal(eni.LocalIPv4s, want4) {
		t.Errorf("local-ipv4s %v", eni.LocalIPv4s)
	}
	if len(eni.IPv4Prefixes) != 1 || eni.IPv4Prefixes[0] != netip.MustParsePrefix("10.0.1.48/28") {
		t.Errorf("ipv4-prefix %v", eni.IPv4Prefixes)
	}
	if eni.SubnetIPv4 != netip.MustParsePrefix("10.0.1.0/24") || eni.SubnetIPv6 != nil || eni.IPv6s != nil || eni.IPv6Prefixes != nil {
		t.Errorf("subnets/v6: %+v", eni)
	}
	// One token; the first round (device-number, the MAC's listing, its
	// interface id, addresses and IPv4 subnet); then the optional keys the
	// listing names (its card, its prefix). No IPv6 source, so no IPv6
	// keys; device-number != 0, so no `mac`.
	want := []string{
		"GET ", "GET device-number", "GET interface-id", "GET ipv4-prefix",
		"GET local-ipv4s", "GET network-card", "GET subnet-ipv4-cidr-block", "PUT /latest/api/token",
	}
	if got := paths(f); !slices.Equal(got, want) {
		t.Errorf("requests:\n got %v\nwant %v", got, want)
	}
	if f.TokensIssued() != 1 || c.Requests() != len(want) {
		t.Errorf("tokens %d, client requests %d", f.TokensIssued(), c.Requests())
	}
}

func TestLookupDualStackAndIPv6Prefix(t *testing.T) {
	e := secondary()
	e.IPv6s = []string{"2001:db8:1::25"}
	e.IPv6Prefixes = []string{"2001:db8:1:0:1::/80"}
	e.SubnetIPv6 = []string{"2001:db8:1::/64", "2001:db8:2::/64"}
	f, c := start(t, e)
	eni, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, eniMAC))
	if err != nil {
		t.Fatal(err)
	}
	if len(eni.IPv6s) != 1 || len(eni.IPv6Prefixes) != 1 || len(eni.SubnetIPv6) != 2 {
		t.Errorf("v6 facts: %+v", eni)
	}
	// token + first round (5) + card, both prefixes, ipv6s, IPv6 subnets.
	if f.Count() != 11 {
		t.Errorf("dual stack lookup made %d requests, want 11: %v", f.Count(), paths(f))
	}
}

func TestNetworkCard404MeansCardZero(t *testing.T) {
	e := secondary()
	e.NetworkCard = nil
	_, c := start(t, e)
	eni, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, eniMAC))
	if err != nil {
		t.Fatal(err)
	}
	if eni.NetworkCard != 0 || eni.CardKnown {
		t.Errorf("card %d known %v", eni.NetworkCard, eni.CardKnown)
	}
}

func TestPrefix404MeansNone(t *testing.T) {
	e := secondary()
	e.IPv4Prefixes = nil
	_, c := start(t, e)
	eni, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, eniMAC))
	if err != nil {
		t.Fatal(err)
	}
	if eni.IPv4Prefixes != nil || eni.IPv6Prefixes != nil {
		t.Errorf("prefixes %v %v", eni.IPv4Prefixes, eni.IPv6Prefixes)
	}
}

func TestPrimaryENIDeviceZero(t *testing.T) {
	e := secondary()
	e.MAC, e.DeviceNumber = primaryMAC, 0
	f, c := start(t, e)
	eni, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, primaryMAC))
	if err != nil {
		t.Fatal(err)
	}
	if !eni.Primary || eni.DeviceNumber != 0 {
		t.Errorf("%+v", eni)
	}
	if f.TokensIssued() != 1 {
		t.Errorf("tokens %d", f.TokensIssued())
	}
}

func TestLatePropagation(t *testing.T) {
	e := secondary()
	e.PropagateAfter = 3
	f, c := start(t, e)
	eni, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, eniMAC))
	if err != nil {
		t.Fatal(err)
	}
	if eni.DeviceNumber != 2 {
		t.Errorf("device %d", eni.DeviceNumber)
	}
	n := 0
	macReads := 0
	for _, r := range f.Requests() {
		if strings.HasSuffix(r.Path, "/device-number") {
			n++
		}
		if r.Path == "/latest/meta-data/mac" {
			macReads++
		}
	}
	if n != 4 || macReads != 1 || f.TokensIssued() != 1 {
		t.Errorf("device-number read %d times (want 4), mac %d times (want 1), tokens %d", n, macReads, f.TokensIssued())
	}
}

func TestNotPropagatedWithinBudget(t *testing.T) {
	e := secondary()
	e.PropagateAfter = 1 << 30
	_, c := start(t, e)
	budget := 300 * time.Millisecond
	t0 := time.Now()
	_, err := c.Lookup(ctxT(t, budget), mac(t, eniMAC))
	el := time.Since(t0)
	if !errors.Is(err, imds.ErrNotPropagated) {
		t.Fatalf("err %v, want ErrNotPropagated", err)
	}
	if el > budget+100*time.Millisecond {
		t.Errorf("took %v, budget %v", el, budget)
	}
}

func TestUnknownMAC(t *testing.T) {
	_, c := start(t, secondary())
	_, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, "0a:00:00:00:00:99"))
	if !errors.Is(err, imds.ErrUnknownMAC) {
		t.Fatalf("err %v", err)
	}
}

func TestRetriesThrottlingAndServerErrors(t *testing.T) {
	for _, status := range []int{429, 500, 503} {
		f, c := start(t, secondary())
		f.Fail("/local-ipv4s", status, 2)
		if _, err := c.Lookup(ctxT(t, 5*time.Second), mac(t, eniMAC)); err != nil {
			t.Fatalf("status %d twice, then ok: %v", status, err)
		}
		if f.Count() != 10 {
			t.Errorf("status %d: %d requests, want 8 + 2 retries", status, f.Count())
		}
	}
}

func TestRetriesAreBounded(t *testing.T) {
	f, c := start(t, secondary())
	f.Fail("/local-ipv4s", 500, -1)
	_, err := c.Lookup(ctxT(t, 5*time.Second), mac(t, eniMAC))
	var ie *imds.Error
	if !errors.As(err, &ie) || ie.Status != 500 {
		t.Fatalf("err %v", err)
	}
	n := 0
	for _, r := range f.Requests() {
		if strings.HasSuffix(r.Path, "/local-ipv4s") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("local-ipv4s tried %d times, want 3", n)
	}
}

func TestNoRetryOnClientErrors(t *testing.T) {
	f, c := start(t, secondary())
	f.Fail("/device-number", http.StatusForbidden, -1)
	_, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, eniMAC))
	var ie *imds.Error
	if !errors.As(err, &ie) || ie.Status != 403 {
		t.Fatalf("err %v", err)
	}
	// Not retried: one device-number GET (the rest of the first round goes
	// along with it, once each, so at most token + 5).
	n := 0
	for _, r := range f.Requests() {
		if strings.HasSuffix(r.Path, "/device-number") {
			n++
		}
	}
	if n != 1 || f.Count() > 6 {
		t.Errorf("device-number asked %d times, %d requests: %v", n, f.Count(), f.Requests())
	}
}

func TestTokenFailureIsNotMultiplied(t *testing.T) {
	f, c := start(t, secondary())
	f.Fail("/latest/api/token", 500, -1)
	if _, err := c.Lookup(ctxT(t, 5*time.Second), mac(t, eniMAC)); err == nil {
		t.Fatal("want error")
	}
	// 3 token attempts, no metadata GET, no outer retry of the whole.
	if f.Count() != 3 {
		t.Errorf("%d requests: %v", f.Count(), f.Requests())
	}
}

func TestGarbageBodies(t *testing.T) {
	for suffix, body := range map[string]string{
		"/device-number":          "banana",
		"/network-card":           "-1",
		"/local-ipv4s":            "10.0.1.25\n999.0.0.1",
		"/ipv6s":                  "10.0.0.1",
		"/ipv4-prefix":            "10.0.1.48",
		"/subnet-ipv4-cidr-block": "10.0.1.0/24\n10.0.2.0/24",
		"/interface-id":           "eni-ZZ; rm -rf /",
	} {
		f, c := start(t, secondary())
		f.SetRaw(suffix, body)
		_, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, eniMAC))
		if !errors.Is(err, imds.ErrMalformed) {
			t.Errorf("%s=%q: err %v, want ErrMalformed", suffix, body, err)
		}
	}
}

func TestHangingIMDSRespectsContext(t *testing.T) {
	f, c := start(t, secondary())
	f.SetHang(true)
	budget := 400 * time.Millisecond
	t0 := time.Now()
	_, err := c.Lookup(ctxT(t, budget), mac(t, eniMAC))
	el := time.Since(t0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	if el > budget+100*time.Millisecond {
		t.Errorf("took %v with budget %v", el, budget)
	}
}

func TestLatencyCostsRoundTripsNotKeys(t *testing.T) {
	e := secondary()
	e.NetworkCard, e.IPv4Prefixes = nil, nil // no optional key: no third round
	f, c := start(t, e)
	lat := 60 * time.Millisecond
	f.SetLatency(lat)
	t0 := time.Now()
	if _, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, eniMAC)); err != nil {
		t.Fatal(err)
	}
	// token, then the 5 first-round GETs at once: 2 round trips, not 6.
	if el := time.Since(t0); el > 2*lat+lat*3/2 {
		t.Errorf("took %v at %v per request", el, lat)
	}
}

func TestConnectionRefusedIsRetriedAndBounded(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := imds.New(imds.Options{Endpoint: "http://" + addr})
	t0 := time.Now()
	err = c.Ping(ctxT(t, 3*time.Second))
	if err == nil {
		t.Fatal("want error")
	}
	if c.Requests() != 3 {
		t.Errorf("%d attempts, want 3", c.Requests())
	}
	if el := time.Since(t0); el > 2*time.Second {
		t.Errorf("took %v", el)
	}
}

func TestNoIMDSv1(t *testing.T) {
	// The fake refuses GETs without a token, as an IMDSv2-only instance.
	f := imdsfake.New(primaryMAC, secondary())
	url := imdsfake.Start(t, f)
	resp, err := http.Get(url + "/latest/meta-data/mac")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without token: %d", resp.StatusCode)
	}
	// And the client never tries without one: a failing token endpoint
	// ends the lookup instead of falling back.
	f.Fail("/latest/api/token", http.StatusForbidden, -1)
	c := imds.New(imds.Options{Endpoint: url})
	if _, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, eniMAC)); err == nil {
		t.Fatal("lookup succeeded without a token")
	}
	for _, r := range f.Requests() {
		if r.Method == http.MethodGet && r.Status != http.StatusUnauthorized {
			t.Errorf("GET without token reached metadata: %+v", r)
		}
	}
}
