package ecsfront

import (
	"strings"
	"testing"
)

// TestParseSettingsOneObjectOnly: the settings file is one JSON object;
// anything after it (garbage, a second object, a stray brace) is refused
// instead of silently ignored. Trailing whitespace is fine.
func TestParseSettingsOneObjectOnly(t *testing.T) {
	const obj = `{"upstream":"/amazon-ecs-cni-plugins","linkTimeout":"5s"}`
	for _, tc := range []struct{ name, json, err string }{
		{"object", obj, ""},
		{"trailing newline and spaces", obj + "\n  \n", ""},
		{"trailing garbage", obj + ` garbage {`, "data after the settings object (offset 57)"},
		{"second object", obj + `{"upstream":"/elsewhere"}`, "one JSON object only"},
		{"second object after a newline", obj + "\n" + `{"linkTimeout":"50s"}`, "one JSON object only"},
		{"stray closing brace", obj + `}`, "one JSON object only"},
		{"a number after", obj + ` 1`, "one JSON object only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSettings([]byte(tc.json))
			if tc.err == "" {
				if err != nil || s.LinkTimeout != "5s" {
					t.Fatalf("ParseSettings = %+v, %v", s, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

// TestParseSettingsLogFile: a relative logFile would put the front's log
// and its .lock in the agent's working directory: refused. Absolute paths
// and logging's "stderr" and "off" are accepted.
func TestParseSettingsLogFile(t *testing.T) {
	for _, tc := range []struct{ logFile, err string }{
		{"/var/log/ecs/ec2-policy-routes.log", ""},
		{"/log/ec2-policy-routes.log", ""},
		{"stderr", ""},
		{"off", ""},
		{"ec2-policy-routes.log", `logFile "ec2-policy-routes.log" is a relative path`},
		{"./front.log", `logFile "./front.log" is a relative path`},
		{"../log/front.log", "must be absolute"},
		{"log/front.log", "working directory"},
	} {
		_, err := ParseSettings([]byte(`{"logFile":"` + tc.logFile + `"}`))
		if tc.err == "" {
			if err != nil {
				t.Fatalf("%s: %v", tc.logFile, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Fatalf("%s: err %v, want %q", tc.logFile, err, tc.err)
		}
	}
}
