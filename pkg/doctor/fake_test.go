package doctor

import (
	"bytes"
	"context"
	"path"
	"strings"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/systemd"
)

// fakeSources are the unit sources fixture.systemctl registered.
var fakeSources = map[string]*fakeUnits{}

// fakeUnits is a UnitSource listing fixed units; it records the patterns.
type fakeUnits struct {
	units    []systemd.Unit
	patterns []string
}

func (f *fakeUnits) ListUnits(_ context.Context, patterns []string) ([]systemd.Unit, error) {
	f.patterns = patterns
	var out []systemd.Unit
	for _, u := range f.units {
		for _, p := range patterns {
			if ok, _ := path.Match(p, u.Name); ok {
				out = append(out, u)
				break
			}
		}
	}
	return out, nil
}

// parseUnits reads `systemctl list-units --plain --no-legend` lines (UNIT
// LOAD ACTIVE SUB DESCRIPTION...; failed units may carry a leading ●) into
// what systemd's D-Bus API returns, so fixtures stay readable.
func parseUnits(out string) []systemd.Unit {
	var units []systemd.Unit
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "●" || f[0] == "*" || f[0] == "○") {
			f = f[1:]
		}
		if len(f) < 4 || !strings.Contains(f[0], "policy-routes@") {
			continue
		}
		units = append(units, systemd.Unit{Name: f[0], LoadState: f[1], ActiveState: f[2], SubState: f[3]})
	}
	return units
}

// unitsOf converts listed units as readUnits does.
func unitsOf(us []systemd.Unit, exists func(string) bool) []Unit {
	var out []Unit
	for _, su := range us {
		out = append(out, toUnit(su, exists))
	}
	return out
}

// mainRun runs the CLI with ctx.
func mainRun(ctx context.Context, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := mainWith(ctx, args, &stdout, &stderr, "test", nil)
	return code, stdout.String(), stderr.String()
}
