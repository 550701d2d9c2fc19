// Package plugin implements the CNI verbs: it gathers facts (config,
// prevResult or link state), asks package plan for the wanted state and
// applies it through package kernel.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/imds"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/kernel"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/linkwait"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// delBudget bounds DEL, which never waits for a link but may wait for the
// namespace lock: well inside the ECS agent's 30 s for all of a task's DELs.
const delBudget = 10 * time.Second

// Plugin carries what the verbs share: the process context (cancelled on
// SIGTERM/SIGINT) and the logger.
type Plugin struct {
	Ctx context.Context
	Log *slog.Logger
	// NewLogger, when set, builds Log from the configured logFile and
	// logLevel at the start of each verb (config is parsed per verb).
	NewLogger LoggerFactory
	// Metadata, when set and enabled by config, supplies EC2 facts per ENI.
	Metadata MetadataSource
	// StateDir holds altname ownership records; state.DefaultDir when empty.
	StateDir string
	// Netns, when set, is CNI_NETNS already open (the ECS front opens it
	// in its preflight): a verb whose CNI_NETNS is that path uses it, with
	// its netlink socket, instead of opening the path again. The caller
	// closes it.
	Netns *TaskNetns
}

// MetadataSource opens a metadata session per invocation: the verb opens
// it (only when imds.enabled) and passes it down.
type MetadataSource interface {
	Open(cfg *config.Config) MetadataSession
}

// MetadataSession is one invocation's use of the metadata service.
type MetadataSession interface {
	// Lookup returns EC2 facts for the ENI with this MAC. When the source
	// does not list the MAC, await says whether to wait for it (nil: no).
	Lookup(ctx context.Context, mac net.HardwareAddr, await imds.AwaitListing) (*ENIMetadata, error)
	// Prime prepares the first lookup (session token) while the MAC is not
	// known yet; failures are left for the lookup to report.
	Prime(ctx context.Context)
	// Ping reports whether the service answers (STATUS), as a CNI error.
	Ping(ctx context.Context) error
	// Usage counts the session's requests and round trips (log line).
	Usage() (requests, roundTrips int)
}

// openMetadata opens the invocation's metadata session; nil when the
// invocation does not use IMDS (disabled, or no source).
func (p *Plugin) openMetadata(cfg *config.Config) MetadataSession {
	if !cfg.IMDS.Enabled || p.Metadata == nil {
		return nil
	}
	return p.Metadata.Open(cfg)
}

// ENIMetadata is what IMDS says about one ENI.
type ENIMetadata struct {
	Table    int
	Sources  []netip.Prefix // local IPv4s, IPv6s and delegated prefixes
	Subnets  []netip.Prefix // VPC subnet CIDRs
	Gateways []netip.Addr   // the VPC router per family, when derivable
	AltNames []string       // eni-..., device-number-N.C
}

func (p *Plugin) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}

func (p *Plugin) ctx() context.Context {
	if p.Ctx == nil {
		return context.Background()
	}
	return p.Ctx
}

// CNIError is err as a CNI error: err itself when it is one, else code
// with err's message (never skel's catch-all 999). err must not be nil.
func CNIError(code uint, err error) *types.Error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return types.NewError(code, err.Error(), "")
}

// selected is one interface this invocation configures.
type selected struct {
	name     string
	addrs    []netip.Prefix // from prevResult; nil in standalone mode
	gateways []netip.Addr   // from prevResult; nil in standalone mode
	routes   []plan.Route   // prevResult's other routes through it (Dst, Gateway, Metrics)
	defaults []plan.Route   // prevResult's default routes through it (their metrics)
	ifIndex  int            // index into prevResult.Interfaces, -1 standalone
}

// selectInterfaces decides which interfaces to configure: in chained mode
// the prevResult interfaces inside CNI_NETNS (narrowed by config
// `interfaces`), otherwise config `interfaces` or CNI_IFNAME.
func selectInterfaces(cfg *config.Config, args *skel.CmdArgs) ([]selected, error) {
	want := map[string]bool{}
	for _, n := range cfg.Interfaces {
		want[n] = true
	}
	if cfg.PrevResult == nil {
		names := cfg.Interfaces
		if len(names) == 0 {
			if err := config.ValidateIfName(args.IfName); err != nil {
				return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME: "+err.Error(), "")
			}
			names = []string{args.IfName}
		}
		out := make([]selected, 0, len(names))
		for _, n := range names {
			out = append(out, selected{name: n, ifIndex: -1})
		}
		return out, nil
	}
	res := cfg.PrevResult
	sandbox := sandboxInterfaces(res, args.Netns)
	owners := make([][]netip.Prefix, len(sandbox))
	for j, s := range sandbox {
		owners[j] = s.addrs
	}
	routes := prevRoutes(res)
	var out []selected
	for j, s := range sandbox {
		if len(want) > 0 && !want[s.name] {
			continue
		}
		// Routes name no interface: place each (plan.RouteOwner). A
		// default route's gateway counts after the ips' own gateway.
		for _, r := range routes {
			switch {
			case plan.RouteOwner(r, owners) != j:
			case r.Dst.Bits() == 0:
				s.gateways = appendGateway(s.gateways, r.Gateway)
				s.defaults = append(s.defaults, r)
			default:
				s.routes = append(s.routes, r)
			}
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("prevResult lists no interface in CNI_NETNS %s%s; nothing to configure", args.Netns, narrowNote(cfg)), "")
	}
	return out, nil
}

// sandboxInterfaces lists prevResult's interfaces inside netns with their
// addresses and gateways from ips.
func sandboxInterfaces(res *current.Result, netns string) []selected {
	// An IP without an interface index belongs to the sandbox interface
	// only when there is exactly one to choose from.
	soleSandboxIface := countSandboxIfaces(res, netns) == 1
	var out []selected
	for i, ifc := range res.Interfaces {
		if ifc.Sandbox == "" || !sameNetnsPath(ifc.Sandbox, netns) {
			continue
		}
		s := selected{name: ifc.Name, ifIndex: i}
		for _, ip := range res.IPs {
			switch {
			case ip.Interface != nil && *ip.Interface == i:
			case ip.Interface == nil && soleSandboxIface:
			default:
				continue
			}
			pfx, ok := plan.PrefixFromIPNet(ip.Address)
			if !ok {
				continue
			}
			s.addrs = append(s.addrs, pfx)
			if gw, ok := netip.AddrFromSlice(ip.Gateway); ok && ip.Gateway != nil {
				s.gateways = appendGateway(s.gateways, gw.Unmap())
			}
		}
		out = append(out, s)
	}
	return out
}

// prevRoutes returns prevResult's main-table routes as plan routes
// (destination, gateway, CNI 1.1's mtu and advmss), skipping those that
// cannot be next hops.
func prevRoutes(res *current.Result) []plan.Route {
	var out []plan.Route
	for _, r := range res.Routes {
		if r == nil || (r.Table != nil && *r.Table != plan.TableMain) {
			continue
		}
		dst, ok := plan.PrefixFromIPNet(r.Dst)
		if !ok {
			continue
		}
		pr := plan.Route{Dst: dst.Masked(), Type: plan.Unicast, Metrics: plan.Metrics{MTU: r.MTU, AdvMSS: r.AdvMSS}}
		if gw, ok := netip.AddrFromSlice(r.GW); ok && r.GW != nil {
			gw = gw.Unmap()
			if plan.FamilyOf(gw) != plan.FamilyOf(dst.Addr()) || gw.IsUnspecified() || gw.IsMulticast() || gw.IsLoopback() {
				continue
			}
			pr.Gateway = gw
		}
		if dst.Bits() == 0 && !pr.Gateway.IsValid() {
			continue // a default without gateway says nothing of a next hop
		}
		out = append(out, pr)
	}
	return out
}

func narrowNote(cfg *config.Config) string {
	if len(cfg.Interfaces) == 0 {
		return ""
	}
	return fmt.Sprintf(" matching interfaces %v", cfg.Interfaces)
}

func countSandboxIfaces(res *current.Result, netns string) int {
	n := 0
	for _, ifc := range res.Interfaces {
		if ifc.Sandbox != "" && sameNetnsPath(ifc.Sandbox, netns) {
			n++
		}
	}
	return n
}

// sameNetnsPath reports whether two paths name the same namespace: equal
// text, or the same nsfs inode (e.g. /var/run/netns/x and /run/netns/x, or
// /proc/PID/ns/net for a named namespace).
func sameNetnsPath(a, b string) bool {
	if strings.TrimRight(a, "/") == strings.TrimRight(b, "/") {
		return true
	}
	ia, err := kernel.NetnsOf(a)
	if err != nil {
		return false
	}
	ib, err := kernel.NetnsOf(b)
	return err == nil && ia == ib
}

// appendGateway keeps the first gateway per family.
func appendGateway(gws []netip.Addr, gw netip.Addr) []netip.Addr {
	for _, g := range gws {
		if plan.FamilyOf(g) == plan.FamilyOf(gw) {
			return gws
		}
	}
	return append(gws, gw)
}

// interfaceFacts turns a selected interface and its link into plan input,
// joining the interface's IMDS lookup (lk's i-th) once the kernel facts are
// read. In standalone mode it also records on s the addresses and gateways
// read from the link, which the ADD result reports.
func (p *Plugin) interfaceFacts(cfg *config.Config, t *target, s *selected, link plan.Link, lk *lookups, i int) (plan.Interface, *ENIMetadata, error) {
	ifc := plan.Interface{Name: s.name, Index: link.Index, Routes: s.routes, Defaults: s.defaults}
	addrs := s.addrs
	gateways := s.gateways
	if cfg.PrevResult == nil {
		var err error
		addrs, err = t.h.LinkAddrs(link)
		if err != nil {
			return ifc, nil, CNIError(types.ErrIOFailure, err)
		}
		gateways, err = t.h.MainGateways(link.Index)
		if err != nil {
			return ifc, nil, CNIError(types.ErrIOFailure, err)
		}
	}
	// Configured gateways override what the link or prevResult says.
	for _, gw := range cfg.Gateways {
		gateways = replaceGateway(gateways, gw)
	}
	if cfg.PrevResult == nil {
		s.addrs, s.gateways = addrs, slices.Clone(gateways)
	}
	ifc.Sources, ifc.Subnets = plan.AddressFacts(addrs)
	md, err := lk.result(i)
	if err != nil {
		return ifc, nil, err
	}
	if md != nil {
		ifc.Sources = append(ifc.Sources, md.Sources...)
		if len(md.Subnets) > 0 {
			ifc.Subnets = subnetsFromMetadata(md.Subnets, addrs, ifc.Subnets)
		}
		for _, gw := range md.Gateways {
			gateways = appendGateway(gateways, gw)
		}
	}
	ifc.Gateways = gateways
	if len(ifc.Sources) == 0 {
		return ifc, nil, types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("interface %s has no global IPv4 or IPv6 address yet; the ENI plugin must address it before ec2-policy-routes runs", s.name), "")
	}
	return ifc, md, nil
}

func replaceGateway(gws []netip.Addr, gw netip.Addr) []netip.Addr {
	out := []netip.Addr{gw}
	for _, g := range gws {
		if plan.FamilyOf(g) != plan.FamilyOf(gw) {
			out = append(out, g)
		}
	}
	return out
}

// subnetsFromMetadata uses the VPC subnet CIDRs for link routes, with the
// interface's first address in each as preferred IPv4 source. A family IMDS
// reports no subnet for (e.g. an IPv6 address whose subnet has not
// propagated yet) keeps the routes derived from the addresses, fromAddrs,
// so no address loses its on-link route.
func subnetsFromMetadata(subnets []netip.Prefix, addrs []netip.Prefix, fromAddrs []plan.Subnet) []plan.Subnet {
	var out []plan.Subnet
	covered := map[plan.Family]bool{}
	for _, sn := range subnets {
		covered[plan.FamilyOf(sn.Addr())] = true
		s := plan.Subnet{Prefix: sn.Masked()}
		if plan.FamilyOf(sn.Addr()) == plan.V4 {
			for _, a := range addrs {
				if sn.Contains(a.Addr()) {
					s.Src = a.Addr()
					break
				}
			}
		}
		out = append(out, s)
	}
	for _, s := range fromAddrs {
		if !covered[plan.FamilyOf(s.Prefix.Addr())] {
			out = append(out, s)
		}
	}
	return out
}

// linkTimeoutError is the code-11 error an expired or interrupted wait
// becomes: the runtime may retry once the ENI has arrived.
func linkTimeoutError(ctx context.Context, cfg *config.Config, name, netnsPath string, err error) error {
	switch {
	case errors.Is(err, linkwait.ErrGone):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("interface %s left network namespace %s before it came up (ENI detached or moved); nothing was installed", name, netnsPath), "")
	case errors.Is(context.Cause(ctx), errSignal):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("interrupted by signal while waiting for interface %s in %s; nothing was installed", name, netnsPath), "")
	case errors.Is(err, context.DeadlineExceeded):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("timed out after linkTimeout %s waiting for interface %s to exist and be up in %s; nothing was installed", cfg.LinkTimeout, name, netnsPath), "")
	}
	return CNIError(types.ErrIOFailure, fmt.Errorf("waiting for interface %s: %w", name, err))
}

// errSignal is the cancellation cause main sets on SIGTERM/SIGINT.
var errSignal = errors.New("terminated by signal")

// ErrSignal returns the cause to cancel the process context with on a
// termination signal.
func ErrSignal() error { return errSignal }

// applyError maps a failed netlink change to a CNI error.
func applyError(err error) error {
	return CNIError(types.ErrIOFailure, fmt.Errorf("apply policy routing (rolled back): %w", err))
}
