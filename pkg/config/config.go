// Package config parses and validates the plugin's network configuration.
// Every error it returns is a *types.Error with the CNI code the spec gives
// for that failure and a message naming the offending field.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/logging"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// Link wait bounds. The default covers a congested host (a moved link shows
// up in milliseconds); the maximum keeps one invocation inside the ECS
// agent's 60 s budget for all of a task's ADDs, with room for the others.
const (
	DefaultLinkTimeout = 10 * time.Second
	MaxLinkTimeout     = 55 * time.Second
)

// Default log destination and level: ECS collects plugin logs from
// /var/log/ecs.
const (
	DefaultLogFile  = "/var/log/ecs/ec2-policy-routes.log"
	DefaultLogLevel = "info"
)

// maxIfNameLen is IFNAMSIZ-1: the kernel's limit on interface names.
const maxIfNameLen = 15

// NetConf is the JSON the runtime passes on stdin.
type NetConf struct {
	types.NetConf
	LinkTimeout string         `json:"linkTimeout,omitempty"`
	Interfaces  []string       `json:"interfaces,omitempty"`
	TableBase   *int64         `json:"tableBase,omitempty"`
	Priority    *int64         `json:"priority,omitempty"`
	Gateway     *GatewayConf   `json:"gateway,omitempty"`
	LogFile     string         `json:"logFile,omitempty"`
	LogLevel    string         `json:"logLevel,omitempty"`
	IMDS        *IMDSConf      `json:"imds,omitempty"`
	Args        map[string]any `json:"args,omitempty"`
}

// GatewayConf overrides the per-family default gateway in standalone mode.
type GatewayConf struct {
	IPv4 string `json:"ipv4,omitempty"`
	IPv6 string `json:"ipv6,omitempty"`
}

// IMDSConf configures EC2 instance metadata lookups. Enabled defaults to
// true, also when the whole `imds` object is omitted.
type IMDSConf struct {
	Enabled  *bool  `json:"enabled,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Timeout  string `json:"timeout,omitempty"`
	// AwaitUnlisted: wait (within timeout) for IMDS to list a MAC it does
	// not know yet. Unset: only for physical links (see plugin).
	AwaitUnlisted *bool `json:"awaitUnlisted,omitempty"`
}

// Default IMDS budget: the SDK's own default is 3 attempts 1 s apart; a
// whole lookup fits in the same 3 s and leaves ADD's budget for the rest.
const DefaultIMDSTimeout = 3 * time.Second

// Config is the validated configuration.
type Config struct {
	CNIVersion  string
	Name        string
	LinkTimeout time.Duration
	Interfaces  []string
	TableBase   int
	Priority    int // 0: use the table number
	Gateways    []netip.Addr
	LogFile     string
	LogLevel    string
	IMDS        IMDS
	PrevResult  *current.Result // nil in standalone (ECS) mode
}

// IMDS is the validated IMDS configuration.
type IMDS struct {
	Enabled  bool
	Endpoint string
	Timeout  time.Duration
	// AwaitUnlisted is nil unless configured: the link's kind decides.
	AwaitUnlisted *bool
}

// Settings are the values package plan's decisions take from the config.
func (c *Config) Settings() plan.Settings {
	return plan.Settings{TableBase: c.TableBase, Priority: c.Priority}
}

func invalid(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// Parse decodes and validates stdin.
func Parse(stdin []byte) (*Config, error) {
	var nc NetConf
	if err := json.Unmarshal(stdin, &nc); err != nil {
		return nil, decodeError(err)
	}
	c := &Config{
		CNIVersion:  nc.CNIVersion,
		Name:        nc.Name,
		LinkTimeout: DefaultLinkTimeout,
		TableBase:   plan.DefaultTableBase,
		LogFile:     DefaultLogFile,
		LogLevel:    DefaultLogLevel,
		IMDS:        IMDS{Enabled: true, Timeout: DefaultIMDSTimeout}, // as the issue and ec2-net-utils: on unless disabled
	}
	for _, step := range []func(*NetConf, *Config) error{
		parseLinkTimeout, parseInterfaces, parseTables, parseGatewayField, parseLogging, parseIMDSField, parsePrevResult,
	} {
		if err := step(&nc, c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func parseLinkTimeout(nc *NetConf, c *Config) error {
	if nc.LinkTimeout == "" {
		return nil
	}
	d, err := time.ParseDuration(nc.LinkTimeout)
	if err != nil {
		return invalid("linkTimeout %q is not a duration (examples: \"10s\", \"1500ms\")", nc.LinkTimeout)
	}
	if d <= 0 || d > MaxLinkTimeout {
		return invalid("linkTimeout %s is out of range: must be > 0 and <= %s (the ECS agent allows 60s for all ADDs)", d, MaxLinkTimeout)
	}
	c.LinkTimeout = d
	return nil
}

func parseInterfaces(nc *NetConf, c *Config) error {
	for i, name := range nc.Interfaces {
		if err := ValidateIfName(name); err != nil {
			return invalid("interfaces[%d]: %v", i, err)
		}
	}
	if err := distinctNames(nc.Interfaces); err != nil {
		return err
	}
	c.Interfaces = nc.Interfaces
	return nil
}

// parseTables reads tableBase and priority, refusing combinations whose
// rules could never match.
func parseTables(nc *NetConf, c *Config) error {
	if nc.TableBase != nil {
		t := *nc.TableBase
		if t < 1 || t > plan.MaxTable {
			return invalid("tableBase %d is out of range 1..%d", t, int64(plan.MaxTable))
		}
		if err := plan.ValidateTable(int(t)); err != nil {
			return invalid("tableBase: %v", err)
		}
		c.TableBase = int(t)
	}
	if nc.Priority != nil {
		p := *nc.Priority
		if p < 1 || p > plan.MaxPriority {
			return invalid("priority %d is out of range 1..%d", p, int64(plan.MaxPriority))
		}
		if err := plan.ValidatePriority(int(p)); err != nil {
			return invalid("priority: %v", err)
		}
		// Rules are evaluated by priority: one after "from all lookup
		// main" is only reached for destinations main has no route for.
		if p > plan.PriorityMain {
			return invalid("priority %d is after the main rule (%d): main answers first, so the rules would never match while main has a default route; use a priority below %d", p, plan.PriorityMain, plan.PriorityMain)
		}
		c.Priority = int(p)
	}
	// By default a rule's priority is its table number; from 32766 on that
	// puts the rule after "from all lookup main", where it never matches.
	if c.Priority == 0 && c.TableBase >= plan.PriorityMain {
		return invalid("tableBase %d without priority: rule priority defaults to the table number, which must stay below the main rule (%d); set priority", c.TableBase, plan.PriorityMain)
	}
	return nil
}

func parseGatewayField(nc *NetConf, c *Config) error {
	if nc.Gateway == nil {
		return nil
	}
	gws, err := parseGateways(nc.Gateway)
	if err != nil {
		return err
	}
	c.Gateways = gws
	return nil
}

func parseLogging(nc *NetConf, c *Config) error {
	if nc.LogFile != "" {
		if err := CheckLogFile(nc.LogFile); err != nil {
			return invalid("logFile: %v", err)
		}
		c.LogFile = nc.LogFile
	}
	if nc.LogLevel != "" {
		lvl, err := logging.ParseLevel(nc.LogLevel)
		if err != nil {
			return invalid("logLevel %q: must be debug, info, warn or error", nc.LogLevel)
		}
		c.LogLevel = logging.LevelName(lvl)
	}
	return nil
}

func parseIMDSField(nc *NetConf, c *Config) error {
	if nc.IMDS == nil {
		return nil
	}
	return parseIMDS(nc.IMDS, &c.IMDS)
}

func parsePrevResult(nc *NetConf, c *Config) error {
	if nc.RawPrevResult == nil {
		return nil
	}
	if err := version.ParsePrevResult(&nc.NetConf); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	res, err := current.NewResultFromResult(nc.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	if err := validatePrevResult(res); err != nil {
		return err
	}
	c.PrevResult = res
	return nil
}

// distinctNames refuses a name listed twice: one link would get two tables
// and duplicate rules.
func distinctNames(names []string) error {
	first := make(map[string]int, len(names))
	for i, n := range names {
		if j, ok := first[n]; ok {
			return invalid("interfaces[%d]: %q is already interfaces[%d]; list each interface once", i, n, j)
		}
		first[n] = i
	}
	return nil
}

func decodeError(err error) *types.Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return types.NewError(types.ErrDecodingFailure,
			fmt.Sprintf("field %s: expected %s, got a JSON %s", te.Field, te.Type, te.Value), "")
	}
	return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("network configuration is not valid JSON: %v", err), "")
}

func parseGateways(g *GatewayConf) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range []struct {
		field, val string
		fam        plan.Family
	}{{"gateway.ipv4", g.IPv4, plan.V4}, {"gateway.ipv6", g.IPv6, plan.V6}} {
		if f.val == "" {
			continue
		}
		a, err := netip.ParseAddr(f.val)
		if err != nil {
			return nil, invalid("%s %q is not an IP address", f.field, f.val)
		}
		a = a.Unmap()
		if plan.FamilyOf(a) != f.fam {
			return nil, invalid("%s %q is not an %s address", f.field, f.val, f.fam)
		}
		if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			return nil, invalid("%s %q cannot be a gateway", f.field, f.val)
		}
		out = append(out, a)
	}
	return out, nil
}

func parseIMDS(in *IMDSConf, out *IMDS) error {
	out.Enabled = true
	if in.Enabled != nil {
		out.Enabled = *in.Enabled
	}
	out.Endpoint = in.Endpoint
	out.AwaitUnlisted = in.AwaitUnlisted
	if in.Endpoint != "" && !strings.HasPrefix(in.Endpoint, "http://") && !strings.HasPrefix(in.Endpoint, "https://") {
		return invalid("imds.endpoint %q must be an http:// or https:// URL", in.Endpoint)
	}
	if in.Timeout != "" {
		d, err := time.ParseDuration(in.Timeout)
		if err != nil {
			return invalid("imds.timeout %q is not a duration", in.Timeout)
		}
		if d <= 0 || d > MaxLinkTimeout {
			return invalid("imds.timeout %s is out of range: must be > 0 and <= %s", d, MaxLinkTimeout)
		}
		out.Timeout = d
	}
	return nil
}

// CheckLogFile accepts an absolute path, or logging's "stderr" and "off"
// (logging.CheckFile: the environment override is held to the same rule).
// A relative path would put the log and its .lock sidecar wherever the
// runtime happens to run the plugin from.
func CheckLogFile(path string) error { return logging.CheckFile(path) }

// ValidateIfName applies the kernel's rules for interface names, which also
// keeps a name from being a path.
func ValidateIfName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > maxIfNameLen:
		return fmt.Errorf("interface name %q is longer than %d bytes", name, maxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	case strings.IndexFunc(name, badIfNameRune) >= 0 || strings.IndexByte(name, 0xa0) >= 0:
		return fmt.Errorf("interface name %q contains '/', ':', a space or a control character", name)
	}
	return nil
}

// badIfNameRune covers the kernel's dev_valid_name ('/', ':', isspace: also
// \v, \f, \r) and every other control character, which would otherwise
// reach the link lookup and fail only at linkTimeout. Byte 0xa0, a space to
// the kernel's isspace, is checked byte-wise by the caller.
func badIfNameRune(r rune) bool {
	return r == '/' || r == ':' || r == ' ' || r < 0x20 || r == 0x7f
}

func validatePrevResult(r *current.Result) error {
	for i, ip := range r.IPs {
		if ip.Interface != nil && (*ip.Interface < 0 || *ip.Interface >= len(r.Interfaces)) {
			return invalid("prevResult.ips[%d].interface %d is out of range (prevResult has %d interfaces)", i, *ip.Interface, len(r.Interfaces))
		}
		if ip.Address.IP == nil {
			return invalid("prevResult.ips[%d].address is missing", i)
		}
		if ip.Gateway != nil && (ip.Gateway.To4() == nil) != (ip.Address.IP.To4() == nil) {
			return invalid("prevResult.ips[%d].gateway %s is not in the family of address %s", i, ip.Gateway, ip.Address.String())
		}
	}
	for i, rt := range r.Routes {
		if rt == nil {
			continue
		}
		// The kernel caps larger values: the table would hold another
		// value than asked, and CHECK would never pass.
		if rt.MTU < 0 || rt.MTU > plan.MaxRouteMTU {
			return invalid("prevResult.routes[%d].mtu %d is out of range 0..%d", i, rt.MTU, plan.MaxRouteMTU)
		}
		if rt.AdvMSS < 0 || rt.AdvMSS > plan.MaxRouteAdvMSS {
			return invalid("prevResult.routes[%d].advmss %d is out of range 0..%d", i, rt.AdvMSS, plan.MaxRouteAdvMSS)
		}
	}
	for i, ifc := range r.Interfaces {
		if ifc == nil {
			return invalid("prevResult.interfaces[%d] is null", i)
		}
		if ifc.Sandbox != "" {
			if err := ValidateIfName(ifc.Name); err != nil {
				return invalid("prevResult.interfaces[%d].name: %v", i, err)
			}
		}
	}
	return nil
}
