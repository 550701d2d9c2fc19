package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fixture builds a fabricated host tree below a temp dir.
type fixture struct {
	t    *testing.T
	root string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, root: t.TempDir()}
	f.write("/proc/loadavg", "0.10 0.20 0.30 1/200 4242\n")
	f.write("/proc/stat", "cpu  1 2 3\ncpu0 1 2 3\ncpu1 1 2 3\nintr 0\n")
	f.mkdir("/sys/class/net/lo")
	f.mkdir("/sys/class/net/ens5")
	return f
}

func (f *fixture) write(p, content string) {
	f.t.Helper()
	full := filepath.Join(f.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) mkdir(p string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Join(f.root, p), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) symlink(target, p string) {
	f.t.Helper()
	full := filepath.Join(f.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		f.t.Fatal(err)
	}
}

// proc fabricates a process with argv.
func (f *fixture) proc(pid string, argv ...string) {
	f.write("/proc/"+pid+"/cmdline", strings.Join(argv, "\x00")+"\x00")
}

// systemctl registers a fake unit source (units read through systemd's
// D-Bus API) that lists out, given as `systemctl list-units --plain
// --no-legend` lines; it returns the key that `run` takes as the value
// of --systemctl.
func (f *fixture) systemctl(out string) string {
	f.t.Helper()
	key := fmt.Sprintf("fake-units-%d", len(fakeSources)+1)
	fakeSources[key] = &fakeUnits{units: parseUnits(out)}
	return key
}

// healthy sets up what a correctly migrated host has.
func (f *fixture) healthy() {
	f.write("/usr/lib/udev/rules.d/99-vpc-policy-routes.rules", "SUBSYSTEM==\"net\", ACTION==\"add\", RUN+=\"...\"\n")
	f.copyConf("udev/99-vpc-policy-routes.rules", "/etc/udev/rules.d/99-vpc-policy-routes.rules")
	f.copyConf("iproute2/rt_protos.d/ec2-policy-routes.conf", RtProtosFile)
	f.write("/usr/lib/systemd/systemd-networkd", "")
	f.copyConf("systemd/networkd.conf.d/ec2-policy-routes.conf", "/etc/systemd/networkd.conf.d/ec2-policy-routes.conf")
	f.write("/opt/cni/bin/ec2-policy-routes", "#!/bin/true\n")
}

// copyConf installs a file shipped in conf/ at its destination.
func (f *fixture) copyConf(src, dst string) {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "conf", src))
	if err != nil {
		f.t.Fatalf("shipped conf file: %v", err)
	}
	f.write(dst, string(b))
}

// affected reproduces the bug report's host: stuck start processes holding
// locks for detached ENIs, refreshes waiting on them, a dead owner, a
// reused PID, accumulated units and a high load.
func (f *fixture) affected() string {
	f.write("/usr/lib/udev/rules.d/99-vpc-policy-routes.rules", "SUBSYSTEM==\"net\", ACTION==\"add\", RUN+=\"...\"\n")
	f.mkdir("/sys/class/net/ens6")
	f.proc("3312864", "/bin/bash", "/usr/bin/setup-policy-routes", "ecse1a2b3c", "start")
	f.proc("3312900", "/bin/bash", "/usr/bin/setup-policy-routes", "ecse1a2b3c", "refresh")
	f.proc("3312901", "/bin/bash", "/usr/bin/setup-policy-routes", "ecse1a2b3c", "refresh")
	f.proc("4100", "/bin/bash", "/usr/bin/setup-policy-routes", "ens6", "start")
	f.proc("777", "/usr/sbin/sshd", "-D")
	f.write("/run/amazon-ec2-net-utils/setup-policy-routes/ecse1a2b3c", "3312864\n")
	f.write("/run/amazon-ec2-net-utils/setup-policy-routes/ens6", "4100\n")
	f.write("/run/amazon-ec2-net-utils/setup-policy-routes/ecs0a0b0c", "999999\n") // dead
	f.write("/run/amazon-ec2-net-utils/setup-policy-routes/ecs0d0e0f", "777\n")    // PID reused by sshd
	f.write("/proc/loadavg", "414.00 410.00 400.00 1787/3000 4242\n")
	f.write("/proc/stat", "cpu  1\ncpu0 1\ncpu1 1\ncpu2 1\ncpu3 1\ncpu4 1\ncpu5 1\ncpu6 1\ncpu7 1\n")
	return f.systemctl(strings.Join([]string{
		"policy-routes@ens5.service loaded active exited Set up policy routes for ens5",
		"policy-routes@ens6.service loaded activating start Set up policy routes for ens6",
		"policy-routes@ecse1a2b3c.service loaded activating start Set up policy routes for ecse1a2b3c",
		"refresh-policy-routes@ecse1a2b3c.service loaded activating start Refresh policy routes for ecse1a2b3c",
		"refresh-policy-routes@ecse1a2b3c.timer loaded active waiting Refresh policy routes for ecse1a2b3c",
		"● policy-routes@ecs0a0b0c.service loaded failed failed Set up policy routes for ecs0a0b0c",
		"policy-routes@ecs0d0e0f.service masked inactive dead policy-routes@ecs0d0e0f.service",
		"",
	}, "\n"))
}

// run runs the CLI; "--systemctl KEY" with a key from fixture.systemctl
// is replaced by that fake unit source.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	var units UnitSource
	var rest []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--systemctl" && i+1 < len(args) && fakeSources[args[i+1]] != nil {
			units = fakeSources[args[i+1]]
			i++
			continue
		}
		rest = append(rest, args[i])
	}
	code := mainWith(context.Background(), rest, &stdout, &stderr, "test", units)
	return code, stdout.String(), stderr.String()
}

func checkByID(t *testing.T, r *Report, id string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no check %s in %+v", id, r.Checks)
	return Check{}
}

func TestAffectedHostJSON(t *testing.T) {
	f := newFixture(t)
	sc := f.affected()
	code, out, stderr := run(t, "--json", "--root", f.root, "--systemctl", sc)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (problems)\n%s\n%s", code, out, stderr)
	}
	var r Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if r.Healthy || r.Root != f.root || r.Version != "test" {
		t.Errorf("header: healthy=%v root=%q version=%q", r.Healthy, r.Root, r.Version)
	}
	want := map[string]Status{
		CheckProcesses: StatusProblem, CheckLocks: StatusProblem, CheckUnits: StatusProblem,
		CheckUdev: StatusProblem, CheckLoad: StatusWarn, CheckRtProtos: StatusWarn,
		CheckNetworkd: StatusSkip, CheckInstalled: StatusWarn, CheckNetns: StatusOK,
	}
	for id, st := range want {
		if c := checkByID(t, &r, id); c.Status != st {
			t.Errorf("%s: status %s, want %s (%s)", id, c.Status, st, c.Summary)
		}
	}
	if r.Problems != 4 {
		t.Errorf("problems = %d, want 4", r.Problems)
	}

	// Processes: 4 found (sshd ignored), the start owns the lock, refreshes wait.
	if len(r.Processes) != 4 {
		t.Fatalf("processes: %+v", r.Processes)
	}
	for _, p := range r.Processes {
		switch {
		case p.PID == 3312864 && (!p.OwnsLock || p.InterfaceExists || p.Action != "start"):
			t.Errorf("stuck start: %+v", p)
		case p.PID == 3312900 && (p.OwnsLock || p.Action != "refresh"):
			t.Errorf("waiting refresh: %+v", p)
		case p.PID == 4100 && (!p.InterfaceExists || !p.OwnsLock):
			t.Errorf("healthy start: %+v", p)
		}
	}
	if s := checkByID(t, &r, CheckProcesses).Summary; !strings.Contains(s, "ecse1a2b3c") || strings.Contains(s, "ens6") {
		t.Errorf("processes summary should name exactly the missing interface: %s", s)
	}

	// Locks: dead owner and reused PID are stale; the live stuck owner is not.
	locks := map[string]LockFile{}
	for _, l := range r.LockFiles {
		locks[l.Interface] = l
	}
	if l := locks["ecs0a0b0c"]; !l.Stale || l.OwnerAlive {
		t.Errorf("dead owner lock: %+v", l)
	}
	if l := locks["ecs0d0e0f"]; !l.Stale || !l.OwnerAlive {
		t.Errorf("reused PID lock: %+v", l)
	}
	if l := locks["ecse1a2b3c"]; l.Stale || !l.OwnerAlive || l.InterfaceExists {
		t.Errorf("stuck owner lock: %+v", l)
	}
	if l := locks["ens6"]; l.Stale || !l.InterfaceExists {
		t.Errorf("healthy lock: %+v", l)
	}

	// Units: the live ones for ecse1a2b3c are the problem; the failed and
	// masked records are counted but are not "live".
	if s := checkByID(t, &r, CheckUnits).Summary; !strings.Contains(s, "policy-routes@ecse1a2b3c.service") ||
		!strings.Contains(s, "refresh-policy-routes@ecse1a2b3c.timer") || strings.Contains(s, "ecs0a0b0c") {
		t.Errorf("units summary: %s", s)
	}
	if len(r.Units) != 7 || !r.UnitsListed {
		t.Errorf("units: %d listed=%v", len(r.Units), r.UnitsListed)
	}
	if got := fakeSources[sc].patterns; strings.Join(got, " ") != "policy-routes@*.service refresh-policy-routes@*.service refresh-policy-routes@*.timer" {
		t.Errorf("units listed with patterns %q", got)
	}
	if r.Load == nil || r.Load.CPUs != 8 || r.Load.Load1 != 414 {
		t.Errorf("load: %+v", r.Load)
	}
}

func TestAffectedHostText(t *testing.T) {
	f := newFixture(t)
	sc := f.affected()
	code, out, _ := run(t, "--root", f.root, "--systemctl", sc)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"[PROBLEM] setup_policy_routes_processes",
		"pid 3312864: start ecse1a2b3c (MISSING from /sys/class/net, owns lock)",
		"pid 3312900: refresh ecse1a2b3c (MISSING from /sys/class/net, waiting for lock)",
		"owner PID 999999 is dead",
		"[PROBLEM] udev_override",
		"→ install /usr/share/ec2-policy-routes/udev/99-vpc-policy-routes.rules",
		"[WARN]    load_average: load average 414.00 410.00 400.00 on 8 CPUs",
		"PROBLEMS FOUND: 4 problems",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

var promLine = regexp.MustCompile(`^([a-z_][a-z0-9_]*)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+]+)$`)

// parseProm checks the textfile format and returns name{labels} → value.
func parseProm(t *testing.T, out string) map[string]string {
	t.Helper()
	vals := map[string]string{}
	typed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			if len(f) != 4 || f[3] != "gauge" {
				t.Fatalf("bad TYPE line %q", line)
			}
			typed[f[2]] = true
			continue
		}
		m := promLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a textfile sample line: %q", line)
		}
		if !typed[m[1]] || !strings.HasPrefix(m[1], MetricPrefix) {
			t.Fatalf("sample %q has no TYPE or lacks the prefix", line)
		}
		vals[m[1]+m[2]] = m[4]
	}
	return vals
}

func TestAffectedHostPrometheus(t *testing.T) {
	f := newFixture(t)
	sc := f.affected()
	code, out, _ := run(t, "--prometheus", "--root", f.root, "--systemctl", sc)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	v := parseProm(t, out)
	for k, want := range map[string]string{
		"ec2_policy_routes_doctor_healthy":                                       "0",
		"ec2_policy_routes_doctor_problems":                                      "4",
		"ec2_policy_routes_doctor_setup_policy_routes_processes":                 "4",
		"ec2_policy_routes_doctor_setup_policy_routes_missing_interfaces":        "1",
		"ec2_policy_routes_doctor_lock_files":                                    "4",
		"ec2_policy_routes_doctor_stale_lock_files":                              "2",
		"ec2_policy_routes_doctor_policy_routes_units_missing_interface":         "3",
		`ec2_policy_routes_doctor_policy_routes_units{active="failed"}`:          "1",
		`ec2_policy_routes_doctor_check{check="udev_override",status="problem"}`: "1",
		"ec2_policy_routes_doctor_load1":                                         "414",
		"ec2_policy_routes_doctor_cpus":                                          "8",
	} {
		if v[k] != want {
			t.Errorf("%s = %q, want %q", k, v[k], want)
		}
	}
}

func TestHealthyHost(t *testing.T) {
	f := newFixture(t)
	f.healthy()
	sc := f.systemctl("policy-routes@ens5.service loaded active exited Set up policy routes for ens5\n" +
		"refresh-policy-routes@ens5.timer loaded active waiting Refresh policy routes for ens5\n")
	for _, format := range []string{"", "--json", "--prometheus"} {
		args := []string{"--root", f.root, "--systemctl", sc}
		if format != "" {
			args = append(args, format)
		}
		code, out, stderr := run(t, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d, want 0\n%s%s", format, code, out, stderr)
		}
		switch format {
		case "":
			if !strings.Contains(out, "HEALTHY: 0 problems, 0 warnings") {
				t.Errorf("text:\n%s", out)
			}
		case "--prometheus":
			if parseProm(t, out)["ec2_policy_routes_doctor_healthy"] != "1" {
				t.Errorf("prometheus: %s", out)
			}
		}
	}
	// The shipped conf files satisfy their checks.
	r, err := Run(context.Background(), Options{Root: f.root, SkipUnits: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{CheckUdev, CheckRtProtos, CheckNetworkd, CheckInstalled, CheckProcesses, CheckLocks, CheckLoad} {
		if c := checkByID(t, r, id); c.Status != StatusOK {
			t.Errorf("%s: %s (%s)", id, c.Status, c.Summary)
		}
	}
	if c := checkByID(t, r, CheckUnits); c.Status != StatusSkip {
		t.Errorf("--systemctl none: units %s", c.Status)
	}
}

func TestUdevVariants(t *testing.T) {
	const vendor = "/usr/lib/udev/rules.d/99-vpc-policy-routes.rules"
	tests := []struct {
		name  string
		setup func(f *fixture)
		want  Status
		in    string
	}{
		{"not installed", func(f *fixture) {}, StatusOK, "not installed"},
		{"vendor only", func(f *fixture) { f.write(vendor, "x") }, StatusProblem, "not overridden"},
		{"vendor in /lib", func(f *fixture) { f.write("/lib/udev/rules.d/99-vpc-policy-routes.rules", "x") }, StatusProblem, "/lib/udev"},
		{"masked by /dev/null", func(f *fixture) {
			f.write(vendor, "x")
			f.symlink("/dev/null", "/etc/udev/rules.d/99-vpc-policy-routes.rules")
		}, StatusOK, "masks"},
		{"masked by empty file", func(f *fixture) {
			f.write(vendor, "x")
			f.write("/etc/udev/rules.d/99-vpc-policy-routes.rules", "")
		}, StatusOK, "masks"},
		{"ours in /run", func(f *fixture) {
			f.write(vendor, "x")
			f.copyConf("udev/99-vpc-policy-routes.rules", "/run/udev/rules.d/99-vpc-policy-routes.rules")
		}, StatusOK, "task ENIs"},
		{"/etc beats /run", func(f *fixture) {
			f.write(vendor, "x")
			f.symlink("/dev/null", "/run/udev/rules.d/99-vpc-policy-routes.rules")
			f.copyConf("udev/99-vpc-policy-routes.rules", "/etc/udev/rules.d/99-vpc-policy-routes.rules")
		}, StatusOK, "/etc/udev/rules.d/99-vpc-policy-routes.rules (ec2-policy-routes)"},
		{"unknown override", func(f *fixture) {
			f.write(vendor, "x")
			f.write("/etc/udev/rules.d/99-vpc-policy-routes.rules", "SUBSYSTEM==\"net\", RUN+=\"/bin/true\"\n")
		}, StatusWarn, "does not recognise"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(f)
			r, err := Run(context.Background(), Options{Root: f.root, SkipNetns: true})
			if err != nil {
				t.Fatal(err)
			}
			c := checkByID(t, r, CheckUdev)
			if c.Status != tc.want || !strings.Contains(c.Summary, tc.in) {
				t.Errorf("got %s %q, want %s containing %q", c.Status, c.Summary, tc.want, tc.in)
			}
		})
	}
}

func TestNetworkdDropinOrder(t *testing.T) {
	f := newFixture(t)
	f.write("/lib/systemd/systemd-networkd", "")
	f.write("/etc/systemd/networkd.conf", "[Network]\nManageForeignRoutingPolicyRules=no\n")
	f.write("/usr/lib/systemd/networkd.conf.d/10-vendor.conf", "[Network]\nManageForeignRoutingPolicyRules=no\n")
	f.write("/etc/systemd/networkd.conf.d/50-local.conf", "[Network]\n# comment\nManageForeignRoutingPolicyRules=yes\n")
	r, _ := Run(context.Background(), Options{Root: f.root, SkipNetns: true})
	if c := checkByID(t, r, CheckNetworkd); c.Status != StatusWarn {
		t.Errorf("a later drop-in setting yes must win: %s %s", c.Status, c.Summary)
	}
	// The shipped drop-in sorts after numbered ones ('e' > '5'): it wins.
	f.copyConf("systemd/networkd.conf.d/ec2-policy-routes.conf", "/etc/systemd/networkd.conf.d/ec2-policy-routes.conf")
	r, _ = Run(context.Background(), Options{Root: f.root, SkipNetns: true})
	if c := checkByID(t, r, CheckNetworkd); c.Status != StatusOK || !strings.Contains(c.Summary, "ec2-policy-routes.conf") {
		t.Errorf("shipped drop-in: %s %s", c.Status, c.Summary)
	}
	// /etc beats /run for a drop-in of the same name...
	f.write("/run/systemd/networkd.conf.d/ec2-policy-routes.conf", "[Network]\nManageForeignRoutingPolicyRules=yes\n")
	r, _ = Run(context.Background(), Options{Root: f.root, SkipNetns: true})
	if c := checkByID(t, r, CheckNetworkd); c.Status != StatusOK {
		t.Errorf("the /etc drop-in must shadow the same-named /run one: %s %s", c.Status, c.Summary)
	}
	// ...but a later name in any directory is applied after it.
	f.write("/run/systemd/networkd.conf.d/zz-late.conf", "[Network]\nManageForeignRoutingPolicyRules=yes\n")
	r, _ = Run(context.Background(), Options{Root: f.root, SkipNetns: true})
	if c := checkByID(t, r, CheckNetworkd); c.Status != StatusWarn {
		t.Errorf("zz-late.conf must win: %s %s", c.Status, c.Summary)
	}
}

func TestParseUnits(t *testing.T) {
	out := "policy-routes@ens5.service loaded active exited Set up policy routes for ens5\n" +
		"● policy-routes@ecs1.service loaded failed failed Set up\n" +
		"refresh-policy-routes@eth\\x2d1.timer loaded active waiting Refresh\n" +
		"garbage\n\n"
	units := unitsOf(parseUnits(out), func(n string) bool { return n == "ens5" })
	if len(units) != 3 {
		t.Fatalf("%+v", units)
	}
	if units[0].Interface != "ens5" || !units[0].InterfaceExists || units[0].Active != "active" {
		t.Errorf("%+v", units[0])
	}
	if units[1].Name != "policy-routes@ecs1.service" || units[1].Active != "failed" {
		t.Errorf("bullet not stripped: %+v", units[1])
	}
	if units[2].Interface != "eth-1" {
		t.Errorf("escaped instance: %q", units[2].Interface)
	}
}

func TestPolicyRoutesArgs(t *testing.T) {
	for _, tc := range []struct {
		argv          []string
		iface, action string
		ok            bool
	}{
		{[]string{"/bin/bash", "/usr/bin/setup-policy-routes", "ecs1", "start"}, "ecs1", "start", true},
		{[]string{"/usr/bin/setup-policy-routes", "ens6", "refresh"}, "ens6", "refresh", true},
		{[]string{"bash", "./bin/setup-policy-routes.sh", "ens6"}, "ens6", "", true},
		{[]string{"grep", "setup-policy-routes"}, "", "", false},
		{[]string{"vim", "/usr/bin/setup-policy-routes-notes"}, "", "", false},
	} {
		iface, action, ok := policyRoutesArgs(tc.argv)
		if iface != tc.iface || action != tc.action || ok != tc.ok {
			t.Errorf("%q: got %q %q %v", tc.argv, iface, action, ok)
		}
	}
}

func TestFixtureHasNoNamespaces(t *testing.T) {
	// Plain files where /proc/*/ns/net and /var/run/netns/* would be are
	// not nsfs: ignored, not errors.
	f := newFixture(t)
	f.write("/proc/10/cmdline", "init\x00")
	f.write("/proc/10/ns/net", "")
	f.write("/var/run/netns/fake", "")
	r, err := Run(context.Background(), Options{Root: f.root})
	if err != nil {
		t.Fatal(err)
	}
	if r.NamespacesScanned != 0 || r.NamespaceErrors != 0 || checkByID(t, r, CheckNetns).Status != StatusOK {
		t.Errorf("scanned %d errors %d: %+v", r.NamespacesScanned, r.NamespaceErrors, checkByID(t, r, CheckNetns))
	}
}

// Without root the host's own namespace is still listed by /proc/self; if
// the netlink dump is refused the check warns rather than failing.
func TestHostNamespaceScan(t *testing.T) {
	r, err := Run(context.Background(), Options{SkipUnits: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.NamespacesScanned == 0 {
		t.Fatal("no namespace found under /proc on the real host")
	}
	c := checkByID(t, r, CheckNetns)
	if os.Geteuid() == 0 && r.NamespaceErrors > 0 {
		t.Errorf("as root, %d namespaces could not be read: %v", r.NamespaceErrors, c.Details)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--json", "--prometheus"},
		{"--root", "/nonexistent/dir"},
		{"--bogus"},
		{"extra"},
	} {
		if code, _, _ := run(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if code, _, stderr := run(t, "--help"); code != 0 || !strings.Contains(stderr, "Exit status: 0 healthy") {
		t.Errorf("--help: exit %d\n%s", code, stderr)
	}
}

// Interpreter and wrapper forms a live owner can run as: none of them may
// be taken for "PID reused" (the hint would remove a live lock).
func TestPolicyRoutesArgsInterpreterForms(t *testing.T) {
	for _, tc := range []struct {
		argv          []string
		iface, action string
		ok            bool
	}{
		{[]string{"bash", "-x", "setup-policy-routes", "ens6", "start"}, "ens6", "start", true},
		{[]string{"/bin/bash", "-e", "-x", "/usr/bin/setup-policy-routes", "ens6", "refresh"}, "ens6", "refresh", true},
		{[]string{"/bin/sh", "-ex", "/usr/bin/setup-policy-routes", "ens6", "start"}, "ens6", "start", true},
		{[]string{"bash", "-o", "xtrace", "--norc", "--", "/usr/bin/setup-policy-routes", "ens6", "start"}, "ens6", "start", true},
		{[]string{"bash", "--rcfile", "/etc/x", "/usr/bin/setup-policy-routes", "ens6", "start"}, "ens6", "start", true},
		{[]string{"/usr/bin/env", "bash", "/usr/bin/setup-policy-routes", "ens6", "start"}, "ens6", "start", true},
		{[]string{"env", "-i", "LANG=C", "PATH=/usr/bin", "/bin/bash", "-x", "/usr/bin/setup-policy-routes", "ens7", "stop"}, "ens7", "stop", true},
		{[]string{"nice", "-n", "10", "setsid", "/usr/bin/setup-policy-routes", "ens6", "start"}, "ens6", "start", true},
		{[]string{"timeout", "-s", "TERM", "600", "bash", "/usr/bin/setup-policy-routes", "ens6", "start"}, "ens6", "start", true},
		{[]string{"/bin/sh", "-c", "exec /usr/bin/setup-policy-routes ens6 start"}, "ens6", "start", true},
		{[]string{"bash", "-xc", "/usr/bin/setup-policy-routes ens6 refresh"}, "ens6", "refresh", true},
		{[]string{"bash", "-x", "/usr/local/bin/my-script", "setup-policy-routes"}, "", "", false},
		{[]string{"env", "grep", "setup-policy-routes"}, "", "", false},
		{[]string{"sh", "-c", "grep setup-policy-routes /var/log/messages"}, "", "", false},
		{[]string{"bash"}, "", "", false},
		{[]string{"env"}, "", "", false},
	} {
		iface, action, ok := policyRoutesArgs(tc.argv)
		if iface != tc.iface || action != tc.action || ok != tc.ok {
			t.Errorf("%q: got %q %q %v; want %q %q %v", tc.argv, iface, action, ok, tc.iface, tc.action, tc.ok)
		}
	}
}

// The manual cure (udev override, units stopped and masked, doctor
// --stale-locks | xargs rm; README now documents repair --apply, tested in
// pkg/repair), applied to the affected host plus a live lock
// whose owner runs as `bash -x setup-policy-routes`, reach exit 0: the
// PID-reused lock is removed by step 3, the live one is kept.
func TestReadmeCleanupReachesHealthy(t *testing.T) {
	f := newFixture(t)
	f.affected()
	f.mkdir("/sys/class/net/ens7")
	f.proc("5200", "bash", "-x", "/usr/bin/setup-policy-routes", "ens7", "start")
	f.write("/run/amazon-ec2-net-utils/setup-policy-routes/ens7", "5200\n")

	// 1. the udev override (and the optional networkd drop-in).
	f.healthy()
	// 2. units of missing interfaces stopped (their processes gone) and masked.
	for _, pid := range []string{"3312864", "3312900", "3312901"} {
		if err := os.RemoveAll(filepath.Join(f.root, "proc", pid)); err != nil {
			t.Fatal(err)
		}
	}
	f.write("/proc/loadavg", "0.10 0.20 0.30 1/200 4242\n")
	sc := f.systemctl(strings.Join([]string{
		"policy-routes@ens5.service loaded active exited Set up policy routes for ens5",
		"policy-routes@ens6.service loaded activating start Set up policy routes for ens6",
		"policy-routes@ens7.service loaded activating start Set up policy routes for ens7",
		"policy-routes@ecse1a2b3c.service masked inactive dead policy-routes@ecse1a2b3c.service",
		"refresh-policy-routes@ecse1a2b3c.timer masked inactive dead refresh-policy-routes@ecse1a2b3c.timer",
		"policy-routes@ecs0a0b0c.service masked inactive dead policy-routes@ecs0a0b0c.service",
		"policy-routes@ecs0d0e0f.service masked inactive dead policy-routes@ecs0d0e0f.service",
		"",
	}, "\n"))
	if code, out, _ := run(t, "--root", f.root, "--systemctl", sc, "--skip-netns"); code != 1 {
		t.Fatalf("before step 3: exit %d, want 1 (stale locks)\n%s", code, out)
	}
	// 3. ec2-policy-routes doctor --stale-locks | xargs -r rm -f --
	code, out, stderr := run(t, "--stale-locks", "--root", f.root)
	if code != 0 {
		t.Fatalf("--stale-locks: exit %d: %s", code, stderr)
	}
	listed := strings.Fields(out)
	dir := filepath.Join(f.root, "/run/amazon-ec2-net-utils/setup-policy-routes")
	want := []string{filepath.Join(dir, "ecs0a0b0c"), filepath.Join(dir, "ecs0d0e0f"), filepath.Join(dir, "ecse1a2b3c")}
	if strings.Join(listed, " ") != strings.Join(want, " ") {
		t.Fatalf("--stale-locks listed %q, want %q", listed, want)
	}
	for _, p := range listed {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	code, out, stderr = run(t, "--root", f.root, "--systemctl", sc, "--skip-netns")
	if code != 0 {
		t.Fatalf("after README's steps: exit %d, want 0\n%s%s", code, out, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "ens7")); err != nil {
		t.Errorf("the live lock of `bash -x setup-policy-routes ens7` was removed: %v", err)
	}
}

// Failed or inactive units of missing interfaces run nothing: the units
// check stays OK but no longer claims every unit has its interface.
func TestUnitsSummaryNamesLeftoverRecords(t *testing.T) {
	cases := []struct {
		name, units, want, notWant string
	}{
		{"all present", "policy-routes@ens5.service loaded active exited x\npolicy-routes@ens6.service loaded active exited x\n",
			"all for existing interfaces", "missing interfaces"},
		{"failed record of a missing interface", "policy-routes@ens5.service loaded active exited x\npolicy-routes@eth3.service loaded failed failed x\n",
			"none live for a missing interface; 1 units of missing interfaces are failed or inactive records", "all for existing interfaces"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.healthy()
			f.mkdir("/sys/class/net/ens6")
			r, err := Run(context.Background(), Options{Root: f.root, Units: fakeSources[f.systemctl(tc.units)], SkipNetns: true})
			if err != nil {
				t.Fatal(err)
			}
			c := checkByID(t, r, CheckUnits)
			if c.Status != StatusOK || !strings.Contains(c.Summary, tc.want) || strings.Contains(c.Summary, tc.notWant) {
				t.Errorf("units check %s: %q; want OK containing %q, not %q", c.Status, c.Summary, tc.want, tc.notWant)
			}
		})
	}
}
