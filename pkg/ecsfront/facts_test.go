package ecsfront

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
)

const (
	agentENIConf    = `{"cniVersion":"0.3.0","name":"network-name","type":"vpc-eni","eniID":"eni-1","eniMACAddress":"0a:1b:2c:3d:4e:5f","eniIPAddresses":["10.0.5.20/24","2600:1f14::20/64"],"gatewayIPAddresses":["10.0.5.1"],"blockInstanceMetadata":true}`
	agentBranchConf = `{"cniVersion":"0.3.0","name":"network-name","type":"vpc-branch-eni","trunkMACAddress":"0a:00:00:00:00:01","branchVlanID":"101","branchMACAddress":"0a:1b:2c:3d:4e:60","ipAddresses":["10.0.6.20/24"],"gatewayIPAddresses":["10.0.6.1"],"blockInstanceMetadata":true,"interfaceType":"vlan"}`
)

func TestParseFacts(t *testing.T) {
	for _, tc := range []struct {
		name, plugin, conf string
		code               uint // 0: success
		want               string
	}{
		{"agent vpc-eni", "vpc-eni", agentENIConf, 0, "0a:1b:2c:3d:4e:5f [10.0.5.20/24 2600:1f14::20/64] [10.0.5.1]"},
		{"agent vpc-branch-eni", "vpc-branch-eni", agentBranchConf, 0, "0a:1b:2c:3d:4e:60 [10.0.6.20/24] [10.0.6.1]"},
		{"bare address", "vpc-eni", `{"eniMACAddress":"0a:1b:2c:3d:4e:5f","eniIPAddresses":["10.0.5.20"]}`, 0, "0a:1b:2c:3d:4e:5f [10.0.5.20/32] []"},
		{"eniName only", "vpc-eni", `{"eniName":"eth3","eniIPAddresses":["10.0.5.20/24"]}`, 0, " [10.0.5.20/24] []"},
		{"not JSON", "vpc-eni", `{`, types.ErrDecodingFailure, ""},
		{"address a number", "vpc-eni", `{"eniIPAddresses":[5]}`, types.ErrDecodingFailure, ""},
		{"bad MAC", "vpc-eni", `{"eniMACAddress":"0a:1b"}`, types.ErrInvalidNetworkConfig, "eniMACAddress"},
		{"EUI-64 MAC", "vpc-eni", `{"eniMACAddress":"0a:1b:2c:3d:4e:5f:60:71"}`, types.ErrInvalidNetworkConfig, "eniMACAddress"},
		{"bad address", "vpc-eni", `{"eniMACAddress":"0a:1b:2c:3d:4e:5f","eniIPAddresses":["10.0.5.300/24"]}`, types.ErrInvalidNetworkConfig, "eniIPAddresses[0]"},
		{"bad gateway", "vpc-eni", `{"eniMACAddress":"0a:1b:2c:3d:4e:5f","gatewayIPAddresses":["10.0.5.1/24"]}`, types.ErrInvalidNetworkConfig, "gatewayIPAddresses[0]"},
		{"branch without MAC", "vpc-branch-eni", `{"ipAddresses":["10.0.6.20/24"]}`, types.ErrInvalidNetworkConfig, "branchMACAddress"},
		{"branch ignores eni fields", "vpc-branch-eni", `{"branchMACAddress":"0a:1b:2c:3d:4e:60","eniIPAddresses":["10.0.5.20/24"]}`, 0, "0a:1b:2c:3d:4e:60 [] []"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseFacts(tc.plugin, []byte(tc.conf))
			if tc.code != 0 {
				var te *types.Error
				if !errors.As(err, &te) || te.Code != tc.code || !strings.Contains(te.Msg, tc.want) {
					t.Fatalf("err %v, want code %d naming %q", err, tc.code, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.MAC.String() + " " + fmtList(f.Addrs) + " " + fmtList(f.Gateways); got != tc.want {
				t.Fatalf("facts %q, want %q", got, tc.want)
			}
			if f.Branch != (tc.plugin == "vpc-branch-eni") {
				t.Fatalf("branch %v", f.Branch)
			}
		})
	}
}

func fmtList[T interface{ String() string }](l []T) string {
	s := make([]string, len(l))
	for i, v := range l {
		s[i] = v.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// TestPluginConfig: the synthesized configuration is valid for the plugin,
// carries the settings, and its prevResult the ENI facts: interface with
// MAC and sandbox, each address with the gateway of its family.
func TestPluginConfig(t *testing.T) {
	base, prio, on := int64(20000), int64(900), true
	s := &Settings{Upstream: "/up", LinkTimeout: "7s", TableBase: &base, Priority: &prio, LogLevel: "debug",
		IMDS: &config.IMDSConf{Enabled: &on, Endpoint: "http://127.0.0.1:1"}}
	in := pluginInput{IfName: "eth0", Netns: "/host/proc/42/ns/net"}
	for _, tc := range []struct {
		plugin, conf string
		lt           time.Duration
		imds         bool
		linkTimeout  time.Duration
	}{
		{"vpc-eni", agentENIConf, 0, true, 7 * time.Second},
		{"vpc-eni", agentENIConf, 1500 * time.Millisecond, true, 1500 * time.Millisecond},
		{"vpc-branch-eni", agentBranchConf, 0, false, 7 * time.Second}, // never IMDS for a branch
	} {
		f, err := ParseFacts(tc.plugin, []byte(tc.conf))
		if err != nil {
			t.Fatal(err)
		}
		in.LinkTimeout = tc.lt
		b, err := PluginConfig(s, f, in)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(b)
		if err != nil {
			t.Fatalf("%s: plugin rejects the synthesized config: %v\n%s", tc.plugin, err, b)
		}
		if cfg.IMDS.Enabled != tc.imds || cfg.TableBase != 20000 || cfg.Priority != 900 || cfg.LinkTimeout != tc.linkTimeout || cfg.LogLevel != "debug" || cfg.Name != "network-name" {
			t.Fatalf("%s: config %+v", tc.plugin, cfg)
		}
		res := cfg.PrevResult
		if len(res.Interfaces) != 1 || res.Interfaces[0].Name != "eth0" || res.Interfaces[0].Sandbox != in.Netns || res.Interfaces[0].Mac != f.MAC.String() {
			t.Fatalf("%s: prevResult interfaces %+v", tc.plugin, res.Interfaces)
		}
		if len(res.IPs) != len(f.Addrs) {
			t.Fatalf("%s: prevResult ips %+v", tc.plugin, res.IPs)
		}
		for i, ip := range res.IPs {
			a, _ := netip.AddrFromSlice(ip.Address.IP)
			if v4 := a.Unmap().Is4(); v4 != (ip.Gateway != nil) {
				t.Fatalf("%s: ip %d %s has gateway %v (the config has an IPv4 gateway only)", tc.plugin, i, ip.Address.String(), ip.Gateway)
			}
		}
	}
	if s.IMDS.Enabled == nil || !*s.IMDS.Enabled {
		t.Fatal("PluginConfig changed the settings' IMDS")
	}
}

// TestPluginConfigRejectsBadSettings: settings the plugin would refuse are
// refused by config.Parse of the synthesized config (the front's
// preflight, before anything runs).
func TestPluginConfigRejectsBadSettings(t *testing.T) {
	f, _ := ParseFacts("vpc-eni", []byte(agentENIConf))
	big := int64(40000)
	for _, s := range []*Settings{{LinkTimeout: "forever"}, {LogLevel: "loud"}, {TableBase: &big}, {IMDS: &config.IMDSConf{Endpoint: "file:///x"}}} {
		b, err := PluginConfig(s, f, pluginInput{IfName: "eth0", Netns: "/x"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse(b); err == nil {
			t.Fatalf("settings %+v accepted", s)
		}
	}
}

func TestProblems(t *testing.T) {
	f, _ := ParseFacts("vpc-eni", []byte(agentENIConf))
	good := observed{Found: true, MAC: f.MAC, Addrs: []netip.Prefix{netip.MustParsePrefix("2600:1f14::20/64"), netip.MustParsePrefix("10.0.5.20/24"), netip.MustParsePrefix("10.0.5.99/24")}}
	other := good
	other.MAC = append([]byte(nil), f.MAC...)
	other.MAC[5] = 0x99
	wrongLen := good
	wrongLen.Addrs = []netip.Prefix{netip.MustParsePrefix("10.0.5.20/32"), netip.MustParsePrefix("2600:1f14::20/64")}
	for _, tc := range []struct {
		name string
		o    observed
		want string
	}{
		{"as configured", good, ""},
		{"not renamed", observed{}, "no interface eth0"},
		{"another link", other, "has MAC 0a:1b:2c:3d:4e:99"},
		{"address missing", observed{Found: true, MAC: f.MAC}, "lacks address 10.0.5.20/24; eth0 lacks address 2600:1f14::20/64"},
		{"prefix length differs", wrongLen, "lacks address 10.0.5.20/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(f.problems(tc.o, "eth0"), "; "); !strings.Contains(got, tc.want) || (tc.want == "") != (got == "") {
				t.Fatalf("problems %q, want %q", got, tc.want)
			}
		})
	}
}

func TestUpstreamEnv(t *testing.T) {
	env := []string{"CNI_COMMAND=ADD", "CNI_PATH=/var/lib/ecs/x", "CNI_NETNS=/n", "VPC_CNI_LOG_FILE=/log/vpc-eni.log", frontMarkerVar + "=1"}
	got := upstreamEnv(env, "/amazon-ecs-cni-plugins", "DEL")
	want := []string{"CNI_NETNS=/n", "VPC_CNI_LOG_FILE=/log/vpc-eni.log", "CNI_PATH=/amazon-ecs-cni-plugins", frontMarkerVar + "=1", "CNI_COMMAND=DEL"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("env %q, want %q", got, want)
	}
	// A probe keeps the (absent) CNI_COMMAND as it is.
	if got := upstreamEnv([]string{"HOME=/"}, "/up", ""); strings.Join(got, " ") != "HOME=/ CNI_PATH=/up "+frontMarkerVar+"=1" {
		t.Fatalf("probe env %q", got)
	}
}

func TestSettingsUpstreamTimeout(t *testing.T) {
	for _, tc := range []struct {
		json string
		want time.Duration
		err  string
	}{
		{`{}`, DefaultUpstreamTimeout, ""},
		{`{"upstreamTimeout":"2s"}`, 2 * time.Second, ""},
		{`{"upstreamTimeout":"30s"}`, 30 * time.Second, ""},
		{`{"upstreamTimeout":"31s"}`, 0, "out of range"},
		{`{"upstreamTimeout":"0s"}`, 0, "out of range"},
		{`{"upstreamTimeout":"soon"}`, 0, "not a duration"},
	} {
		s, err := ParseSettings([]byte(tc.json))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("%s: err %v, want %q", tc.json, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := s.upstreamTimeout(); d != tc.want {
			t.Fatalf("%s: %s, want %s", tc.json, d, tc.want)
		}
	}
}

// TestBudgets: the stages fit the agent's budgets (60 s for all ADDs, 30 s
// for all DELs) with room for the plugins the agent runs after vpc-eni.
func TestBudgets(t *testing.T) {
	if MaxUpstreamTimeout+minOursBudget+upstreamDelReserve != addBudget || addBudget > 50*time.Second {
		t.Fatalf("ADD stages %s+%s+%s vs budget %s", MaxUpstreamTimeout, minOursBudget, upstreamDelReserve, addBudget)
	}
	if DefaultUpstreamTimeout > MaxUpstreamTimeout || undoBudget >= upstreamDelReserve {
		t.Fatal("defaults outside their bounds")
	}
	if upstreamDelBudget+oursDelBudget > 25*time.Second {
		t.Fatalf("DEL takes up to %s of the agent's 30 s", upstreamDelBudget+oursDelBudget)
	}
}

func TestLogFileFor(t *testing.T) {
	if got := logFileFor(&Settings{LogFile: "/var/log/x.log"}); got != "/var/log/x.log" {
		t.Fatal(got)
	}
	if got := logFileFor(&Settings{}); got != "/log/ec2-policy-routes.log" && got != config.DefaultLogFile {
		t.Fatal(got)
	}
}

// TestPluginConfigIMDSDefault (issue 19.3): settings without an "imds"
// section leave IMDS off (the agent's facts only); a section that does not
// disable it turns it on, as before.
func TestPluginConfigIMDSDefault(t *testing.T) {
	f, err := ParseFacts("vpc-eni", []byte(agentENIConf))
	if err != nil {
		t.Fatal(err)
	}
	off := false
	for _, tc := range []struct {
		name string
		imds *config.IMDSConf
		want bool
	}{
		{"no imds section", nil, false},
		{"section without enabled", &config.IMDSConf{Timeout: "3s"}, true},
		{"disabled", &config.IMDSConf{Enabled: &off}, false},
	} {
		b, err := PluginConfig(&Settings{Upstream: "/up", IMDS: tc.imds}, f, pluginInput{IfName: "eth0", Netns: "/proc/1/ns/net"})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(b)
		if err != nil || cfg.IMDS.Enabled != tc.want {
			t.Errorf("%s: IMDS enabled %v (%v), want %v", tc.name, cfg != nil && cfg.IMDS.Enabled, err, tc.want)
		}
	}
}
