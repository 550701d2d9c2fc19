package ecsfront

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// ENIFacts are what the agent's network configuration says about the task
// ENI: the config vpc-eni (agent/ecscni NewENINetworkConfig) or
// vpc-branch-eni (NewBranchENINetworkConfig) receives.
type ENIFacts struct {
	Branch     bool             // vpc-branch-eni: a trunk's VLAN; not in IMDS
	CNIVersion string           // as the agent injected it ("0.3.0")
	Network    string           // "network-name"
	MAC        net.HardwareAddr // eniMACAddress / branchMACAddress; nil if only eniName
	Addrs      []netip.Prefix   // eniIPAddresses / ipAddresses
	Gateways   []netip.Addr     // gatewayIPAddresses
}

// agentConf holds the fields of both plugins' configs the front reads.
type agentConf struct {
	CNIVersion         string   `json:"cniVersion"`
	Name               string   `json:"name"`
	ENIMACAddress      string   `json:"eniMACAddress"`
	ENIIPAddresses     []string `json:"eniIPAddresses"`
	BranchMACAddress   string   `json:"branchMACAddress"`
	IPAddresses        []string `json:"ipAddresses"`
	GatewayIPAddresses []string `json:"gatewayIPAddresses"`
}

// ParseFacts reads the ENI facts from the stdin of the fronted plugin name.
// Errors are *types.Error (6 decode, 7 invalid config) naming the field.
func ParseFacts(name string, stdin []byte) (*ENIFacts, error) {
	var c agentConf
	if err := json.Unmarshal(stdin, &c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("%s network configuration: %v", name, err), "")
	}
	f := &ENIFacts{Branch: name == "vpc-branch-eni", CNIVersion: c.CNIVersion, Network: c.Name}
	macField, mac, addrField, addrs := "eniMACAddress", c.ENIMACAddress, "eniIPAddresses", c.ENIIPAddresses
	if f.Branch {
		macField, mac, addrField, addrs = "branchMACAddress", c.BranchMACAddress, "ipAddresses", c.IPAddresses
	}
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil || len(hw) != 6 {
			return nil, invalidConf("%s %q is not a MAC address", macField, mac)
		}
		f.MAC = hw
	} else if f.Branch {
		return nil, invalidConf("branchMACAddress is required")
	}
	for i, a := range addrs {
		p, err := parseAddr(a)
		if err != nil {
			return nil, invalidConf("%s[%d] %q is not an address in CIDR form", addrField, i, a)
		}
		f.Addrs = append(f.Addrs, p)
	}
	for i, g := range c.GatewayIPAddresses {
		a, err := netip.ParseAddr(g)
		if err != nil {
			return nil, invalidConf("gatewayIPAddresses[%d] %q is not an IP address", i, g)
		}
		f.Gateways = append(f.Gateways, a.Unmap())
	}
	return f, nil
}

// parseAddr accepts "10.0.5.20/24" and, as vpc-eni does, a bare address
// (a host prefix).
func parseAddr(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()), nil
}

func invalidConf(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// pluginInput is what the in-process plugin call needs besides the facts.
type pluginInput struct {
	IfName      string
	Netns       string
	LinkTimeout time.Duration // 0: the settings' (or the plugin's default)
}

// PluginConfig synthesizes the plugin's network configuration: the front
// settings' plugin fields plus a prevResult built from the ENI facts, as if
// the ENI plugin had run before it in a chain. The interface carries the
// MAC so that DEL can match the ENI by MAC, and the sandbox is CNI_NETNS.
// IMDS is used only when the settings have an "imds" section that does not
// disable it; for a branch ENI never: IMDS does not list branch ENIs, so
// the table comes from tableBase (first free from it in the namespace).
func PluginConfig(s *Settings, f *ENIFacts, in pluginInput) ([]byte, error) {
	nc := map[string]any{
		"cniVersion": "1.0.0", // internal: the plugin prints no result here
		"name":       f.Network,
		"type":       "ec2-policy-routes",
		"prevResult": f.prevResult(in),
	}
	if in.LinkTimeout > 0 {
		nc["linkTimeout"] = in.LinkTimeout.String()
	} else if s.LinkTimeout != "" {
		nc["linkTimeout"] = s.LinkTimeout
	}
	setIf(nc, "tableBase", s.TableBase)
	setIf(nc, "priority", s.Priority)
	if s.LogFile != "" {
		nc["logFile"] = s.LogFile
	}
	if s.LogLevel != "" {
		nc["logLevel"] = s.LogLevel
	}
	// Without an "imds" section the front uses the agent's facts only:
	// IMDS is rate-limited, and a launch burst is when it refuses.
	off := false
	imds := config.IMDSConf{Enabled: &off}
	if s.IMDS != nil {
		imds = *s.IMDS
	}
	if f.Branch {
		off := false
		imds.Enabled = &off
	}
	nc["imds"] = imds
	return json.Marshal(nc)
}

func setIf(m map[string]any, key string, v *int64) {
	if v != nil {
		m[key] = *v
	}
}

// prevResult renders the facts as a CNI 1.0.0 result: one interface, its
// addresses with the gateway of their family.
func (f *ENIFacts) prevResult(in pluginInput) map[string]any {
	ifc := map[string]any{"name": in.IfName, "sandbox": in.Netns}
	if f.MAC != nil {
		ifc["mac"] = f.MAC.String()
	}
	ips := []map[string]any{}
	for _, a := range f.Addrs {
		ip := map[string]any{"address": a.String(), "interface": 0}
		for _, g := range f.Gateways {
			if plan.FamilyOf(g) == plan.FamilyOf(a.Addr()) {
				ip["gateway"] = g.String()
				break
			}
		}
		ips = append(ips, ip)
	}
	return map[string]any{"cniVersion": "1.0.0", "interfaces": []any{ifc}, "ips": ips}
}
