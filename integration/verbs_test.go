package integration

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
)

func TestVersionStatusGC(t *testing.T) {
	bin := h.Binary(t)
	ctx := context.Background()
	r := h.Run(ctx, t, bin, h.Env{Command: "VERSION"}, []byte(`{"cniVersion":"1.1.0"}`)).MustSucceed(t, "VERSION")
	var v struct {
		Supported []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(r.Stdout, &v); err != nil {
		t.Fatalf("VERSION output: %v %s", err, r.Stdout)
	}
	for _, want := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		if !slices.Contains(v.Supported, want) {
			t.Fatalf("VERSION lacks %s: %v", want, v.Supported)
		}
	}
	conf11 := []byte(`{"cniVersion":"1.1.0","name":"task","type":"ec2-policy-routes","imds":{"enabled":false}}`)
	h.Run(ctx, t, bin, h.Env{Command: "STATUS", Path: "/x"}, conf11).MustSucceed(t, "STATUS")
	gc := []byte(`{"cniVersion":"1.1.0","name":"task","type":"ec2-policy-routes","imds":{"enabled":false},
		"cni.dev/valid-attachments":[{"containerID":"abc","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"abc","ifname":"eth0"}]}`)
	h.Run(ctx, t, bin, h.Env{Command: "GC", Path: "/x"}, gc).MustSucceed(t, "GC")
	h.Run(ctx, t, bin, h.Env{Command: "GC", Path: "/x"}, conf11).MustSucceed(t, "GC without attachments (cnitool gc)")
}

// TestBadInputCodes drives the binary with bad input: every failure is a
// CNI error JSON with the right code, never 999, never a Go panic.
func TestBadInputCodes(t *testing.T) {
	h.RequireRoot(t)
	ns := h.NewNetns(t)
	bin := h.Binary(t)
	base := h.Env{Command: "ADD", ContainerID: "bad", Netns: ns.Path, IfName: "eth0", Path: "/x"}
	tests := []struct {
		name string
		env  h.Env
		in   string
		code uint
		msg  string
	}{
		{"malformed JSON", base, `{"cniVersion":"0.3.0",`, 6, ""},
		{"unknown cniVersion", base, `{"cniVersion":"9.9.9","name":"n","type":"ec2-policy-routes"}`, 1, ""},
		{"wrong field type", base, `{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","linkTimeout":5}`, 6, "linkTimeout"},
		{"bad duration", base, `{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","linkTimeout":"5 parsecs"}`, 7, "linkTimeout"},
		{"reserved table", base, `{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","tableBase":254}`, 7, "tableBase"},
		{"reserved priority", base, `{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","priority":32766}`, 7, "priority"},
		{"missing CNI_NETNS", h.Env{Command: "ADD", ContainerID: "bad", IfName: "eth0", Path: "/x"},
			`{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes"}`, 4, "CNI_NETNS"},
		{"netns is not a namespace", h.Env{Command: "ADD", ContainerID: "bad", Netns: "/etc/hostname", IfName: "eth0", Path: "/x"},
			`{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes"}`, 4, "not a network namespace"},
		{"ifname is a path", h.Env{Command: "ADD", ContainerID: "bad", Netns: ns.Path, IfName: "../eth0", Path: "/x"},
			`{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","imds":{"enabled":false}}`, 4, "interface name"},
		{"CHECK needs 0.4.0", h.Env{Command: "CHECK", ContainerID: "bad", Netns: ns.Path, IfName: "eth0", Path: "/x"},
			`{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes"}`, 1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.Run(context.Background(), t, bin, tc.env, []byte(tc.in))
			r.MustFailWith(t, tc.name, tc.code)
			if !strings.Contains(r.Err.Msg, tc.msg) {
				t.Fatalf("message %q does not mention %q", r.Err.Msg, tc.msg)
			}
			if strings.Contains(string(r.Stderr), "panic") || strings.Contains(string(r.Stderr), "goroutine ") {
				t.Fatalf("stderr shows a panic: %s", r.Stderr)
			}
		})
	}
}
