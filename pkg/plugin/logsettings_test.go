package plugin

import (
	"testing"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
)

// TestLogSettingsRelativeFile: the line of an invocation whose config names
// a relative logFile (refused by config.Parse, code 7) goes to the default
// log, never to a file in the runtime's working directory.
func TestLogSettingsRelativeFile(t *testing.T) {
	for _, tc := range []struct{ conf, want string }{
		{`{"logFile":"/tmp/x/p.log"}`, "/tmp/x/p.log"},
		{`{"logFile":"stderr"}`, "stderr"},
		{`{"logFile":"p.log"}`, config.DefaultLogFile},
		{`{"logFile":"./p.log"}`, config.DefaultLogFile},
		{`{"logFile":"../p.log"}`, config.DefaultLogFile},
		{`{}`, config.DefaultLogFile},
	} {
		if got, _ := logSettings([]byte(tc.conf)); got != tc.want {
			t.Errorf("%s: log file %q, want %q", tc.conf, got, tc.want)
		}
	}
}
