package ecsinstall

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/udevoverride"
)

// TestOwned: the ownership decision, pure.
func TestOwned(t *testing.T) {
	m := &Manifest{Entries: []Made{
		{Name: "vpc-eni", Kind: KindFront}, {Name: "ecs-bridge", Kind: KindLink, Target: "/up/ecs-bridge"},
		{Name: "ecs-ipam", Kind: KindLink, Target: "/up/ecs-ipam"}, {Name: ecsfront.SettingsFile, Kind: KindSettings},
	}}
	front := func(n string, ours bool) Found { return Found{Name: n, Kind: KindFront, Ours: ours} }
	link := func(n, target string) Found { return Found{Name: n, Kind: KindLink, Target: target} }
	for _, tc := range []struct {
		name          string
		found         []Found
		m             *Manifest
		ours, foreign []string
	}{
		{"recorded, still as made", []Found{front("vpc-eni", false), link("ecs-bridge", "/up/ecs-bridge"), front(ecsfront.SettingsFile, false)}, m,
			[]string{"vpc-eni", "ecs-bridge", ecsfront.SettingsFile}, nil},
		{"recorded link retargeted: still a link of ours", []Found{link("ecs-ipam", "/elsewhere/ecs-ipam")}, m, []string{"ecs-ipam"}, nil},
		{"recorded link now an operator's file", []Found{front("ecs-bridge", false)}, m, nil, []string{"ecs-bridge"}},
		{"recorded front now a symlink", []Found{link("vpc-eni", "/x")}, m, nil, []string{"vpc-eni"}},
		{"not recorded", []Found{front("ecs.config", false), link("ecs-newplugin", "/up/ecs-newplugin"), {Name: "sub", Kind: "dir"}}, m,
			nil, []string{"ecs.config", "ecs-newplugin", "sub"}},
		{"settings that are a FIFO", []Found{{Name: ecsfront.SettingsFile, Kind: "other"}}, m, nil, []string{ecsfront.SettingsFile}},
		{"legacy: builds of ours, links into upstream, settings", []Found{front("vpc-eni", true), front("vpc-branch-eni", false),
			link("ecs-bridge", "/up/ecs-bridge"), link("mine", "/opt/mine"), front(ecsfront.SettingsFile, false), front("ecs.config", true)},
			nil, []string{"vpc-eni", "ecs-bridge", ecsfront.SettingsFile}, []string{"vpc-branch-eni", "mine", "ecs.config"}},
		{"legacy: /up is not /upstream", []Found{link("x", "/upstream/x"), link("y", "/up")}, nil, nil, []string{"x", "y"}},
		{"temporary files of ours; other dot entries hidden", []Found{front(".vpc-eni.tmp-123", false), link(".x", "/elsewhere")}, m,
			[]string{".vpc-eni.tmp-123"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := Owned(tc.found, tc.m, "/up")
			var ours []string
			for _, o := range j.Ours {
				ours = append(ours, o.Name)
			}
			var foreign []string
			for _, f := range j.Foreign {
				foreign = append(foreign, f.Name)
			}
			if !reflect.DeepEqual(ours, tc.ours) || !reflect.DeepEqual(foreign, tc.foreign) {
				t.Errorf("ours %v foreign %v; want %v %v", ours, foreign, tc.ours, tc.foreign)
			}
		})
	}
}

func TestReplaceAndRestoreConfigLine(t *testing.T) {
	const k = "ECS_CNI_PLUGINS_PATH"
	ours := func(v string) bool { return filepath.Clean(v) == "/d" }
	for _, tc := range []struct {
		name, in, set string
		replaced      []string
		after         string // ecs.config after uninstall --write
	}{
		{"none", "A=1\n", "A=1\n" + k + "=/d\n", nil, "A=1\n"},
		{"ours already", k + "=/d/\nA=1\n", k + "=/d\nA=1\n", nil, "A=1\n"},
		{"one other", "A=1\n" + k + "=/old\nB=2\n", "A=1\n" + k + "=/d\nB=2\n", []string{k + "=/old"}, "A=1\n" + k + "=/old\nB=2\n"},
		{"several others", k + "=/x\nA=1\n" + k + "=/y\n", k + "=/d\nA=1\n", []string{k + "=/x", k + "=/y"}, k + "=/x\n" + k + "=/y\nA=1\n"},
		{"others and ours", k + "=/x\n" + k + "=/d\n", k + "=/d\n", []string{k + "=/x"}, k + "=/x\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, replaced := replaceConfigLine([]byte(tc.in), k, "/d", ours)
			if string(out) != tc.set || !reflect.DeepEqual(replaced, tc.replaced) {
				t.Fatalf("set: %q %q; want %q %q", out, replaced, tc.set, tc.replaced)
			}
			back, ok := restoreConfigLines(out, k, ours, replaced)
			if !ok {
				back, _, _ = dropConfigLineFunc(out, k, ours)
			}
			if string(back) != tc.after {
				t.Errorf("restore: %q, want %q", back, tc.after)
			}
		})
	}
	// The operator changed the line since: nothing restored.
	if out, ok := restoreConfigLines([]byte(k+"=/mine\n"), k, ours, []string{k + "=/old"}); ok || string(out) != k+"=/mine\n" {
		t.Errorf("restored over the operator's line: %q", out)
	}
}

func TestResolveDir(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "opt/x")
	os.MkdirAll(real, 0o755)
	os.MkdirAll(filepath.Join(base, "lib"), 0o755)
	os.Symlink(real, filepath.Join(base, "lib/x"))
	os.Symlink(filepath.Join(base, "nowhere/y"), filepath.Join(base, "lib/dangling"))
	for in, want := range map[string]string{
		filepath.Join(base, "lib/x"):                real,
		filepath.Join(base, "lib/x/sub/dir"):        filepath.Join(real, "sub/dir"),
		filepath.Join(base, "lib/dangling/z"):       filepath.Join(base, "nowhere/y/z"),
		filepath.Join(base, "lib/../opt/x/./"):      real,
		filepath.Join(base, "missing/entirely/dir"): filepath.Join(base, "missing/entirely/dir"),
	} {
		if got, err := ResolveDir(in); err != nil || got != want {
			t.Errorf("ResolveDir(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if !sameDir(filepath.Join(base, "lib/x"), real) || sameDir(filepath.Join(base, "lib"), real) || sameDir("rel", real) {
		t.Error("sameDir")
	}
}

func (e *env) uninstall(o Options) (string, error) {
	var out bytes.Buffer
	o.Out = &out
	err := Uninstall(context.Background(), o)
	return out.String(), err
}

// TestPopulatedDir (issue 22.1): a DIR with entries not ours is refused,
// naming them; --force lays out next to them; uninstall removes only ours
// and leaves DIR with them.
func TestPopulatedDir(t *testing.T) {
	e := newEnv(t)
	e.dir = filepath.Join(e.base, "etc/ecs")
	e.writeFile(filepath.Join(e.dir, "ecs.config"), "ECS_CLUSTER=prod\n", 0o644)
	e.writeFile(filepath.Join(e.dir, "ecs-bridge"), "my own bridge", 0o755)
	o := e.opts()
	if _, err := e.install(o); err == nil || !strings.Contains(err.Error(), "does not own: ecs-bridge ecs.config") {
		t.Fatalf("populated DIR: %v", err)
	}
	if ents, _ := os.ReadDir(e.dir); len(ents) != 2 {
		t.Fatalf("a refused install wrote into DIR: %v", ents)
	}
	o.Force = true
	out := e.mustInstall(o)
	if !strings.Contains(out, "left "+e.dir+"/ecs-bridge: not ours") {
		t.Errorf("--force does not say what it left:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(e.dir, "ecs-bridge")); string(b) != "my own bridge" {
		t.Errorf("operator's ecs-bridge replaced: %q", b)
	}
	m, _, err := ReadManifest(e.dir)
	if err != nil || m == nil {
		t.Fatalf("manifest: %v", err)
	}
	for _, en := range m.Entries {
		if en.Name == "ecs-bridge" || en.Name == "ecs.config" {
			t.Errorf("manifest records a foreign entry: %+v", en)
		}
	}
	o.Force = false
	out, err = e.uninstall(o)
	if err != nil || !strings.Contains(out, "left in "+e.dir+", not ours: ecs-bridge ecs.config") || !strings.Contains(out, "left "+e.dir+" (not empty)") {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	ents, _ := os.ReadDir(e.dir)
	if len(ents) != 2 {
		t.Errorf("uninstall left %v, want ecs-bridge and ecs.config", ents)
	}
	// A foreign file where a front goes: refused even with --force.
	e.writeFile(filepath.Join(e.dir, "vpc-eni"), "mine", 0o755)
	o.Force = true
	if _, err := e.install(o); err == nil || !strings.Contains(err.Error(), "holds vpc-eni, which is not ours") {
		t.Errorf("foreign vpc-eni: %v", err)
	}
}

// TestUninstallLegacy: an install from before the record uninstalls by
// its layout: builds of ours, links into upstream, the settings.
func TestUninstallLegacy(t *testing.T) {
	e := newEnv(t)
	e.mustInstall(e.opts())
	sp := filepath.Join(e.dir, ecsfront.SettingsFile)
	b, _ := os.ReadFile(sp)
	var raw map[string]any
	json.Unmarshal(b, &raw)
	delete(raw, "install")
	b, _ = json.Marshal(raw)
	e.writeFile(sp, string(b), 0o644)
	e.writeFile(filepath.Join(e.dir, "notes.txt"), "operator's", 0o644)
	out, err := e.uninstall(e.opts())
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ents, _ := os.ReadDir(e.dir)
	if len(ents) != 1 || ents[0].Name() != "notes.txt" {
		t.Errorf("legacy uninstall left %v, want notes.txt only\n%s", ents, out)
	}
}

// TestInstallReplacedConfigRestored (issue 22.2): another directory in
// ecs.config becomes the upstream, is reported, recorded and restored.
func TestInstallReplacedConfigRestored(t *testing.T) {
	e := newEnv(t)
	orig := "ECS_CLUSTER=prod\nECS_CNI_PLUGINS_PATH=" + e.up + "\n"
	e.writeFile(e.ecsConfig, orig, 0o644)
	o := e.opts()
	o.Upstream, o.Write = "", true
	out := e.mustInstall(o)
	if !strings.Contains(out, "upstream "+e.up+", taken from "+e.ecsConfig) || !strings.Contains(out, "replaced ECS_CNI_PLUGINS_PATH="+e.up) {
		t.Errorf("install output:\n%s", out)
	}
	if m, up, _ := ReadManifest(e.dir); up != e.up || m.ECSConfig == nil || len(m.ECSConfig.Replaced) != 1 {
		t.Errorf("settings upstream %s, record %+v", up, m)
	}
	out = e.mustInstall(o) // re-run: the record is kept
	if m, _, _ := ReadManifest(e.dir); m.ECSConfig == nil || len(m.ECSConfig.Replaced) != 1 || !strings.Contains(out, "nothing changed") {
		t.Errorf("re-run lost the record: %+v\n%s", m, out)
	}
	// A second install while ecs.config names the first front: said.
	o2 := o
	o2.Dir = filepath.Join(e.base, "var/lib/ecs/second")
	out = e.mustInstall(o2)
	if !strings.Contains(out, e.dir+" is another ec2-policy-routes front") {
		t.Errorf("second DIR:\n%s", out)
	}
	if _, err := e.uninstall(o2); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(e.ecsConfig); string(got) != "ECS_CLUSTER=prod\nECS_CNI_PLUGINS_PATH="+e.dir+"\n" {
		t.Errorf("after the second's uninstall: %q", got)
	}
	if out, err := e.uninstall(o); err != nil || !strings.Contains(out, "put back what install replaced") {
		t.Fatalf("%v\n%s", err, out)
	}
	if got, _ := os.ReadFile(e.ecsConfig); string(got) != orig {
		t.Errorf("ecs.config after uninstall --write: %q, want %q", got, orig)
	}
}

// TestInstallSymlinkedDir (issue 22.3): DIR is judged where it leads.
func TestInstallSymlinkedDir(t *testing.T) {
	e := newEnv(t)
	real := filepath.Join(e.base, "opt/x")
	os.MkdirAll(filepath.Join(e.base, "var/lib/ecs"), 0o755)
	os.Symlink(real, filepath.Join(e.base, "var/lib/ecs/x"))
	o := e.opts()
	o.Dir, o.Write = filepath.Join(e.base, "var/lib/ecs/x"), true
	out := e.mustInstall(o)
	if !strings.Contains(out, "resolves to "+real) || !strings.Contains(out, "\nECS_CNI_PLUGINS_PATH="+real+"\n") {
		t.Errorf("install:\n%s", out)
	}
	if !IsInstall(real) {
		t.Error("not installed at the link's target")
	}
	// ecs.config naming the link is this install's line for uninstall.
	e.writeFile(e.ecsConfig, "ECS_CNI_PLUGINS_PATH="+o.Dir+"\n", 0o644)
	if out, err := e.uninstall(o); err != nil || !strings.Contains(out, "removed "+real) {
		t.Fatalf("%v\n%s", err, out)
	}
	if got, _ := os.ReadFile(e.ecsConfig); len(got) != 0 {
		t.Errorf("ecs.config: %q", got)
	}
}

// TestInstallUdevOverride (issue 19.2) in a fixture root.
func TestInstallUdevOverride(t *testing.T) {
	e := newEnv(t)
	root := filepath.Join(e.base, "host")
	o := e.opts()
	o.UdevRoot = root
	if out := e.mustInstall(o); !strings.Contains(out, "not needed: ec2-net-utils' rule") {
		t.Errorf("no vendor rule:\n%s", out)
	}
	e.writeFile(filepath.Join(root, udevoverride.VendorRules[0]), "upstream rule", 0o644)
	if out := e.mustInstall(o); !strings.Contains(out, "wrote "+filepath.Join(root, udevoverride.Path)) {
		t.Errorf("placing:\n%s", out)
	}
	if m, _, _ := ReadManifest(e.dir); m == nil || !m.UdevOverride {
		t.Errorf("not recorded: %+v", m)
	}
	if out := e.mustInstall(o); !strings.Contains(out, "already in place") || !strings.Contains(out, "nothing changed") {
		t.Errorf("re-run:\n%s", out)
	}
	if m, _, _ := ReadManifest(e.dir); m == nil || !m.UdevOverride {
		t.Errorf("re-run dropped the record: %+v", m)
	}
	// Another front of ours keeps it on uninstall; the last one removes it.
	o2 := o
	o2.Dir = filepath.Join(e.base, "var/lib/ecs/second")
	e.mustInstall(o2)
	e.writeFile(e.ecsConfig, "ECS_CNI_PLUGINS_PATH="+o2.Dir+"\n", 0o644)
	if out, _ := e.uninstall(o); !strings.Contains(out, "other fronts of ours remain") {
		t.Errorf("uninstall with another front:\n%s", out)
	}
	if out, _ := e.uninstall(o2); !strings.Contains(out, "did not place it") {
		t.Errorf("uninstall of a front that did not place it:\n%s", out)
	}
	if st, _ := udevoverride.Inspect(root); st != udevoverride.Ours {
		t.Fatalf("override %v after uninstalls that did not own it", st)
	}
	os.Remove(filepath.Join(root, udevoverride.Path))
	os.Remove(e.ecsConfig)
	e.mustInstall(o)
	if out, _ := e.uninstall(o); !strings.Contains(out, "removed "+filepath.Join(root, udevoverride.Path)) {
		t.Errorf("last uninstall:\n%s", out)
	}
	// A foreign file is left, and install still succeeds.
	e.writeFile(filepath.Join(root, udevoverride.Path), "", 0o644)
	if out := e.mustInstall(o); !strings.Contains(out, "is not ours: left as it is") {
		t.Errorf("foreign override:\n%s", out)
	}
	if out, _ := e.uninstall(o); strings.Contains(out, "removed "+filepath.Join(root, udevoverride.Path)) {
		t.Errorf("removed a foreign override:\n%s", out)
	}
}

// TestInstallDefaultSettingsIMDSOff (issue 19.3).
func TestInstallDefaultSettingsIMDSOff(t *testing.T) {
	e := newEnv(t)
	e.mustInstall(e.opts())
	b, _ := os.ReadFile(filepath.Join(e.dir, ecsfront.SettingsFile))
	s, err := ecsfront.ParseSettings(b)
	if err != nil || s.IMDS == nil || s.IMDS.Enabled == nil || *s.IMDS.Enabled {
		t.Errorf("default settings: %s %v", b, err)
	}
}

// TestInstallFIFOs (issue 22.5): a FIFO as ecs.config or settings file
// fails fast instead of hanging.
func TestInstallFIFOs(t *testing.T) {
	e := newEnv(t)
	os.MkdirAll(filepath.Dir(e.ecsConfig), 0o755)
	if err := mkfifo(e.ecsConfig); err != nil {
		t.Skip(err)
	}
	o := e.opts()
	o.Write = true
	if _, err := e.install(o); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ecs.config FIFO: %v", err)
	}
	os.Remove(e.ecsConfig)
	e.mustInstall(e.opts())
	sp := filepath.Join(e.dir, ecsfront.SettingsFile)
	os.Remove(sp)
	mkfifo(sp)
	if _, err := e.install(e.opts()); err == nil {
		t.Error("settings FIFO accepted")
	}
}

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o644) }

// TestInstallSymlinkedDirOutOfMounts (issue 22.3): a link below the
// agent's mount that leads out of it is judged where it leads (warned);
// a mount that is itself a link keeps the mount's name.
func TestInstallSymlinkedDirOutOfMounts(t *testing.T) {
	e := newEnv(t)
	mount := filepath.Join(e.base, "var/lib/ecs")
	saved := AgentMounts
	AgentMounts = []string{mount}
	t.Cleanup(func() { AgentMounts = saved })
	os.MkdirAll(mount, 0o755)
	os.MkdirAll(filepath.Join(e.base, "opt/x"), 0o755)
	os.Symlink(filepath.Join(e.base, "opt/x"), filepath.Join(mount, "x"))
	o := e.opts()
	o.Dir = filepath.Join(mount, "x")
	out := e.mustInstall(o)
	if !strings.Contains(out, "WARNING: "+filepath.Join(e.base, "opt/x")+" is not below "+mount) {
		t.Errorf("a link out of the mount is not warned about:\n%s", out)
	}
	o.Dir = filepath.Join(mount, "y")
	if out := e.mustInstall(o); strings.Contains(out, "WARNING") {
		t.Errorf("inside the mount:\n%s", out)
	}
	// The mount itself a link (/var/lib/ecs -> /data/ecs): the agent's
	// name for the directory is below the mount.
	data := filepath.Join(e.base, "data/ecs")
	os.MkdirAll(data, 0o755)
	AgentMounts = []string{filepath.Join(e.base, "varlink")}
	os.Symlink(data, AgentMounts[0])
	if got, ok := agentPath(filepath.Join(data, "z")); !ok || got != filepath.Join(AgentMounts[0], "z") {
		t.Errorf("agentPath = %s %v", got, ok)
	}
}
