package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// validSeeds are well-formed configurations the fuzzer starts from besides
// the bad-input table and the checked-in corpus (testdata/fuzz/FuzzParse).
var validSeeds = []string{
	`{"cniVersion":"0.3.0","name":"network-name","type":"ec2-policy-routes"}`,
	`{"cniVersion":"1.1.0","name":"n","type":"ec2-policy-routes","linkTimeout":"1500ms","interfaces":["eth0","eth1"],` +
		`"tableBase":20000,"priority":3000,"gateway":{"ipv4":"10.0.0.1","ipv6":"fe80::1"},"logFile":"/tmp/x.log","logLevel":"DEBUG",` +
		`"imds":{"enabled":true,"endpoint":"http://[fd00:ec2::254]","timeout":"2s"},"args":{"cni":{"x":[1,2]}}}`,
	`{"cniVersion":"1.0.0","name":"task","type":"ec2-policy-routes","prevResult":{"cniVersion":"1.0.0",` +
		`"interfaces":[{"name":"veth0","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","sandbox":"/var/run/netns/task"}],` +
		`"ips":[{"address":"10.0.0.5/24","gateway":"10.0.0.1","interface":1},{"address":"2001:db8::5/64","gateway":"2001:db8::1","interface":1}],` +
		`"routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}],"dns":{"nameservers":["10.0.0.2"]}}}`,
	`{"cniVersion":"0.4.0","name":"task","type":"ec2-policy-routes","prevResult":{"cniVersion":"0.4.0",` +
		`"interfaces":[{"name":"eth0","sandbox":"/proc/42/ns/net"}],"ips":[{"version":"4","address":"10.1.0.5/16","interface":0}]}}`,
	`{"cniVersion":"0.3.1","name":"task","type":"ec2-policy-routes","prevResult":{"cniVersion":"0.3.1","ips":[{"version":"6","address":"2001:db8::5/128"}]}}`,
}

// FuzzParse: Parse never panics; it either fails with a *types.Error of
// code 6 or 7 and a message, or returns a configuration that satisfies
// every invariant the rest of the plugin relies on.
func FuzzParse(f *testing.F) {
	for _, s := range validSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var te *types.Error
			if !errors.As(err, &te) {
				t.Fatalf("error is %T, not *types.Error: %v", err, err)
			}
			if te.Code != types.ErrDecodingFailure && te.Code != types.ErrInvalidNetworkConfig {
				t.Fatalf("code %d (%s): Parse only ever fails with 6 or 7", te.Code, te.Msg)
			}
			if te.Msg == "" {
				t.Fatal("empty error message")
			}
			if c != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		checkConfig(t, c)
		again, err := Parse(data)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("Parse is not deterministic: %v", err)
		}
	})
}

// checkConfig asserts the invariants of a parsed configuration.
func checkConfig(t *testing.T, c *Config) {
	t.Helper()
	if c.LinkTimeout <= 0 || c.LinkTimeout > MaxLinkTimeout {
		t.Fatalf("linkTimeout %s accepted", c.LinkTimeout)
	}
	if c.TableBase < 1 || c.TableBase > plan.MaxTable || plan.ValidateTable(c.TableBase) != nil {
		t.Fatalf("tableBase %d accepted", c.TableBase)
	}
	if c.Priority != 0 && (c.Priority < 1 || c.Priority > plan.MaxPriority || plan.ValidatePriority(c.Priority) != nil) {
		t.Fatalf("priority %d accepted", c.Priority)
	}
	for _, n := range c.Interfaces {
		if ValidateIfName(n) != nil || strings.ContainsAny(n, "/\x00") || n == ".." {
			t.Fatalf("interface name %q accepted", n)
		}
	}
	fams := map[plan.Family]bool{}
	for _, g := range c.Gateways {
		if !g.IsValid() || g.IsUnspecified() || g.IsMulticast() || g.IsLoopback() || g.Is4In6() || fams[plan.FamilyOf(g)] {
			t.Fatalf("gateway %s accepted (%v)", g, c.Gateways)
		}
		fams[plan.FamilyOf(g)] = true
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		t.Fatalf("log level %q accepted", c.LogLevel)
	}
	if c.IMDS.Timeout <= 0 || c.IMDS.Timeout > MaxLinkTimeout {
		t.Fatalf("imds.timeout %s accepted", c.IMDS.Timeout)
	}
	if e := c.IMDS.Endpoint; e != "" && !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
		t.Fatalf("imds.endpoint %q accepted", e)
	}
	if r := c.PrevResult; r != nil {
		for i, ip := range r.IPs {
			if ip == nil || ip.Address.IP == nil {
				t.Fatalf("prevResult.ips[%d] without address accepted", i)
			}
			if ip.Interface != nil && (*ip.Interface < 0 || *ip.Interface >= len(r.Interfaces)) {
				t.Fatalf("prevResult.ips[%d].interface %d accepted with %d interfaces", i, *ip.Interface, len(r.Interfaces))
			}
		}
		for i, ifc := range r.Interfaces {
			if ifc == nil {
				t.Fatalf("prevResult.interfaces[%d] null accepted", i)
			}
			if ifc.Sandbox != "" && ValidateIfName(ifc.Name) != nil {
				t.Fatalf("prevResult.interfaces[%d].name %q accepted", i, ifc.Name)
			}
		}
	}
}

// TestWriteFuzzSeeds regenerates the checked-in seed corpus
// (testdata/fuzz/FuzzParse) from validSeeds and testdata/bad-inputs.json:
// EC2PR_WRITE_SEEDS=1 go test -run TestWriteFuzzSeeds ./pkg/config
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("EC2PR_WRITE_SEEDS") == "" {
		t.Skip("set EC2PR_WRITE_SEEDS=1 to regenerate testdata/fuzz/FuzzParse")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tab := loadBadInputs(t)
	seeds := map[string][]byte{}
	for i, s := range validSeeds {
		seeds[fmt.Sprintf("valid-%d", i)] = []byte(s)
	}
	for _, c := range tab.Cases {
		seeds["bad-"+slug(c.Name)] = stdin(t, tab, c)
	}
	for name, data := range seeds {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d seeds to %s", len(seeds), dir)
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

func slug(s string) string {
	return strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(s), "-"), "-")
}
