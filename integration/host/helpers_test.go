package host

// The harness's pure parts, tested without a VM or root (they run in
// make test).

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func TestUnitIface(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"policy-routes@ecsab1c1.service", "ecsab1c1"},
		{"refresh-policy-routes@eth9.timer", "eth9"},
		{"/run/amazon-ec2-net-utils/setup-policy-routes/ecsab2c2", "ecsab2c2"},
		{"/run/systemd/system/policy-routes@eth1.service", "eth1"},
	} {
		if got := unitIface(c.in); got != c.want {
			t.Errorf("unitIface(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

const sampleState = `## processes (pid iface action unit iface-exists)
497 ecsab1c1 start policy-routes@ecsab1c1.service 0
## locks
/run/amazon-ec2-net-utils/setup-policy-routes/ecsab1c1 497
## units
policy-routes@ecsab1c1.service loaded activating start
refresh-policy-routes@ecsab1c1.service loaded inactive dead
## unit files
policy-routes@.service static
## templates
abc  /lib/systemd/system/policy-routes@.service
## etc udev rules
def  90-ec2pr-test-ena.rules
## unit dirs
`

func TestParseState(t *testing.T) {
	s := parseState(sampleState)
	for sec, n := range map[string]int{"processes": 1, "locks": 1, "units": 2, "unit-files": 1, "templates": 1, "udev": 1, "unit-dirs": 0} {
		if got, ok := s[sec]; !ok || len(got) != n {
			t.Errorf("section %s: %q, want %d lines", sec, got, n)
		}
	}
	if got := startProcs(s); len(got) != 1 {
		t.Errorf("startProcs = %q", got)
	}
	if exists(s, "ecsab1c1") {
		t.Error("ecsab1c1 is missing in the sample")
	}
}

func TestChangedRefresh(t *testing.T) {
	a := parseState(sampleState)
	b := parseState(sampleState)
	if got := changedRefresh(a, b); len(got) != 0 {
		t.Errorf("no change: %v", got)
	}
	b["units"][1] = "refresh-policy-routes@ecsab1c1.service loaded failed failed"
	b["locks"] = nil
	got := changedRefresh(a, b)
	if !got["ecsab1c1"] || len(got) != 1 {
		t.Errorf("changedRefresh = %v, want ecsab1c1", got)
	}
	// The lock that vanished with a refresh is not held against the dry run.
	if ka, kb := keepLines(a["locks"], got), keepLines(b["locks"], got); !slices.Equal(ka, kb) {
		t.Errorf("keepLines: %q vs %q", ka, kb)
	}
	if kept := keepLines(a["units"], map[string]bool{"eth9": true}); len(kept) != 2 {
		t.Errorf("keepLines dropped another interface's lines: %q", kept)
	}
}

func TestReplaceSection(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "R.md")
	for _, c := range []struct {
		name, in, want string
		add            bool
	}{
		{"replace middle", "# T\n\n## A\n\nold\n\n## B\n\nb\n", "# T\n\n## A\n\nnew\n\n## B\n\nb\n", false},
		{"replace last", "# T\n\n## A\n\nold\n", "# T\n\n## A\n\nnew\n", false},
		{"absent, no add", "# T\n\n## B\n\nb\n", "# T\n\n## B\n\nb\n", false},
		{"absent, add before Fuzzing", "# T\n\n## Summary\n\ns\n\n## Fuzzing\n\nf\n", "# T\n\n## Summary\n\ns\n\n## A\n\nnew\n\n## Fuzzing\n\nf\n", true},
		{"absent, add at end", "# T\n\n## Summary\n\ns\n", "# T\n\n## Summary\n\ns\n\n## A\n\nnew\n", true},
	} {
		if err := os.WriteFile(p, []byte(c.in), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := replaceSection(p, "## A", "new\n", c.add); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, _ := os.ReadFile(p)
		if string(got) != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.name, got, c.want)
		}
	}
	if err := replaceSection(filepath.Join(dir, "absent.md"), "## A", "x\n", false); err != nil {
		t.Errorf("a missing file without add: %v", err)
	}
}

func TestImageKeyStable(t *testing.T) {
	a, err := imageKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := imageKey()
	if a != b || len(a) != 16 {
		t.Errorf("imageKey %q then %q", a, b)
	}
}

// TestGuestScriptsParse: the guest scripts are at least valid bash (they
// run only inside the VM).
func TestGuestScriptsParse(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	paths, _ := filepath.Glob(filepath.Join(hostDir(), "guest", "*.sh"))
	paths = append(paths, filepath.Join(hostDir(), "image", "build.sh"), filepath.Join(hostDir(), "image", "files", "ec2pr-runner"))
	if len(paths) < 5 {
		t.Fatalf("guest scripts not found: %q", paths)
	}
	for _, p := range paths {
		if out, err := exec.Command(bash, "-n", p).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", p, err, out)
		}
	}
}
