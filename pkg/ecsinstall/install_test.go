package ecsinstall

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

const capsOK = `{"capabilities":["awsvpc-network-mode"]}`

// env is one install scenario: an upstream plugin directory, a binary
// standing in for this one, an empty /proc and an ecs.config path.
type env struct {
	t                         *testing.T
	base, up, dir, proc, self string
	ecsConfig                 string
}

func newEnv(t *testing.T) *env {
	base := t.TempDir()
	e := &env{t: t, base: base, up: filepath.Join(base, "up"), dir: filepath.Join(base, "var/lib/ecs/ec2pr/cni-plugins"),
		proc: filepath.Join(base, "proc"), self: filepath.Join(base, "self"), ecsConfig: filepath.Join(base, "etc/ecs/ecs.config")}
	for _, d := range []string{e.up, e.proc} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.writeFile(e.self, "front binary v1", 0o755)
	for _, name := range append(ecsfront.KnownPlugins, "ecs-newplugin") {
		e.plugin(e.up, name, "echo '"+capsOK+"'")
	}
	e.writeFile(filepath.Join(e.up, "vpc-eni.calls"), "not a plugin", 0o644)
	os.Mkdir(filepath.Join(e.up, "subdir"), 0o755)
	return e
}

func (e *env) writeFile(p, content string, mode os.FileMode) {
	e.t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		e.t.Fatal(err)
	}
}

// plugin writes a shell-script plugin answering with body.
func (e *env) plugin(dir, name, body string) {
	e.writeFile(filepath.Join(dir, name), "#!/bin/sh\n"+body+"\n", 0o755)
}

func (e *env) opts() Options {
	return Options{Dir: e.dir, Upstream: e.up, Proc: e.proc, Self: e.self, ECSConfig: e.ecsConfig, ProbeTimeout: 3 * time.Second}
}

func (e *env) install(o Options) (string, error) {
	var out bytes.Buffer
	o.Out = &out
	err := Install(context.Background(), o)
	return out.String(), err
}

func (e *env) mustInstall(o Options) string {
	e.t.Helper()
	out, err := e.install(o)
	if err != nil {
		e.t.Fatalf("install: %v\n%s", err, out)
	}
	return out
}

func stat(t *testing.T, p string) (os.FileInfo, *syscall.Stat_t) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi, fi.Sys().(*syscall.Stat_t)
}

func TestInstallLayout(t *testing.T) {
	e := newEnv(t)
	out := e.mustInstall(e.opts())
	for _, name := range ecsfront.FrontedPlugins {
		p := filepath.Join(e.dir, name)
		fi, st := stat(t, p)
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 || st.Uid != uint32(os.Geteuid()) {
			t.Errorf("%s: mode %v uid %d, want a regular 0755 file of uid %d", p, fi.Mode(), st.Uid, os.Geteuid())
		}
		if b, _ := os.ReadFile(p); string(b) != "front binary v1" {
			t.Errorf("%s is not a copy of the binary: %q", p, b)
		}
	}
	for _, name := range []string{"ecs-bridge", "ecs-ipam", "aws-appmesh", "ecs-serviceconnect", "ecs-newplugin"} {
		if target, err := os.Readlink(filepath.Join(e.dir, name)); err != nil || target != filepath.Join(e.up, name) {
			t.Errorf("%s: symlink %q %v, want -> %s", name, target, err, filepath.Join(e.up, name))
		}
	}
	for _, name := range []string{"vpc-eni.calls", "subdir"} {
		if _, err := os.Lstat(filepath.Join(e.dir, name)); err == nil {
			t.Errorf("upstream's %s (not an executable) was linked as a plugin", name)
		}
	}
	if os.Geteuid() == 0 { // the front's own check accepts what install wrote
		for _, name := range append(ecsfront.FrontedPlugins, ecsfront.SettingsFile) {
			if err := ecsfront.CheckTrusted(filepath.Join(e.dir, name)); err != nil {
				t.Errorf("ecsfront.CheckTrusted: %v", err)
			}
		}
	}
	sp := filepath.Join(e.dir, ecsfront.SettingsFile)
	if fi, _ := stat(t, sp); fi.Mode().Perm() != 0o644 {
		t.Errorf("settings mode %v", fi.Mode())
	}
	b, _ := os.ReadFile(sp)
	if s, err := ecsfront.ParseSettings(b); err != nil || s.Upstream != e.up {
		t.Errorf("settings %q: %+v %v", b, s, err)
	}
	for p := e.dir; p != e.base; p = filepath.Dir(p) {
		if fi, _ := stat(t, p); fi.Mode().Perm() != 0o755 {
			t.Errorf("created %s with mode %v, want 0755", p, fi.Mode().Perm())
		}
	}
	lines := strings.Split(out, "\n")
	if !contains(lines, "ECS_CNI_PLUGINS_PATH="+e.dir) || !strings.Contains(out, "systemctl restart ecs") {
		t.Errorf("output lacks the exact line or the restart step:\n%s", out)
	}
	if !strings.Contains(out, "seen directly on this host at "+e.up) || !strings.Contains(out, "vpc-eni answers --capabilities") {
		t.Errorf("output does not say where it saw upstream:\n%s", out)
	}
}

func TestInstallIdempotent(t *testing.T) {
	e := newEnv(t)
	o := e.opts()
	o.Write = true
	e.mustInstall(o)
	before := snapshot(t, e.dir)
	cfg, _ := os.ReadFile(e.ecsConfig)
	out := e.mustInstall(o)
	if !strings.Contains(out, "already installed and up to date: nothing changed") || strings.Contains(out, "wrote") {
		t.Errorf("second run:\n%s", out)
	}
	if !strings.Contains(out, "already has ECS_CNI_PLUGINS_PATH="+e.dir) {
		t.Errorf("second run must say ecs.config is already set:\n%s", out)
	}
	if after := snapshot(t, e.dir); after != before {
		t.Errorf("second run changed the directory:\n%s\n---\n%s", before, after)
	}
	if cfg2, _ := os.ReadFile(e.ecsConfig); !bytes.Equal(cfg, cfg2) {
		t.Errorf("second run changed ecs.config: %q -> %q", cfg, cfg2)
	}
}

// snapshot lists every entry's inode, mode, mtime and link target.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		fi, st := stat(t, filepath.Join(dir, en.Name()))
		target, _ := os.Readlink(filepath.Join(dir, en.Name()))
		fmt.Fprintf(&b, "%s %v %v %s ino %d\n", en.Name(), fi.Mode(), fi.ModTime(), target, st.Ino)
	}
	return b.String()
}

func TestInstallRepairs(t *testing.T) {
	e := newEnv(t)
	e.mustInstall(e.opts())
	// A new package binary, a front made group-writable, a symlink pointing
	// elsewhere, a deleted link: the next install puts all of it right.
	e.writeFile(e.self, "front binary v2", 0o755)
	os.Chmod(filepath.Join(e.dir, "vpc-branch-eni"), 0o775)
	os.Remove(filepath.Join(e.dir, "ecs-bridge"))
	os.Symlink("/elsewhere", filepath.Join(e.dir, ".x"))
	os.Remove(filepath.Join(e.dir, "ecs-ipam"))
	os.Symlink("/elsewhere/ecs-ipam", filepath.Join(e.dir, "ecs-ipam"))
	out := e.mustInstall(e.opts())
	if !strings.Contains(out, ": 4 changes") {
		t.Errorf("want 4 changes:\n%s", out)
	}
	for _, name := range ecsfront.FrontedPlugins {
		fi, _ := stat(t, filepath.Join(e.dir, name))
		if b, _ := os.ReadFile(filepath.Join(e.dir, name)); string(b) != "front binary v2" || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s not refreshed: %q %v", name, b, fi.Mode())
		}
	}
	if target, _ := os.Readlink(filepath.Join(e.dir, "ecs-ipam")); target != filepath.Join(e.up, "ecs-ipam") {
		t.Errorf("ecs-ipam -> %s", target)
	}
	if left, _ := filepath.Glob(filepath.Join(e.dir, ".*.tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestInstallSettingsFromConfigFile(t *testing.T) {
	e := newEnv(t)
	cfg := filepath.Join(e.base, "front.json")
	e.writeFile(cfg, `{"upstream":"/from/config","linkTimeout":"5s","logLevel":"debug","imds":{"enabled":false}}`, 0o644)
	o := e.opts()
	o.ConfigFile = cfg
	e.mustInstall(o) // --upstream wins over the file's
	s, err := ecsfront.LoadSettings(filepath.Join(e.dir, ecsfront.SettingsFile))
	if os.Geteuid() != 0 {
		b, _ := os.ReadFile(filepath.Join(e.dir, ecsfront.SettingsFile))
		s, err = ecsfront.ParseSettings(b)
	}
	if err != nil || s.Upstream != e.up || s.LinkTimeout != "5s" || s.LogLevel != "debug" || s.IMDS == nil {
		t.Errorf("settings: %+v %v", s, err)
	}
	// A re-run without --config keeps them.
	o.ConfigFile = ""
	if out := e.mustInstall(o); !strings.Contains(out, "nothing changed") || !strings.Contains(out, "settings from the existing") {
		t.Errorf("re-run without --config:\n%s", out)
	}
	o.ConfigFile = cfg
	o.Upstream = ""
	e.writeFile(cfg, `{"upstream":"`+e.up+`","logFile":"/log/x.log"}`, 0o644)
	e.mustInstall(o)
	b, _ := os.ReadFile(filepath.Join(e.dir, ecsfront.SettingsFile))
	if s, _ := ecsfront.ParseSettings(b); s.Upstream != e.up || s.LogFile != "/log/x.log" || s.LinkTimeout != "" {
		t.Errorf("settings replaced from file: %s", b)
	}
}

func TestInstallWriteECSConfig(t *testing.T) {
	e := newEnv(t)
	orig := "ECS_CLUSTER=prod\n# a comment\nECS_CNI_PLUGINS_PATH=/old/path\nECS_ENABLE_TASK_ENI=true\nECS_CNI_PLUGINS_PATH=/older\nECS_LOGLEVEL=debug"
	e.writeFile(e.ecsConfig, orig, 0o600)
	o := e.opts()
	o.Write = true
	out := e.mustInstall(o)
	got, _ := os.ReadFile(e.ecsConfig)
	want := "ECS_CLUSTER=prod\n# a comment\nECS_CNI_PLUGINS_PATH=" + e.dir + "\nECS_ENABLE_TASK_ENI=true\nECS_LOGLEVEL=debug\n"
	if string(got) != want {
		t.Errorf("ecs.config:\n%s\nwant:\n%s", got, want)
	}
	if fi, _ := stat(t, e.ecsConfig); fi.Mode().Perm() != 0o600 {
		t.Errorf("ecs.config mode %v, want 0600 kept", fi.Mode().Perm())
	}
	if !strings.Contains(out, "set ECS_CNI_PLUGINS_PATH="+e.dir) {
		t.Errorf("output:\n%s", out)
	}
	// No ecs.config yet: created 0644 with just the line.
	os.RemoveAll(filepath.Dir(e.ecsConfig))
	e.mustInstall(o)
	got, _ = os.ReadFile(e.ecsConfig)
	if fi, _ := stat(t, e.ecsConfig); string(got) != "ECS_CNI_PLUGINS_PATH="+e.dir+"\n" || fi.Mode().Perm() != 0o644 {
		t.Errorf("new ecs.config %q mode %v", got, fi.Mode().Perm())
	}
}

func TestInstallRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env, o *Options)
		want  []string
	}{
		{"upstream without vpc-eni", func(e *env, o *Options) {
			o.Upstream = filepath.Join(e.base, "empty")
			os.Mkdir(o.Upstream, 0o755)
		}, []string{"not a directory of ECS CNI plugins", "/empty/vpc-eni"}},
		{"vpc-eni not executable", func(e *env, o *Options) { os.Chmod(filepath.Join(e.up, "vpc-eni"), 0o644) },
			[]string{"/up/vpc-eni is not an executable file"}},
		{"vpc-eni wrong capabilities", func(e *env, o *Options) { e.plugin(e.up, "vpc-eni", "echo '{\"capabilities\":[]}'") },
			[]string{"lacks awsvpc-network-mode"}},
		{"vpc-eni prints garbage", func(e *env, o *Options) { e.plugin(e.up, "vpc-eni", "echo hello") },
			[]string{`printed "hello"`}},
		{"vpc-eni fails", func(e *env, o *Options) { e.plugin(e.up, "vpc-eni", "echo broken >&2; exit 3") },
			[]string{"exit status 3", "broken"}},
		{"vpc-eni hangs", func(e *env, o *Options) {
			e.plugin(e.up, "vpc-eni", "exec sleep 30")
			o.ProbeTimeout = 300 * time.Millisecond
		}, []string{"did not answer within 300ms"}},
		{"vpc-branch-eni broken", func(e *env, o *Options) { e.plugin(e.up, "vpc-branch-eni", "exit 1") },
			[]string{"vpc-branch-eni --capabilities"}},
		{"upstream vpc-eni group-writable", func(e *env, o *Options) { os.Chmod(filepath.Join(e.up, "vpc-eni"), 0o775) },
			[]string{"untrusted path", "/up/vpc-eni is writable by group or others"}},
		{"untrusted parent of DIR", func(e *env, o *Options) {
			os.MkdirAll(filepath.Join(e.base, "var/lib"), 0o755)
			os.Chmod(filepath.Join(e.base, "var/lib"), 0o777)
		}, []string{"refusing to install below an untrusted directory", "/var/lib is writable by group or others"}},
		{"DIR unwritable (a file in the way)", func(e *env, o *Options) { e.writeFile(filepath.Join(e.base, "var/lib/ecs"), "x", 0o644) },
			[]string{"cannot create " + "", "var/lib/ecs/ec2pr", "not a directory"}},
		{"relative DIR", func(e *env, o *Options) { o.Dir = "cni-plugins" }, []string{`--dir "cni-plugins" must be an absolute path`}},
		{"upstream is DIR", func(e *env, o *Options) { o.Upstream = o.Dir }, []string{"the front would run itself"}},
		{"settings with a typo", func(e *env, o *Options) {
			o.ConfigFile = filepath.Join(e.base, "f.json")
			e.writeFile(o.ConfigFile, `{"linkTimout":"5s"}`, 0o644)
		}, []string{`unknown field "linkTimout"`}},
		{"settings the plugin rejects", func(e *env, o *Options) {
			o.ConfigFile = filepath.Join(e.base, "f.json")
			e.writeFile(o.ConfigFile, `{"linkTimeout":"5 parsecs"}`, 0o644)
		}, []string{`linkTimeout "5 parsecs" is not a duration`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			o := e.opts()
			tc.setup(e, &o)
			out, err := e.install(o)
			if err == nil {
				t.Fatalf("install succeeded:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.name != "DIR unwritable (a file in the way)" && tc.name != "untrusted parent of DIR" {
				if _, err := os.Stat(e.dir); err == nil {
					t.Errorf("a refused install created %s", e.dir)
				}
			}
		})
	}
}

// agentFixture fabricates a running ECS agent in e.proc: pid 4242 with
// argv[0] /agent, its container root holding the plugins at UP.
func (e *env) agentFixture(up string, environ string) string {
	e.writeFile(filepath.Join(e.proc, "1/cmdline"), "/sbin/init\x00", 0o444)
	e.writeFile(filepath.Join(e.proc, "4242/cmdline"), "/agent\x00", 0o444)
	e.writeFile(filepath.Join(e.proc, "4242/environ"), environ, 0o600)
	root := filepath.Join(e.proc, "4242/root", up)
	for _, name := range append(ecsfront.KnownPlugins, "ecs-agentonly") {
		e.plugin(root, name, "echo '"+capsOK+"'")
	}
	return root
}

func TestInstallThroughAgentRoot(t *testing.T) {
	e := newEnv(t)
	up := "/amazon-ecs-cni-plugins-test-" + filepath.Base(e.base) // absent on this host
	root := e.agentFixture(up, "HOME=/\x00"+ecsfront.PluginsPathVar+"=/amazon-ecs-cni-plugins\x00")
	o := e.opts()
	o.Upstream = up
	out := e.mustInstall(o)
	if !strings.Contains(out, "seen through the running ECS agent's container (pid 4242) at "+root) {
		t.Errorf("output does not say it used the agent's root:\n%s", out)
	}
	if target, err := os.Readlink(filepath.Join(e.dir, "ecs-agentonly")); err != nil || target != up+"/ecs-agentonly" {
		t.Errorf("plugin seen only in the agent's image: %q %v", target, err)
	}
	if !strings.Contains(out, "WARNING: the running ECS agent's container (pid 4242) does not see "+e.dir) {
		t.Errorf("no warning that the agent cannot see DIR:\n%s", out)
	}
	os.MkdirAll(filepath.Join(e.proc, "4242/root", filepath.Dir(e.dir)), 0o755)
	os.Symlink(e.dir, filepath.Join(e.proc, "4242/root", e.dir)) // as ecs-init's bind mount would show it
	out = e.mustInstall(o)
	if !strings.Contains(out, "the running ECS agent's container (pid 4242) sees "+e.dir) {
		t.Errorf("agent sees DIR now:\n%s", out)
	}
	if !strings.Contains(out, "restart the ECS agent: systemctl restart ecs") {
		t.Errorf("agent does not use DIR yet: restart step expected:\n%s", out)
	}
	// Once the agent runs with the line, a re-run says no restart is needed.
	e.writeFile(filepath.Join(e.proc, "4242/environ"), ecsfront.PluginsPathVar+"="+e.dir+"\x00", 0o600)
	if out := e.mustInstall(o); !strings.Contains(out, "(pid 4242) already uses "+e.dir+": no restart needed") {
		t.Errorf("second run:\n%s", out)
	}
	// The agent's view is checked like a direct one.
	e.plugin(root, "vpc-eni", "exit 1")
	if _, err := e.install(o); err == nil || !strings.Contains(err.Error(), root+"/vpc-eni --capabilities") {
		t.Errorf("broken vpc-eni in the agent's image: %v", err)
	}
}

func TestFindAgents(t *testing.T) {
	e := newEnv(t)
	e.writeFile(filepath.Join(e.proc, "7/cmdline"), "/usr/bin/agent\x00", 0o444) // not the image's /agent
	e.writeFile(filepath.Join(e.proc, "8/cmdline"), "/agentx\x00--x\x00", 0o444) // prefix only
	e.writeFile(filepath.Join(e.proc, "self/cmdline"), "/agent\x00", 0o444)      // not a pid
	e.writeFile(filepath.Join(e.proc, "900/cmdline"), "/agent\x00-loglevel\x00", 0o444)
	os.MkdirAll(filepath.Join(e.proc, "901"), 0o755)
	os.Symlink("/agent", filepath.Join(e.proc, "901/exe")) // cmdline unreadable, exe tells
	got := FindAgents(e.proc)
	if len(got) != 2 || got[0].PID != 900 || got[1].PID != 901 || got[0].Root != filepath.Join(e.proc, "900/root") {
		t.Errorf("FindAgents = %+v", got)
	}
}

func TestInstallUpstreamNotVisible(t *testing.T) {
	e := newEnv(t)
	o := e.opts()
	o.Upstream = "/amazon-ecs-cni-plugins-absent-" + filepath.Base(e.base)
	out := e.mustInstall(o)
	if !strings.Contains(out, "not visible from here (no running ECS agent") || !strings.Contains(out, "writing the known set") ||
		!strings.Contains(out, "WARNING: "+e.dir+" is not below /var/lib/ecs") {
		t.Errorf("output:\n%s", out)
	}
	ents, _ := os.ReadDir(e.dir)
	if len(ents) != len(ecsfront.KnownPlugins)+1 {
		t.Errorf("want the known set and the settings file, got %d entries", len(ents))
	}
	// The default UP holding only the package's copy is not the agent's.
	pkgOnly := filepath.Join(e.base, "pkgonly")
	e.writeFile(filepath.Join(pkgOnly, "ec2-policy-routes"), "x", 0o755)
	if v := LocateUpstream(pkgOnly, e.proc, "/"); !v.Visible() {
		t.Errorf("a non-default UP is taken as given: %+v", v)
	}
}

func TestUninstall(t *testing.T) {
	e := newEnv(t)
	o := e.opts()
	o.Write = true
	e.writeFile(e.ecsConfig, "ECS_CLUSTER=prod\n", 0o640)
	e.mustInstall(o)
	uninstall := func(o Options) (string, error) {
		var out bytes.Buffer
		o.Out = &out
		err := Uninstall(context.Background(), o)
		return out.String(), err
	}
	out, err := uninstall(o)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Lstat(e.dir); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", e.dir, err)
	}
	got, _ := os.ReadFile(e.ecsConfig)
	if fi, _ := stat(t, e.ecsConfig); string(got) != "ECS_CLUSTER=prod\n" || fi.Mode().Perm() != 0o640 {
		t.Errorf("ecs.config after uninstall --write: %q %v", got, fi.Mode().Perm())
	}
	if !strings.Contains(out, "removed "+e.dir) || !strings.Contains(out, "removed ECS_CNI_PLUGINS_PATH="+e.dir) {
		t.Errorf("output:\n%s", out)
	}
	// Again: nothing to do, success.
	if out, err := uninstall(o); err != nil || !strings.Contains(out, "nothing installed at "+e.dir) {
		t.Errorf("second uninstall: %v\n%s", err, out)
	}
	// Without --write: the line to drop is named, the file untouched.
	o.Write = false
	e.mustInstall(o)
	e.writeFile(e.ecsConfig, "ECS_CNI_PLUGINS_PATH="+e.dir+"\n", 0o644)
	out, _ = uninstall(o)
	if !strings.Contains(out, "Remove this line from "+e.ecsConfig) || !strings.Contains(out, "\nECS_CNI_PLUGINS_PATH="+e.dir+"\n") {
		t.Errorf("output:\n%s", out)
	}
	// A line naming another directory is not ours.
	o.Write = true
	e.writeFile(e.ecsConfig, "ECS_CNI_PLUGINS_PATH=/other\n", 0o644)
	out, _ = uninstall(o)
	if got, _ := os.ReadFile(e.ecsConfig); string(got) != "ECS_CNI_PLUGINS_PATH=/other\n" || !strings.Contains(out, "left alone") {
		t.Errorf("foreign line: %q\n%s", got, out)
	}
	// A directory that is not an install is refused, untouched.
	os.MkdirAll(filepath.Join(e.dir), 0o755)
	e.writeFile(filepath.Join(e.dir, "vpc-eni"), "x", 0o755)
	if _, err := uninstall(o); err == nil || !strings.Contains(err.Error(), "is not an ec2-policy-routes ECS front (no "+ecsfront.SettingsFile) {
		t.Errorf("non-install: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "vpc-eni")); err != nil {
		t.Errorf("refused uninstall removed files: %v", err)
	}
}

func TestRefresh(t *testing.T) {
	e := newEnv(t)
	e.mustInstall(e.opts())
	e.writeFile(e.ecsConfig, "ECS_CNI_PLUGINS_PATH="+e.dir+"\n", 0o644)
	links := snapshot(t, e.dir)
	e.writeFile(e.self, "front binary v2", 0o755)
	var out bytes.Buffer
	o := Options{ECSConfig: e.ecsConfig, Self: e.self, Out: &out}
	if err := Refresh(context.Background(), o); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, name := range ecsfront.FrontedPlugins {
		if b, _ := os.ReadFile(filepath.Join(e.dir, name)); string(b) != "front binary v2" {
			t.Errorf("%s not refreshed: %q", name, b)
		}
	}
	for _, l := range strings.Split(links, "\n") {
		if strings.HasPrefix(l, "ecs-") && !strings.Contains(snapshot(t, e.dir), l) {
			t.Errorf("refresh touched %s", l)
		}
	}
	out.Reset()
	if err := Refresh(context.Background(), o); err != nil || !strings.Contains(out.String(), "fronts already match") {
		t.Errorf("second refresh: %v\n%s", err, out.String())
	}
	// A directory without the settings file is never written.
	other := filepath.Join(e.base, "not-an-install")
	os.Mkdir(other, 0o755)
	o.Dir = other
	if err := Refresh(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(other); len(ents) != 0 {
		t.Errorf("refresh wrote into a non-install: %v", ents)
	}
}
