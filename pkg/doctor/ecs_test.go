package doctor

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsinstall"
)

const capsOK = `{"capabilities":["awsvpc-network-mode"]}`

// ecsHost makes the fixture an ECS host: a running agent (pid 4242,
// argv[0] /agent) whose container holds the plugins at the default UP,
// and the package's binary.
func (f *fixture) ecsHost(extra ...string) {
	f.healthy()
	f.write("/opt/cni/bin/ec2-policy-routes", "package binary v2\n")
	f.write("/proc/4242/cmdline", "/agent\x00")
	f.write("/proc/4242/environ", ecsfront.PluginsPathVar+"="+ecsfront.DefaultInstallDir+"\x00")
	for _, name := range append(append([]string{}, ecsfront.KnownPlugins...), extra...) {
		f.write("/proc/4242/root"+ecsfront.DefaultUpstreamDir+"/"+name, "#!/bin/sh\necho '"+capsOK+"'\n")
	}
}

// ecsInstall runs `ecs install` into the fixture, as on the host, and
// names the install in ecs.config.
func (f *fixture) ecsInstall() string {
	f.t.Helper()
	dir := filepath.Join(f.root, ecsfront.DefaultInstallDir)
	err := ecsinstall.Install(context.Background(), ecsinstall.Options{Dir: dir, Proc: filepath.Join(f.root, "proc"),
		Self: filepath.Join(f.root, PackageBinary), ECSConfig: filepath.Join(f.root, "/etc/ecs/unused")})
	if err != nil {
		f.t.Fatal(err)
	}
	f.write(ecsfront.ECSConfig, "ECS_CLUSTER=prod\n"+ecsfront.PluginsPathVar+"="+ecsfront.DefaultInstallDir+"\n")
	// ecs-init's bind mount of /var/lib/ecs into the agent's container.
	f.symlink(filepath.Join(f.root, "/var/lib/ecs"), "/proc/4242/root/var/lib/ecs")
	return dir
}

func runECS(t *testing.T, f *fixture) *Report {
	t.Helper()
	r, err := Run(context.Background(), Options{Root: f.root, SkipUnits: true, SkipNetns: true})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestECSFrontHealthy(t *testing.T) {
	f := newFixture(t)
	f.ecsHost()
	f.ecsInstall()
	r := runECS(t, f)
	for _, id := range []string{CheckECSFront, CheckECSPlugins, CheckECSUpstream, CheckECSBinary} {
		if c := checkByID(t, r, id); c.Status != StatusOK {
			t.Errorf("%s: %s %s %v", id, c.Status, c.Summary, c.Details)
		}
	}
	if !r.Healthy || r.ECS == nil || !r.ECS.Installed || r.ECS.AgentPID != 4242 || r.ECS.Upstream != ecsfront.DefaultUpstreamDir {
		t.Errorf("report: healthy=%v %+v", r.Healthy, r.ECS)
	}
	if s := checkByID(t, r, CheckECSUpstream).Summary; !strings.Contains(s, "seen through the running ECS agent's container (pid 4242)") {
		t.Errorf("upstream summary: %s", s)
	}
	code, out, _ := run(t, "--prometheus", "--root", f.root, "--systemctl", "none", "--skip-netns")
	v := parseProm(t, out)
	if code != 0 || v["ec2_policy_routes_doctor_ecs_front_installed"] != "1" || v["ec2_policy_routes_doctor_ecs_front_missing_plugins"] != "0" {
		t.Errorf("prometheus exit %d:\n%s", code, out)
	}
}

func TestECSFrontProblems(t *testing.T) {
	tests := []struct {
		name    string
		extra   []string // plugins only the agent's image has
		after   func(f *fixture, dir string)
		id      string
		status  Status
		summary string
	}{
		{"agent upgrade brought a plugin", []string{"ecs-newthing"}, func(f *fixture, dir string) {
			os.Remove(filepath.Join(dir, "ecs-newthing"))
		}, CheckECSPlugins, StatusProblem, "ecs-newthing"},
		{"known name missing", nil, func(f *fixture, dir string) { os.Remove(filepath.Join(dir, "ecs-bridge")) },
			CheckECSPlugins, StatusProblem, "do not resolve in " + ecsfront.DefaultInstallDir + ": ecs-bridge "},
		{"dangling link", nil, func(f *fixture, dir string) {
			os.Remove(filepath.Join(f.root, "/proc/4242/root", ecsfront.DefaultUpstreamDir, "aws-appmesh"))
		}, CheckECSPlugins, StatusProblem, "aws-appmesh"},
		{"front writable by others", nil, func(f *fixture, dir string) { os.Chmod(filepath.Join(dir, "vpc-eni"), 0o777) },
			CheckECSPlugins, StatusProblem, "front is UNTRUSTED"},
		{"stale binary", nil, func(f *fixture, dir string) { f.write(PackageBinary, "package binary v3\n") },
			CheckECSBinary, StatusProblem, "differ from /opt/cni/bin/ec2-policy-routes: vpc-eni vpc-branch-eni"},
		{"upstream broken", nil, func(f *fixture, dir string) {
			f.write("/proc/4242/root"+ecsfront.DefaultUpstreamDir+"/vpc-eni", "#!/bin/sh\nexit 2\n")
		}, CheckECSUpstream, StatusProblem, "is broken"},
		{"agent does not see DIR", nil, func(f *fixture, dir string) { os.Remove(filepath.Join(f.root, "/proc/4242/root/var/lib/ecs")) },
			CheckECSFront, StatusProblem, "(pid 4242) does not see " + ecsfront.DefaultInstallDir},
		{"agent not restarted", nil, func(f *fixture, dir string) { f.write("/proc/4242/environ", "HOME=/\x00") },
			CheckECSFront, StatusWarn, "it was not restarted since"},
		{"install removed, line kept", nil, func(f *fixture, dir string) { os.RemoveAll(dir) },
			CheckECSFront, StatusProblem, "does not exist: the agent exits at startup"},
		{"not an install", nil, func(f *fixture, dir string) { os.Remove(filepath.Join(dir, ecsfront.SettingsFile)) },
			CheckECSFront, StatusWarn, "is not an ec2-policy-routes front"},
		{"agent not running", nil, func(f *fixture, dir string) { os.RemoveAll(filepath.Join(f.root, "proc/4242")) },
			CheckECSUpstream, StatusSkip, "not visible from here"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.ecsHost(tc.extra...)
			dir := f.ecsInstall()
			tc.after(f, dir)
			r := runECS(t, f)
			c := checkByID(t, r, tc.id)
			if c.Status != tc.status || !strings.Contains(c.Summary+strings.Join(c.Details, "\n"), tc.summary) {
				t.Errorf("%s: %s %q %v, want %s containing %q", tc.id, c.Status, c.Summary, c.Details, tc.status, tc.summary)
			}
			if (tc.status == StatusProblem) == r.Healthy {
				t.Errorf("healthy=%v with a %s", r.Healthy, tc.status)
			}
		})
	}
}

func TestECSFrontNotConfigured(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		status       Status
	}{
		{"no ecs.config", "", StatusSkip},
		{"ecs.config without the line", "ECS_CLUSTER=prod\n", StatusSkip},
		{"the agent's own directory", "ECS_CNI_PLUGINS_PATH=/amazon-ecs-cni-plugins\n", StatusSkip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.healthy()
			if tc.config != "" {
				f.write(ecsfront.ECSConfig, tc.config)
			}
			code, out, _ := run(t, "--json", "--root", f.root, "--systemctl", "none", "--skip-netns")
			var r Report
			if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 {
				t.Fatalf("exit %d %v\n%s", code, err, out)
			}
			if c := checkByID(t, &r, CheckECSFront); c.Status != tc.status || r.ECS != nil || r.Warnings != 0 {
				t.Errorf("%s %s; ecs %+v warnings %d", c.Status, c.Summary, r.ECS, r.Warnings)
			}
		})
	}
	// Installed but not named in ecs.config: a warning, with the fix.
	f := newFixture(t)
	f.ecsHost()
	f.ecsInstall()
	f.write(ecsfront.ECSConfig, "ECS_CLUSTER=prod\n")
	if c := checkByID(t, runECS(t, f), CheckECSFront); c.Status != StatusWarn || !strings.Contains(c.Hint, "--write") {
		t.Errorf("installed, not configured: %s %s %s", c.Status, c.Summary, c.Hint)
	}
}

// TestECSFrontUdevOverride (issue 19.2): a front's host without the udev
// override (ec2-net-utils' rule installed) is flagged with the fix.
func TestECSFrontUdevOverride(t *testing.T) {
	const override = "/etc/udev/rules.d/99-vpc-policy-routes.rules"
	for _, tc := range []struct {
		name    string
		change  func(f *fixture)
		status  Status
		summary string
	}{
		{"in place", func(f *fixture) {}, StatusOK, "is in place"},
		{"missing", func(f *fixture) { os.Remove(filepath.Join(f.root, override)) }, StatusWarn, "lacks the udev override"},
		{"another release's", func(f *fixture) { f.write(override, "# ec2-policy-routes 0.1\n") }, StatusWarn, "another release's"},
		{"foreign (EKS mask)", func(f *fixture) { f.write(override, "") }, StatusSkip, "is not ours"},
		{"no ec2-net-utils", func(f *fixture) {
			os.Remove(filepath.Join(f.root, override))
			os.Remove(filepath.Join(f.root, "/usr/lib/udev/rules.d/99-vpc-policy-routes.rules"))
		}, StatusOK, "no override needed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.ecsHost()
			f.ecsInstall()
			tc.change(f)
			c := checkByID(t, runECS(t, f), CheckECSUdev)
			if c.Status != tc.status || !strings.Contains(c.Summary, tc.summary) {
				t.Errorf("%s %q, want %s containing %q", c.Status, c.Summary, tc.status, tc.summary)
			}
			if tc.status == StatusWarn && (!strings.Contains(c.Hint, "repair --apply") || !strings.Contains(c.Hint, "ecs install")) {
				t.Errorf("hint %q", c.Hint)
			}
		})
	}
}
