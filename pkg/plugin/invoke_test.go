package plugin

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/logging"
)

// capture is a LoggerFactory that records what it was asked for and keeps
// the lines in memory.
type capture struct {
	buf          bytes.Buffer
	file, level  string
	calls        int
	releaseCalls int
}

func (c *capture) factory(file, level string) (*slog.Logger, func()) {
	c.file, c.level = file, level
	c.calls++
	lv, _ := logging.ParseLevel(level)
	return slog.New(slog.NewJSONHandler(&c.buf, &slog.HandlerOptions{Level: lv})), func() { c.releaseCalls++ }
}

func (c *capture) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(c.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

// Every verb writes exactly one line per invocation, on success and on
// every failure path reachable without root.
func TestEveryVerbLogsExactlyOneLine(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-netns")
	tests := []struct {
		name, verb   string
		stdin, netns string
		wantOutcome  string
		wantCode     uint
		wantNote     string
	}{
		{name: "ADD undecodable config", verb: "ADD", stdin: `{`, netns: missing, wantOutcome: "error", wantCode: types.ErrDecodingFailure},
		{name: "ADD invalid config", verb: "ADD", stdin: `{"linkTimeout":"forever"}`, netns: missing, wantOutcome: "error", wantCode: types.ErrInvalidNetworkConfig},
		{name: "ADD missing netns", verb: "ADD", stdin: `{}`, netns: missing, wantOutcome: "error", wantCode: types.ErrUnknownContainer},
		{name: "DEL without netns", verb: "DEL", stdin: `{}`, netns: "", wantOutcome: "ok", wantNote: "no netns: nothing to do"},
		{name: "DEL netns gone", verb: "DEL", stdin: `{}`, netns: missing, wantOutcome: "ok", wantNote: "netns gone: nothing to do"},
		{name: "DEL invalid config", verb: "DEL", stdin: `{"tableBase":0}`, netns: "", wantOutcome: "error", wantCode: types.ErrInvalidNetworkConfig},
		{name: "CHECK missing netns", verb: "CHECK", stdin: `{}`, netns: missing, wantOutcome: "error", wantCode: types.ErrUnknownContainer},
		{name: "STATUS ok", verb: "STATUS", stdin: `{}`, wantOutcome: "ok"},
		{name: "STATUS invalid config", verb: "STATUS", stdin: `{"logLevel":"loud"}`, wantOutcome: "error", wantCode: types.ErrInvalidNetworkConfig},
		{name: "GC ok", verb: "GC", stdin: `{"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"eth0"}]}`,
			wantOutcome: "ok", wantNote: "2 valid attachments"},
		{name: "GC bad attachments", verb: "GC", stdin: `{"cni.dev/valid-attachments":"x"}`, wantOutcome: "error", wantCode: types.ErrDecodingFailure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &capture{}
			p := &Plugin{NewLogger: c.factory, StateDir: t.TempDir()} // never the host's /run state
			args := &skel.CmdArgs{ContainerID: "ctr-1", Netns: tc.netns, IfName: "eth0", StdinData: []byte(tc.stdin)}
			verbs := map[string]func(*skel.CmdArgs) error{"ADD": p.Add, "DEL": p.Del, "CHECK": p.Check, "STATUS": p.Status, "GC": p.GC}
			err := verbs[tc.verb](args)
			lines := c.lines(t)
			if len(lines) != 1 {
				t.Fatalf("want exactly 1 line, got %d: %s", len(lines), c.buf.String())
			}
			if c.calls != 1 || c.releaseCalls != 1 {
				t.Errorf("logger built %d times, released %d times; want 1/1", c.calls, c.releaseCalls)
			}
			l := lines[0]
			for k, want := range map[string]any{"msg": tc.verb, "verb": tc.verb, "container": "ctr-1", "netns": tc.netns, "ifname": "eth0", "outcome": tc.wantOutcome} {
				if l[k] != want {
					t.Errorf("%s = %v, want %v (line %v)", k, l[k], want, l)
				}
			}
			if _, ok := l["duration_ms"].(float64); !ok || l["time"] == nil {
				t.Errorf("no time or duration_ms: %v", l)
			}
			if tc.wantOutcome == "error" {
				if err == nil {
					t.Fatal("verb succeeded")
				}
				if code, _ := l["code"].(float64); uint(code) != tc.wantCode || l["level"] != "ERROR" || l["error"] == "" {
					t.Errorf("error line %v, want code %d at ERROR", l, tc.wantCode)
				}
			} else if err != nil {
				t.Fatalf("verb failed: %v", err)
			}
			if tc.wantNote != "" && l["note"] != tc.wantNote {
				t.Errorf("note = %v, want %q", l["note"], tc.wantNote)
			}
		})
	}
}

func TestLogSettingsFromConfig(t *testing.T) {
	for _, tc := range []struct{ stdin, file, level string }{
		{`{}`, config.DefaultLogFile, config.DefaultLogLevel},
		{`not json`, config.DefaultLogFile, config.DefaultLogLevel},
		{`{"logFile":"/tmp/x.log","logLevel":"debug"}`, "/tmp/x.log", "debug"},
		{`{"logLevel":"loud"}`, config.DefaultLogFile, config.DefaultLogLevel},
	} {
		c := &capture{}
		p := &Plugin{NewLogger: c.factory}
		_ = p.Status(&skel.CmdArgs{StdinData: []byte(tc.stdin)})
		if c.file != tc.file || c.level != tc.level {
			t.Errorf("%s: factory got (%q, %q), want (%q, %q)", tc.stdin, c.file, c.level, tc.file, tc.level)
		}
	}
}

// With the real file logger: an error line reaches the configured file even
// though the configuration is rejected, and a plain Plugin without a factory
// logs nowhere and does not fail.
func TestInvocationLineReachesConfiguredFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ecs", "ec2-policy-routes.log")
	p := &Plugin{NewLogger: func(file, level string) (*slog.Logger, func()) {
		return logging.New(logging.Options{File: file, Level: level, Getenv: func(string) string { return "" }})
	}}
	stdin := `{"cniVersion":"1.0.0","logFile":"` + path + `","linkTimeout":"-1s"}`
	if err := p.Add(&skel.CmdArgs{ContainerID: "c", Netns: "/nonexistent", IfName: "eth0", StdinData: []byte(stdin)}); err == nil {
		t.Fatal("ADD with a bad linkTimeout succeeded")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != 1 || !bytes.Contains(b, []byte(`"code":7`)) {
		t.Errorf("want one code-7 line, got %d lines: %s", n, b)
	}
	if err := (&Plugin{}).Status(&skel.CmdArgs{StdinData: []byte(`{}`)}); err != nil {
		t.Errorf("STATUS without a logger: %v", err)
	}
}

// A level that passes config validation is the level the logger runs at:
// "DEBUG" validated and then ran at info while invoke matched lower case
// only.
func TestLogLevelAnyCaseRunsAsValidated(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"DEBUG", "debug"}, {"Warn", "warn"}, {"warning", "warn"}, {"ERROR", "error"}, {"info", "info"},
	} {
		stdin := []byte(`{"cniVersion":"1.0.0","name":"n","type":"ec2-policy-routes","logLevel":"` + tc.in + `"}`)
		cfg, err := config.Parse(stdin)
		if err != nil {
			t.Fatalf("%s: config rejected: %v", tc.in, err)
		}
		c := &capture{}
		p := &Plugin{NewLogger: c.factory}
		_ = p.Status(&skel.CmdArgs{StdinData: stdin})
		if c.level != tc.want || cfg.LogLevel != tc.want {
			t.Errorf("%s: logger level %q, config %q; want %q", tc.in, c.level, cfg.LogLevel, tc.want)
		}
	}
	c := &capture{}
	p := &Plugin{NewLogger: c.factory}
	_ = p.Status(&skel.CmdArgs{StdinData: []byte(`{"cniVersion":"1.0.0","name":"n","type":"ec2-policy-routes","logLevel":"DEBUG"}`)})
	p.log().Debug("probe")
	if !strings.Contains(c.buf.String(), `"msg":"probe"`) {
		t.Errorf("logLevel DEBUG: debug record not written: %s", c.buf.String())
	}
}
