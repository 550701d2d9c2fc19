package imds_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/imds"
)

// The README's cost of a lookup: an IPv4-only ENI on a single-card
// instance type is 1 token + 5 GETs (device-number, the MAC's listing,
// interface-id, local-ipv4s, subnet-ipv4-cidr-block) in two round trips;
// each optional key the listing names (network-card, prefixes, IPv6
// addresses and subnets) goes in a third; the primary ENI (device 0) adds
// `mac` as a third.
func TestRequestsAndRoundTrips(t *testing.T) {
	plain := secondary()
	plain.NetworkCard, plain.IPv4Prefixes = nil, nil
	dual := plain
	dual.IPv6s, dual.SubnetIPv6 = []string{"2001:db8:1::25"}, []string{"2001:db8:1::/64"}
	prim := plain
	prim.MAC, prim.DeviceNumber = primaryMAC, 0
	for _, tc := range []struct {
		name             string
		eni              imdsfake.ENI
		requests, rounds int
	}{
		{"IPv4 only, single card", plain, 6, 2},
		{"multi-card, with a prefix", secondary(), 8, 3},
		{"dual stack", dual, 8, 3},
		{"primary ENI", prim, 7, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := start(t, tc.eni)
			if _, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, tc.eni.MAC)); err != nil {
				t.Fatal(err)
			}
			if f.TokensIssued() != 1 || f.Count() != tc.requests || c.Requests() != tc.requests || c.RoundTrips() != tc.rounds {
				t.Errorf("%d tokens, %d requests (client %d), %d round trips; want 1, %d, %d: %v",
					f.TokensIssued(), f.Count(), c.Requests(), c.RoundTrips(), tc.requests, tc.rounds, paths(f))
			}
		})
	}
}

// An IMDS that serves no listing for the MAC (404 on its directory while
// its keys answer) costs the optional keys asked blind, not a wrong answer.
func TestNoListingAsksEveryOptionalKey(t *testing.T) {
	e := secondary()
	e.IPv6s, e.SubnetIPv6 = []string{"2001:db8:1::25"}, []string{"2001:db8:1::/64"}
	f, c := start(t, e)
	f.Fail("/"+e.MAC+"/", http.StatusNotFound, -1)
	eni, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, e.MAC))
	if err != nil {
		t.Fatal(err)
	}
	if !eni.CardKnown || eni.NetworkCard != 1 || len(eni.IPv4Prefixes) != 1 || len(eni.IPv6s) != 1 || len(eni.SubnetIPv6) != 1 {
		t.Errorf("facts without a listing: %+v", eni)
	}
	if f.Count() != 1+5+len(imds.OptionalKeys) {
		t.Errorf("%d requests, want token + 5 + %d: %v", f.Count(), len(imds.OptionalKeys), paths(f))
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
	// 3 unlisted asks, the 4th finds it; then the other 4 first-round keys
	// again, and the 2 optional ones the listing names.
	if n != 4 || f.TokensIssued() != 1 || f.Count() != 1+5+3+4+2 {
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
			if errors.Is(tc.want, imds.ErrUnknownMAC) && (f.Count() != 6 || el > 500*time.Millisecond) {
				t.Errorf("took %v and %d requests, want one round (token + 5)", el, f.Count())
			}
			if errors.Is(tc.want, imds.ErrNotListed) && (el < tc.budget || el > tc.budget+100*time.Millisecond) {
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
