package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"cniVersion":"0.3.0","name":"network-name","type":"ec2-policy-routes"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.LinkTimeout != DefaultLinkTimeout || c.TableBase != 10000 || c.Priority != 0 ||
		c.LogFile != DefaultLogFile || c.LogLevel != "info" || c.PrevResult != nil {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(`{
		"cniVersion":"1.0.0","name":"n","type":"ec2-policy-routes","linkTimeout":"1500ms",
		"interfaces":["eth0","eth1"],"tableBase":20000,"priority":3000,
		"gateway":{"ipv4":"10.0.0.1","ipv6":"fe80::1"},"logFile":"/tmp/x.log","logLevel":"DEBUG",
		"someUnknownField":{"ignored":true},
		"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/x"}],
			"ips":[{"address":"10.0.0.5/24","gateway":"10.0.0.1","interface":0}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.LinkTimeout != 1500*time.Millisecond || c.TableBase != 20000 || c.Priority != 3000 ||
		len(c.Gateways) != 2 || c.LogLevel != "debug" || len(c.Interfaces) != 2 ||
		c.PrevResult == nil || len(c.PrevResult.IPs) != 1 {
		t.Fatalf("unexpected config: %+v", c)
	}
}

func TestHighTableBaseWithPriority(t *testing.T) {
	c, err := Parse([]byte(`{"cniVersion":"1.0.0","name":"n","type":"ec2-policy-routes","tableBase":40000,"priority":100}`))
	if err != nil || c.TableBase != 40000 || c.Priority != 100 {
		t.Fatalf("a high tableBase with an explicit priority is valid: %+v %v", c, err)
	}
}

func TestParseErrors(t *testing.T) {
	const pre = `{"cniVersion":"1.0.0","name":"n","type":"ec2-policy-routes",`
	tests := []struct {
		name  string
		in    string
		code  uint
		field string // must appear in the message
	}{
		{"malformed JSON", `{"cniVersion":`, types.ErrDecodingFailure, "not valid JSON"},
		{"wrong type tableBase", pre + `"tableBase":"10000"}`, types.ErrDecodingFailure, "tableBase"},
		{"wrong type interfaces", pre + `"interfaces":"eth0"}`, types.ErrDecodingFailure, "interfaces"},
		{"huge number", pre + `"tableBase":1e30}`, types.ErrDecodingFailure, "tableBase"},
		{"bad duration", pre + `"linkTimeout":"ten seconds"}`, types.ErrInvalidNetworkConfig, "linkTimeout"},
		{"negative duration", pre + `"linkTimeout":"-1s"}`, types.ErrInvalidNetworkConfig, "linkTimeout"},
		{"zero duration", pre + `"linkTimeout":"0s"}`, types.ErrInvalidNetworkConfig, "linkTimeout"},
		{"duration over ECS budget", pre + `"linkTimeout":"56s"}`, types.ErrInvalidNetworkConfig, "linkTimeout"},
		{"table main", pre + `"tableBase":254}`, types.ErrInvalidNetworkConfig, "tableBase"},
		{"table local", pre + `"tableBase":255}`, types.ErrInvalidNetworkConfig, "tableBase"},
		{"table default", pre + `"tableBase":253}`, types.ErrInvalidNetworkConfig, "tableBase"},
		{"table 0", pre + `"tableBase":0}`, types.ErrInvalidNetworkConfig, "tableBase"},
		{"table too big", pre + `"tableBase":4294967296}`, types.ErrInvalidNetworkConfig, "tableBase"},
		{"priority 0", pre + `"priority":0}`, types.ErrInvalidNetworkConfig, "priority"},
		{"tableBase at the main rule without priority", pre + `"tableBase":32766}`, types.ErrInvalidNetworkConfig, "tableBase 32766 without priority"},
		{"tableBase after the main rule without priority", pre + `"tableBase":40000}`, types.ErrInvalidNetworkConfig, "set priority"},
		{"priority main", pre + `"priority":32766}`, types.ErrInvalidNetworkConfig, "priority"},
		{"priority default", pre + `"priority":32767}`, types.ErrInvalidNetworkConfig, "priority"},
		{"priority negative", pre + `"priority":-5}`, types.ErrInvalidNetworkConfig, "priority"},
		{"gateway not an IP", pre + `"gateway":{"ipv4":"10.0.0"}}`, types.ErrInvalidNetworkConfig, "gateway.ipv4"},
		{"gateway wrong family", pre + `"gateway":{"ipv4":"fe80::1"}}`, types.ErrInvalidNetworkConfig, "gateway.ipv4"},
		{"gateway v6 wrong family", pre + `"gateway":{"ipv6":"10.0.0.1"}}`, types.ErrInvalidNetworkConfig, "gateway.ipv6"},
		{"gateway CIDR", pre + `"gateway":{"ipv4":"10.0.0.1/24"}}`, types.ErrInvalidNetworkConfig, "gateway.ipv4"},
		{"interface name too long", pre + `"interfaces":["abcdefghijklmnop"]}`, types.ErrInvalidNetworkConfig, "interfaces[0]"},
		{"interface name with slash", pre + `"interfaces":["../etc"]}`, types.ErrInvalidNetworkConfig, "interfaces[0]"},
		{"interface name empty", pre + `"interfaces":["eth0",""]}`, types.ErrInvalidNetworkConfig, "interfaces[1]"},
		{"log level", pre + `"logLevel":"verbose"}`, types.ErrInvalidNetworkConfig, "logLevel"},
		{"imds timeout", pre + `"imds":{"timeout":"soon"}}`, types.ErrInvalidNetworkConfig, "imds.timeout"},
		{"imds endpoint", pre + `"imds":{"endpoint":"169.254.169.254"}}`, types.ErrInvalidNetworkConfig, "imds.endpoint"},
		{"prevResult index out of range", pre + `"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
			"ips":[{"address":"10.0.0.5/24","interface":3}]}}`, types.ErrInvalidNetworkConfig, "prevResult.ips[0].interface"},
		{"prevResult gateway family", pre + `"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
			"ips":[{"address":"10.0.0.5/24","gateway":"fe80::1","interface":0}]}}`, types.ErrInvalidNetworkConfig, "prevResult.ips[0].gateway"},
		{"prevResult bad CIDR", pre + `"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.500/24"}]}}`, types.ErrDecodingFailure, "prevResult"},
		{"prevResult sandbox name with slash", pre + `"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"a/b","sandbox":"/x"}]}}`,
			types.ErrInvalidNetworkConfig, "prevResult.interfaces[0].name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			var te *types.Error
			if !errors.As(err, &te) {
				t.Fatalf("want *types.Error, got %T %v", err, err)
			}
			if te.Code != tc.code {
				t.Fatalf("code %d, want %d (%s)", te.Code, tc.code, te.Msg)
			}
			if !strings.Contains(te.Msg, tc.field) {
				t.Fatalf("message %q does not name %q", te.Msg, tc.field)
			}
		})
	}
}

func TestValidateIfName(t *testing.T) {
	for _, ok := range []string{"eth0", "ecs1a2b3c", "eni-0123456789a"} {
		if err := ValidateIfName(ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a b", "a:b", "0123456789abcdef", "x\x00"} {
		if err := ValidateIfName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
