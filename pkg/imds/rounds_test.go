package imds_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/imds"
)

// The README's cost of a lookup: an IPv4-only ENI is 1 token + 8 GETs in
// two round trips; dual stack adds the IPv6 subnets as a third; the
// primary ENI (device 0) adds `mac` as a third.
func TestRequestsAndRoundTrips(t *testing.T) {
	dual := secondary()
	dual.IPv6s, dual.SubnetIPv6 = []string{"2001:db8:1::25"}, []string{"2001:db8:1::/64"}
	prim := secondary()
	prim.MAC, prim.DeviceNumber = primaryMAC, 0
	for _, tc := range []struct {
		name             string
		eni              func() (string, []string)
		requests, rounds int
	}{
		{"IPv4 only", func() (string, []string) { return eniMAC, nil }, 9, 2},
		{"dual stack", func() (string, []string) { return eniMAC, []string{"dual"} }, 10, 3},
		{"primary ENI", func() (string, []string) { return primaryMAC, []string{"primary"} }, 10, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, kind := tc.eni()
			e := secondary()
			switch {
			case len(kind) > 0 && kind[0] == "dual":
				e = dual
			case len(kind) > 0 && kind[0] == "primary":
				e = prim
			}
			f, c := start(t, e)
			if _, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, m)); err != nil {
				t.Fatal(err)
			}
			if f.TokensIssued() != 1 || f.Count() != tc.requests || c.Requests() != tc.requests || c.RoundTrips() != tc.rounds {
				t.Errorf("%d tokens, %d requests (client %d), %d round trips; want 1, %d, %d: %v",
					f.TokensIssued(), f.Count(), c.Requests(), c.RoundTrips(), tc.requests, tc.rounds, paths(f))
			}
		})
	}
}

func always(v bool) imds.AwaitListing { return func(context.Context) bool { return v } }

// A MAC IMDS lists only after a few asks (a fresh attachment) is polled and
// found when awaited; the answers given while it was unlisted are not used.
func TestLateListedMAC(t *testing.T) {
	e := secondary()
	e.ListAfter = 3
	f, c := start(t, e)
	eni, err := c.LookupAwaiting(ctxT(t, 3*time.Second), mac(t, eniMAC), always(true))
	if err != nil {
		t.Fatal(err)
	}
	if eni.DeviceNumber != 2 || len(eni.LocalIPv4s) != 2 || !eni.SubnetIPv4.IsValid() {
		t.Errorf("facts after listing: %+v", eni)
	}
	n := 0
	for _, r := range f.Requests() {
		if strings.HasSuffix(r.Path, "/device-number") {
			n++
		}
	}
	// 3 unlisted asks, the 4th finds it; then the other 7 keys again.
	if n != 4 || f.TokensIssued() != 1 || f.Count() != 1+8+3+7 {
		t.Errorf("device-number asked %d times (want 4), %d tokens, %d requests: %v", n, f.TokensIssued(), f.Count(), paths(f))
	}
}

// Not awaited (Lookup, or await says no): a 404 is final at once, one round
// of requests. Awaited and never listed: ErrNotListed when ctx ends.
func TestUnlistedMAC(t *testing.T) {
	e := secondary()
	e.ListAfter = 1 << 30
	for _, tc := range []struct {
		name   string
		await  imds.AwaitListing
		want   error
		budget time.Duration
	}{
		{"not awaited", nil, imds.ErrUnknownMAC, 3 * time.Second},
		{"await says no", always(false), imds.ErrUnknownMAC, 3 * time.Second},
		{"awaited, never listed", always(true), imds.ErrNotListed, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := start(t, e)
			t0 := time.Now()
			_, err := c.LookupAwaiting(ctxT(t, tc.budget), mac(t, eniMAC), tc.await)
			el := time.Since(t0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if tc.want == imds.ErrUnknownMAC && (f.Count() != 9 || el > 500*time.Millisecond) {
				t.Errorf("took %v and %d requests, want one round (9)", el, f.Count())
			}
			if tc.want == imds.ErrNotListed && (el < tc.budget || el > tc.budget+100*time.Millisecond) {
				t.Errorf("ended after %v, want at the %v budget", el, tc.budget)
			}
		})
	}
}

// await may block until the caller knows (the link's kind): the lookup
// waits for its verdict and acts on it.
func TestAwaitListingBlocksUntilDecided(t *testing.T) {
	e := secondary()
	e.ListAfter = 1 << 30
	_, c := start(t, e)
	asked := make(chan struct{})
	verdict := make(chan bool)
	await := func(ctx context.Context) bool {
		close(asked)
		select {
		case v := <-verdict:
			return v
		case <-ctx.Done():
			return false
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.LookupAwaiting(ctxT(t, 3*time.Second), mac(t, eniMAC), await)
		done <- err
	}()
	<-asked
	verdict <- false
	if err := <-done; !errors.Is(err, imds.ErrUnknownMAC) {
		t.Fatalf("err %v", err)
	}
}
