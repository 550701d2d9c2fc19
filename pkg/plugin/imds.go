package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/blocking"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/imds"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// IMDSMetadata is the MetadataSource backed by EC2 IMDSv2. It holds no
// invocation state: each verb opens its own session.
type IMDSMetadata struct {
	// Options tunes the client (tests); Endpoint is always the config's.
	Options imds.Options
}

// NewIMDSMetadata returns an IMDS-backed source; it does no I/O.
func NewIMDSMetadata() *IMDSMetadata { return &IMDSMetadata{} }

// Open starts an invocation's session; it does no I/O (the client is built
// on first use, so an invocation that never asks costs nothing).
func (m *IMDSMetadata) Open(cfg *config.Config) MetadataSession {
	return &IMDSSession{cfg: cfg, options: m.Options}
}

// Lookup is a one-off lookup in a session of its own (tests, tools).
func (m *IMDSMetadata) Lookup(ctx context.Context, cfg *config.Config, mac net.HardwareAddr, await imds.AwaitListing) (*ENIMetadata, error) {
	return m.Open(cfg).Lookup(ctx, mac, await)
}

// IMDSSession is one invocation's use of IMDSv2: one client, so one session
// token, and one budget of imds.timeout shared by every lookup from the
// first of them.
type IMDSSession struct {
	cfg     *config.Config
	options imds.Options

	mu       sync.Mutex
	client   *imds.Client
	deadline time.Time
}

// errIMDSBudget is the cause of an expired imds.timeout.
var errIMDSBudget = errors.New("imds.timeout expired")

// clientAndBudget returns the session's client and budget, starting the
// budget on first use.
func (s *IMDSSession) clientAndBudget() (*imds.Client, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clientLocked()
	if s.deadline.IsZero() {
		s.deadline = time.Now().Add(s.cfg.IMDS.Timeout)
	}
	return c, s.deadline
}

func (s *IMDSSession) clientLocked() *imds.Client {
	if s.client == nil {
		o := s.options
		o.Endpoint = s.cfg.IMDS.Endpoint
		s.client = imds.New(o)
	}
	return s.client
}

// Prime fetches the session token ahead of the first lookup (standalone
// mode: while the link is awaited), bounded by imds.timeout on its own: the
// lookups' budget starts with the first of them, so a slow link does not
// eat it. A failure is left for the lookup to report.
func (s *IMDSSession) Prime(ctx context.Context) {
	s.mu.Lock()
	c := s.clientLocked()
	s.mu.Unlock()
	pctx, cancel := context.WithTimeoutCause(ctx, s.cfg.IMDS.Timeout, errIMDSBudget)
	defer cancel()
	_ = c.Ping(pctx)
}

// Usage counts the requests and round trips of the session so far (zero
// when it made none).
func (s *IMDSSession) Usage() (requests, roundTrips int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		return 0, 0
	}
	return s.client.Requests(), s.client.RoundTrips()
}

// Lookup implements MetadataSession. The caller that waits for it installs
// the SIGTERM handler (blocking.Ahead): lookups does when it joins, while
// the requests are in flight rather than ahead of them.
func (s *IMDSSession) Lookup(ctx context.Context, mac net.HardwareAddr, await imds.AwaitListing) (*ENIMetadata, error) {
	c, deadline := s.clientAndBudget()
	lctx, cancel := context.WithDeadlineCause(ctx, deadline, errIMDSBudget)
	defer cancel()
	eni, err := c.LookupAwaiting(lctx, mac, await)
	if err != nil {
		return nil, lookupError(ctx, lctx, s.cfg, c.Endpoint(), mac, err)
	}
	return metadataFromENI(s.cfg, eni)
}

// Ping implements MetadataSession: STATUS fails with code 50, naming the
// endpoint, when IMDS does not answer a token-authenticated request within
// imds.timeout.
func (s *IMDSSession) Ping(ctx context.Context) error {
	blocking.Ahead(ctx) // network I/O: let SIGTERM end it (see package blocking)
	c, deadline := s.clientAndBudget()
	lctx, cancel := context.WithDeadlineCause(ctx, deadline, errIMDSBudget)
	defer cancel()
	if err := c.Ping(lctx); err != nil {
		return types.NewError(types.ErrPluginNotAvailable,
			fmt.Sprintf("EC2 instance metadata service at %s is not reachable (imds.enabled is true): %v", c.Endpoint(), err), "")
	}
	return nil
}

// lookupError maps a failed lookup to a CNI error; the verb adds what the
// failure meant for it (ADD: nothing was installed).
func lookupError(ctx, lctx context.Context, cfg *config.Config, endpoint string, mac net.HardwareAddr, err error) error {
	var ie *imds.Error
	errors.As(err, &ie)
	switch {
	case errors.Is(err, imds.ErrUnknownMAC):
		return types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("IMDS at %s lists no network interface with MAC %s: the link is not an ENI attached to this instance (an unlisted MAC is waited for only on a physical link, or with imds.awaitUnlisted true)", endpoint, mac), "")
	case errors.Is(err, imds.ErrNotPropagated):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("IMDS at %s still reports device-number 0 for MAC %s, which is not the instance's primary MAC, after %s: the ENI attachment has not propagated yet", endpoint, mac, budgetUsed(ctx, lctx, cfg)), "")
	case errors.Is(context.Cause(ctx), errSignal):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("interrupted by signal while querying IMDS at %s", endpoint), "")
	case errors.Is(err, imds.ErrNotListed):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("IMDS at %s still lists no network interface with MAC %s after %s: the ENI attachment has not propagated yet, or the link is not an ENI of this instance (imds.awaitUnlisted false stops waiting for it)", endpoint, mac, budgetUsed(ctx, lctx, cfg)), "")
	case errors.Is(err, imds.ErrMalformed):
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("IMDS at %s: %v", endpoint, err), "")
	case lctx.Err() != nil:
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("IMDS at %s did not answer within %s (%v)", endpoint, budgetUsed(ctx, lctx, cfg), err), "")
	case ie != nil && ie.Status != 0 && ie.Status != http.StatusTooManyRequests && ie.Status < 500:
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("IMDS at %s refused the request: %v", endpoint, err), "")
	}
	// Throttled, server errors or connection errors, retries spent.
	return types.NewError(types.ErrTryAgainLater,
		fmt.Sprintf("IMDS at %s is unavailable (%v)", endpoint, err), "")
}

// withConsequence appends what a failure meant for the verb to a CNI
// error's message, keeping its code.
func withConsequence(err error, what string) error {
	var te *types.Error
	if errors.As(err, &te) {
		return types.NewError(te.Code, te.Msg+"; "+what, te.Details)
	}
	return err
}

// budgetUsed names the bound that ended the lookup.
func budgetUsed(ctx, lctx context.Context, cfg *config.Config) string {
	if ctx.Err() != nil {
		return fmt.Sprintf("linkTimeout %s", cfg.LinkTimeout)
	}
	return fmt.Sprintf("imds.timeout %s", cfg.IMDS.Timeout)
}

// metadataFromENI turns IMDS facts into plan input, as ec2-net-utils does:
// table tableBase + 100*network_card + device_number; one source rule per
// local IPv4, IPv6 and delegated prefix; subnet routes from the subnet
// CIDRs; altnames eni-... and device-number-N[.C].
func metadataFromENI(cfg *config.Config, eni *imds.ENI) (*ENIMetadata, error) {
	md := &ENIMetadata{Table: cfg.TableBase + 100*eni.NetworkCard + eni.DeviceNumber}
	if err := plan.ValidateTable(md.Table); err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("tableBase %d + 100*network-card %d + device-number %d: %v", cfg.TableBase, eni.NetworkCard, eni.DeviceNumber, err), "")
	}
	for _, a := range eni.LocalIPv4s {
		md.Sources = append(md.Sources, plan.HostPrefix(a))
	}
	for _, a := range eni.IPv6s {
		md.Sources = append(md.Sources, plan.HostPrefix(a))
	}
	md.Sources = append(md.Sources, eni.IPv4Prefixes...)
	md.Sources = append(md.Sources, eni.IPv6Prefixes...)
	if eni.SubnetIPv4.IsValid() {
		md.Subnets = append(md.Subnets, eni.SubnetIPv4)
		// Standalone (ECS) mode has no prevResult gateway; the VPC router
		// is the subnet's first host. interfaceFacts uses it only when the
		// link and config give none.
		if cfg.PrevResult == nil {
			if gw := firstHost(eni.SubnetIPv4); gw.IsValid() {
				md.Gateways = append(md.Gateways, gw)
			}
		}
	}
	md.Subnets = append(md.Subnets, eni.SubnetIPv6...)
	if eni.InterfaceID != "" {
		md.AltNames = append(md.AltNames, eni.InterfaceID)
	}
	// ec2-net-utils appends ".card" only where IMDS has the key, so
	// single-card instance types keep the name they always had.
	dn := fmt.Sprintf("device-number-%d", eni.DeviceNumber)
	if eni.CardKnown {
		dn += fmt.Sprintf(".%d", eni.NetworkCard)
	}
	md.AltNames = append(md.AltNames, dn)
	return md, nil
}

// firstHost is the VPC router's address: the subnet's network address + 1.
func firstHost(p netip.Prefix) netip.Addr {
	p = p.Masked()
	if p.Bits() >= p.Addr().BitLen()-1 {
		return netip.Addr{}
	}
	return p.Addr().Next()
}
