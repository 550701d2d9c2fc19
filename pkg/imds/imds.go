// Package imds looks up one ENI's facts in the EC2 instance metadata
// service, IMDSv2 only, through aws-sdk-go-v2's feature/ec2/imds client
// (see session.go).
//
// A Client is meant to live for one plugin invocation: it fetches one
// session token (on its first request) and reuses it, never falls back to
// IMDSv1, retries a request only on 429, 5xx and connection errors (at most
// MaxAttempts times), and bounds every request by the caller's context. It
// asks for the keys a lookup needs, most of them at once. Nothing here runs
// at package init: the SDK client is built by New.
package imds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the IPv4 IMDS endpoint of every EC2 instance.
const DefaultEndpoint = "http://169.254.169.254"

// Metadata keys, relative to network/interfaces/macs/<mac>/ unless noted.
const (
	KeyPrimaryMAC      = "mac" // top level
	KeyDeviceNumber    = "device-number"
	KeyNetworkCard     = "network-card"
	KeyInterfaceID     = "interface-id"
	KeyLocalIPv4s      = "local-ipv4s"
	KeyIPv6s           = "ipv6s"
	KeyIPv4Prefix      = "ipv4-prefix"
	KeyIPv6Prefix      = "ipv6-prefix"
	KeySubnetIPv4CIDR  = "subnet-ipv4-cidr-block"
	KeySubnetIPv6CIDRs = "subnet-ipv6-cidr-blocks"
)

// Per-attempt bounds. The dial bound is the SDK's own; the response
// bound is twice the SDK's 500 ms so a busy but healthy IMDS is not retried into
// throttling. The caller's context bounds the whole lookup.
const (
	dialTimeout           = 250 * time.Millisecond
	responseHeaderTimeout = time.Second
	maxBody               = 64 << 10 // no IMDS answer we read is anywhere near this
)

// Device numbers and card indexes beyond this would make table numbers of
// different cards collide (T = base + 100*card + device).
const maxIndex = 99

// Errors a lookup can end with, besides the context's and transport errors.
var (
	// ErrUnknownMAC: IMDS has no interface with this MAC (not attached to
	// this instance, or the wrong MAC).
	ErrUnknownMAC = errors.New("IMDS lists no network interface with this MAC")
	// ErrNotPropagated: device-number stayed 0 on a MAC that is not the
	// instance's primary one until the context ended.
	ErrNotPropagated = errors.New("ENI attachment not propagated to IMDS yet (device-number still 0)")
	// ErrNotListed: IMDS did not list the MAC (404) until the context
	// ended, while the caller expected it to (a fresh attachment).
	ErrNotListed = errors.New("IMDS does not list this MAC yet")
	// ErrMalformed: IMDS answered 200 with a body that does not parse.
	ErrMalformed = errors.New("malformed IMDS answer")
)

// ENI is what IMDS says about one network interface.
type ENI struct {
	MAC          net.HardwareAddr
	Primary      bool // the instance's primary interface (top-level `mac`)
	DeviceNumber int
	NetworkCard  int
	CardKnown    bool   // false when `network-card` is 404 (single-card types)
	InterfaceID  string // eni-...; empty when IMDS has none
	LocalIPv4s   []netip.Addr
	IPv6s        []netip.Addr
	IPv4Prefixes []netip.Prefix
	IPv6Prefixes []netip.Prefix
	SubnetIPv4   netip.Prefix // invalid when IMDS has none
	SubnetIPv6   []netip.Prefix
}

// Error is a failed lookup of one key.
type Error struct {
	Key    string // path below /latest/meta-data/
	Status int    // HTTP status when IMDS answered, else 0
	Err    error
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("IMDS %s: HTTP %d: %v", e.Key, e.Status, e.Err)
	}
	return fmt.Sprintf("IMDS %s: %v", e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func (c *Client) primaryMAC(ctx context.Context) (net.HardwareAddr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.primary != nil {
		return c.primary, nil
	}
	c.wave()
	body, found, err := c.get(ctx, KeyPrimaryMAC)
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, &Error{Key: KeyPrimaryMAC, Status: http.StatusNotFound, Err: fmt.Errorf("%w: the instance's primary MAC is missing", ErrMalformed)}
	}
	m, err := parseMAC(KeyPrimaryMAC, body)
	if err != nil {
		return nil, err
	}
	c.primary = m
	return m, nil
}

func macKey(mac net.HardwareAddr, key string) string {
	return "network/interfaces/macs/" + strings.ToLower(mac.String()) + "/" + key
}

// keyListing is the MAC's own directory (network/interfaces/macs/<mac>/):
// its answer lists the keys IMDS has for the ENI.
const keyListing = ""

// firstRound is asked together right after the session token: the keys
// every VPC ENI with an IPv4 address has, and the listing, which tells
// which of optionalKeys exist. An IPv4-only ENI on a single-card instance
// type so costs 1 token + 5 GETs in two round trips; asking each optional
// key on the chance that it exists cost 4 more requests (4 404s).
var firstRound = []string{KeyDeviceNumber, keyListing, KeyInterfaceID, KeyLocalIPv4s, KeySubnetIPv4CIDR}

// optionalKeys exist only on some ENIs (multi-card instance types, IPv6,
// delegated prefixes); they are asked, as a third round trip, only when the
// listing names them.
var optionalKeys = []string{KeyNetworkCard, KeyIPv6s, KeyIPv4Prefix, KeyIPv6Prefix, KeySubnetIPv6CIDRs}

// listedOptional is what to ask of optionalKeys after the first round: the
// ones the listing names (the IPv6 subnets only along with an IPv6 source),
// or every one when IMDS serves no listing (404) for a MAC it lists.
func listedOptional(listing result) []string {
	if !listing.found {
		return optionalKeys
	}
	names := map[string]bool{}
	for _, l := range lines(listing.body) {
		names[strings.TrimSuffix(l, "/")] = true
	}
	var out []string
	for _, k := range optionalKeys {
		if names[k] && (k != KeySubnetIPv6CIDRs || names[KeyIPv6s] || names[KeyIPv6Prefix]) {
			out = append(out, k)
		}
	}
	return out
}

// AwaitListing is asked when IMDS answers 404 for a MAC whether IMDS may
// still list it (a fresh attachment): true polls on within the context. It
// may block until it knows, and must return once ctx ends.
type AwaitListing func(ctx context.Context) bool

// Lookup returns the facts of the ENI with this MAC. It waits, polling
// device-number within ctx, while a secondary ENI's attachment propagates;
// a MAC IMDS does not list is ErrUnknownMAC at once.
func (c *Client) Lookup(ctx context.Context, mac net.HardwareAddr) (*ENI, error) {
	return c.LookupAwaiting(ctx, mac, nil)
}

// LookupAwaiting is Lookup that, while await says so, also polls a MAC IMDS
// does not list yet, ending in ErrNotListed when ctx ends first.
func (c *Client) LookupAwaiting(ctx context.Context, mac net.HardwareAddr, await AwaitListing) (*ENI, error) {
	if len(mac) != 6 {
		return nil, &Error{Key: "network/interfaces/macs/", Err: fmt.Errorf("%w: %q is not an Ethernet MAC", ErrUnknownMAC, mac.String())}
	}
	res, err := c.getAll(ctx, mac, firstRound)
	if err != nil {
		return nil, err
	}
	eni := &ENI{MAC: mac}
	current, err := c.settle(ctx, eni, res[KeyDeviceNumber], await)
	if err != nil {
		return nil, err
	}
	if !current {
		// Answered before the attachment propagated: ask again.
		if res, err = c.getAll(ctx, mac, firstRound[1:]); err != nil {
			return nil, err
		}
	}
	if more := listedOptional(res[keyListing]); len(more) > 0 {
		extra, err := c.getAll(ctx, mac, more)
		if err != nil {
			return nil, err
		}
		maps.Copy(res, extra)
	}
	if err := parseFacts(eni, res); err != nil {
		return nil, err
	}
	return eni, nil
}

// settle polls device-number until IMDS lists the MAC with a number that
// can be final: non-zero, or 0 on the instance's primary MAC. current is
// false when it had to poll, so the keys asked with the first answer may
// predate the attachment.
func (c *Client) settle(ctx context.Context, eni *ENI, r result, await AwaitListing) (current bool, err error) {
	poll := c.poll
	for current = true; ; current = false {
		if !r.found {
			if await == nil || !await(ctx) {
				if ctx.Err() != nil {
					return false, &Error{Key: r.key, Status: http.StatusNotFound, Err: fmt.Errorf("%w: %w", ErrNotListed, context.Cause(ctx))}
				}
				return false, &Error{Key: r.key, Status: http.StatusNotFound, Err: ErrUnknownMAC}
			}
		} else {
			n, err := parseIndex(r.key, r.body)
			if err != nil {
				return false, err
			}
			eni.DeviceNumber = n
			if n != 0 {
				return current, nil
			}
			primary, err := c.primaryMAC(ctx)
			if err != nil {
				return false, err
			}
			if strings.EqualFold(primary.String(), eni.MAC.String()) {
				eni.Primary = true
				return current, nil
			}
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, pollEnded(ctx, r)
		case <-t.C:
		}
		poll = min(poll*2, 5*c.poll)
		c.wave()
		body, found, err := c.get(ctx, r.key)
		if err != nil {
			if ctx.Err() != nil {
				return false, pollEnded(ctx, r) // the budget ran out mid-poll
			}
			return false, err
		}
		r.body, r.found = body, found
	}
}

// pollEnded is the error of a poll cut short by ctx, after answer r.
func pollEnded(ctx context.Context, r result) error {
	why := ErrNotPropagated
	if !r.found {
		why = ErrNotListed
	}
	return &Error{Key: r.key, Err: fmt.Errorf("%w: %w", why, context.Cause(ctx))}
}

// parseFacts fills eni from the answers to firstRound and optionalKeys.
func parseFacts(eni *ENI, res map[string]result) error {
	var err error
	if r := res[KeyNetworkCard]; r.found {
		if eni.NetworkCard, err = parseIndex(r.key, r.body); err != nil {
			return err
		}
		eni.CardKnown = true
	}
	if r := res[KeyInterfaceID]; r.found {
		if eni.InterfaceID, err = parseInterfaceID(r.key, r.body); err != nil {
			return err
		}
	}
	if eni.LocalIPv4s, err = parseAddrs(res[KeyLocalIPv4s], true); err != nil {
		return err
	}
	if eni.IPv6s, err = parseAddrs(res[KeyIPv6s], false); err != nil {
		return err
	}
	if eni.IPv4Prefixes, err = parsePrefixes(res[KeyIPv4Prefix], true); err != nil {
		return err
	}
	if eni.IPv6Prefixes, err = parsePrefixes(res[KeyIPv6Prefix], false); err != nil {
		return err
	}
	if len(eni.IPv6s)+len(eni.IPv6Prefixes) > 0 {
		if eni.SubnetIPv6, err = parsePrefixes(res[KeySubnetIPv6CIDRs], false); err != nil {
			return err
		}
	}
	// Asked ahead with the rest: used only when an IPv4 source needs it.
	if r := res[KeySubnetIPv4CIDR]; r.found && len(eni.LocalIPv4s)+len(eni.IPv4Prefixes) > 0 {
		ps, err := parsePrefixes(r, true)
		if err != nil {
			return err
		}
		if len(ps) != 1 {
			return malformed(r.key, r.body, "want exactly one CIDR")
		}
		eni.SubnetIPv4 = ps[0]
	}
	return nil
}

type result struct {
	key   string
	body  string
	found bool
}

// getAll fetches keys of one MAC concurrently, one round trip; the first
// error cancels the rest. The first key is asked on the calling goroutine
// (a lookup is a short chain of these, so no goroutine start sits on it);
// the rest start once the session has its token: started with it they
// would only wait at the gate (see session.go), and building their requests
// meanwhile kept both CPUs of a small host busy, so the token's own answer
// was picked up late (measured: ADD with IMDS 5% slower when the gate sat
// inside the SDK's stack, after that building).
func (c *Client) getAll(ctx context.Context, mac net.HardwareAddr, keys []string) (map[string]result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type item struct {
		name string
		r    result
		err  error
	}
	ch := make(chan item, len(keys))
	c.wave()
	started := make(chan int, 1) // how many of the rest were started
	go func() {
		select {
		case <-c.tokenReady:
		case <-ctx.Done():
			started <- 0
			return
		}
		for _, k := range keys[1:] {
			go func() {
				key := macKey(mac, k)
				body, found, err := c.get(ctx, key)
				ch <- item{k, result{key, body, found}, err}
			}()
		}
		started <- len(keys) - 1
	}()
	key := macKey(mac, keys[0])
	body, found, first := c.get(ctx, key)
	if first != nil {
		cancel(first)
	}
	out := map[string]result{keys[0]: {key, body, found}}
	for pending := <-started; pending > 0; pending-- {
		it := <-ch
		if it.err != nil && first == nil {
			first = it.err
			cancel(it.err)
		}
		out[it.name] = it.r
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}

func malformed(key, body, why string) error {
	if len(body) > 64 {
		body = body[:64] + "..."
	}
	return &Error{Key: key, Err: fmt.Errorf("%w: %s in %q", ErrMalformed, why, body)}
}

func lines(body string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func parseIndex(key, body string) (int, error) {
	ls := lines(body)
	if len(ls) != 1 {
		return 0, malformed(key, body, "want one number")
	}
	n, err := strconv.Atoi(ls[0])
	if err != nil || n < 0 || n > maxIndex {
		return 0, malformed(key, body, fmt.Sprintf("want a number in 0..%d", maxIndex))
	}
	return n, nil
}

func parseMAC(key, body string) (net.HardwareAddr, error) {
	ls := lines(body)
	if len(ls) != 1 {
		return nil, malformed(key, body, "want one MAC")
	}
	m, err := net.ParseMAC(ls[0])
	if err != nil || len(m) != 6 {
		return nil, malformed(key, body, "want an Ethernet MAC")
	}
	return m, nil
}

// parseInterfaceID accepts eni-<hex>, which is also a valid link altname
// (ALTIFNAMSIZ is 128). No regexp: package init stays free.
func parseInterfaceID(key, body string) (string, error) {
	ls := lines(body)
	ok := len(ls) == 1 && len(ls[0]) > 4 && len(ls[0]) <= 104 && strings.HasPrefix(ls[0], "eni-")
	if ok {
		for _, c := range ls[0][4:] {
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				ok = false
				break
			}
		}
	}
	if !ok {
		return "", malformed(key, body, "want one eni-<hex> id")
	}
	return ls[0], nil
}

func parseAddrs(r result, v4 bool) ([]netip.Addr, error) {
	if !r.found {
		return nil, nil
	}
	var out []netip.Addr
	for _, l := range lines(r.body) {
		a, err := netip.ParseAddr(l)
		if err != nil || a.Zone() != "" || a.Is4() != v4 || a.Is4In6() {
			return nil, malformed(r.key, r.body, "want one "+family(v4)+" address per line")
		}
		out = append(out, a)
	}
	return out, nil
}

func parsePrefixes(r result, v4 bool) ([]netip.Prefix, error) {
	if !r.found {
		return nil, nil
	}
	var out []netip.Prefix
	for _, l := range lines(r.body) {
		p, err := netip.ParsePrefix(l)
		if err != nil || p.Addr().Is4() != v4 || p.Addr().Is4In6() {
			return nil, malformed(r.key, r.body, "want one "+family(v4)+" CIDR per line")
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func family(v4 bool) string {
	if v4 {
		return "IPv4"
	}
	return "IPv6"
}
