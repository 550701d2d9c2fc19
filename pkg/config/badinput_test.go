package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/badinput"
)

// loadBadInputs reads the hostile-input table shared with the binary-level
// test (integration/security_test.go).
func loadBadInputs(t *testing.T) *badinput.Table {
	t.Helper()
	tab, err := badinput.Load("testdata/bad-inputs.json")
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// stdin renders a case for a namespace path used by every unit case.
func stdin(t *testing.T, tab *badinput.Table, c badinput.Case) []byte {
	t.Helper()
	b, err := tab.Stdin(c, "/var/run/netns/task")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBadInputTable: every case Parse sees fails with a *types.Error of the
// table's code (never 999) and a message naming the offending field.
func TestBadInputTable(t *testing.T) {
	tab := loadBadInputs(t)
	n := 0
	for _, c := range tab.Cases {
		if c.Level == "binary" {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			_, err := Parse(stdin(t, tab, c))
			assertCNIError(t, err, c.Code, c.Msg)
		})
	}
	if n < 80 {
		t.Fatalf("only %d unit-level cases in testdata/bad-inputs.json", n)
	}
}

func assertCNIError(t *testing.T, err error, code uint, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want code %d", code)
	}
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("want *types.Error, got %T: %v", err, err)
	}
	if te.Code == types.ErrInternal || te.Code != code {
		t.Fatalf("code %d (%q), want %d", te.Code, te.Msg, code)
	}
	if !strings.Contains(te.Msg, msg) {
		t.Fatalf("message %q does not contain %q", te.Msg, msg)
	}
}

// TestBadInputGenerated: inputs too big to write down.
func TestBadInputGenerated(t *testing.T) {
	const pre = `{"cniVersion":"1.0.0","name":"n","type":"ec2-policy-routes",`
	deep := pre + `"args":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`
	_, err := Parse([]byte(deep))
	assertCNIError(t, err, types.ErrDecodingFailure, "not valid JSON")

	many := pre + `"interfaces":[` + strings.TrimSuffix(strings.Repeat(`"eth0",`, 100000), ",") + `,"../x"]}`
	_, err = Parse([]byte(many))
	assertCNIError(t, err, types.ErrInvalidNetworkConfig, "interfaces[100000]")

	long := pre + `"interfaces":["` + strings.Repeat("a", 1<<20) + `"]}`
	_, err = Parse([]byte(long))
	assertCNIError(t, err, types.ErrInvalidNetworkConfig, "longer than 15")

	bigNum := pre + `"tableBase":1` + strings.Repeat("0", 10000) + `}`
	_, err = Parse([]byte(bigNum))
	assertCNIError(t, err, types.ErrDecodingFailure, "tableBase")

	// 10,000 prevResult IPs, the last one pointing past the interfaces.
	var ips []string
	for range 10000 {
		ips = append(ips, `{"address":"10.0.0.5/24","interface":0}`)
	}
	ips = append(ips, `{"address":"10.0.0.6/24","interface":1}`)
	prev := pre + `"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[` + strings.Join(ips, ",") + `]}}`
	_, err = Parse([]byte(prev))
	assertCNIError(t, err, types.ErrInvalidNetworkConfig, "prevResult.ips[10000].interface 1")
}
