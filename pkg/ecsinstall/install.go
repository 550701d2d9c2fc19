// Package ecsinstall lays out, refreshes and removes the ECS front: a
// directory for the agent's ECS_CNI_PLUGINS_PATH holding this binary as
// vpc-eni and vpc-branch-eni (ecsfront), symlinks to the agent's other
// plugins and the front's settings file, plus the ecs.config line naming it.
package ecsinstall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

// RestartStep is how an operator makes the agent read ecs.config again.
const RestartStep = "systemctl restart ecs"

// Options configures Install, Uninstall and Refresh.
type Options struct {
	Dir        string // install directory (default ecsfront.DefaultInstallDir)
	Upstream   string // UP; "" takes the settings file's or the default
	ConfigFile string // the front's settings as JSON ("" = defaults)
	Write      bool   // edit ECSConfig too
	ECSConfig  string // default ecsfront.ECSConfig
	Proc       string // the host's /proc (tests: a fixture)
	Self       string // the binary installed as the fronts (default os.Executable())
	// ProbeTimeout bounds each upstream --capabilities probe.
	ProbeTimeout time.Duration
	Out          io.Writer
	Quiet        bool // refresh: report only what it wrote
}

func (o *Options) defaults() error {
	if o.Dir == "" {
		o.Dir = ecsfront.DefaultInstallDir
	}
	if !filepath.IsAbs(o.Dir) {
		return fmt.Errorf("--dir %q must be an absolute path (the agent resolves it inside its container)", o.Dir)
	}
	o.Dir = filepath.Clean(o.Dir)
	if o.ECSConfig == "" {
		o.ECSConfig = ecsfront.ECSConfig
	}
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = 5 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find this binary to install it: %w", err)
		}
		o.Self = self
	}
	return nil
}

func (o *Options) say(format string, a ...any) { fmt.Fprintf(o.Out, format+"\n", a...) }

// settings reads --config (if any), applies --upstream over it and checks
// the plugin fields with the plugin's own parser: the front must never
// meet a settings file it would reject.
func (o *Options) settings() (*ecsfront.Settings, error) {
	data, from := []byte("{}"), "defaults"
	switch existing := filepath.Join(o.Dir, ecsfront.SettingsFile); {
	case o.ConfigFile != "":
		b, err := os.ReadFile(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		data, from = b, "--config "+o.ConfigFile
	case IsInstall(o.Dir):
		// A re-run (after an agent upgrade) keeps what the operator chose.
		b, err := os.ReadFile(existing)
		if err != nil {
			return nil, err
		}
		data, from = b, "the existing "+existing+" (no --config)"
	}
	o.say("ecs install: front settings from %s", from)
	s, err := ecsfront.ParseSettings(data)
	if err != nil {
		return nil, fmt.Errorf("settings from %s: %w", from, err)
	}
	if o.Upstream != "" {
		if !filepath.IsAbs(o.Upstream) {
			return nil, fmt.Errorf("--upstream %q must be an absolute path (as the agent's container sees it)", o.Upstream)
		}
		s.Upstream = filepath.Clean(o.Upstream)
	}
	if filepath.Clean(s.Upstream) == o.Dir {
		return nil, fmt.Errorf("upstream %s is the install directory itself: the front would run itself", s.Upstream)
	}
	b, _ := json.Marshal(s)
	var conf map[string]any
	_ = json.Unmarshal(b, &conf)
	conf["cniVersion"], conf["name"], conf["type"] = "0.3.0", "ecs-front-settings", "vpc-eni"
	b, _ = json.Marshal(conf)
	if _, err := config.Parse(b); err != nil {
		return nil, fmt.Errorf("front settings from %s: %w", from, err)
	}
	return s, nil
}

// Install lays out the front in o.Dir; see the package comment and README.
func Install(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	s, err := o.settings()
	if err != nil {
		return err
	}
	self, err := os.ReadFile(o.Self)
	if err != nil {
		return fmt.Errorf("cannot read this binary %s: %w", o.Self, err)
	}
	if uid := os.Geteuid(); uid != 0 {
		o.say("ecs install: warning: not root: files will be owned by uid %d, and the front refuses files not owned by root", uid)
	}
	view := LocateUpstream(s.Upstream, o.Proc, "/")
	names, err := o.verifyUpstream(ctx, s.Upstream, view)
	if err != nil {
		return err
	}
	created, err := ensureDir(o.Dir)
	for _, d := range created {
		o.say("ecs install: created directory %s (0755)", d)
	}
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", o.Dir, err)
	}
	changes, err := o.layout(s, self, names)
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", o.Dir, err)
	}
	o.checkAgentSees()
	if changes += len(created); changes == 0 {
		o.say("ecs install: %s is already installed and up to date: nothing changed", o.Dir)
	} else {
		o.say("ecs install: %s: %d changes", o.Dir, changes)
	}
	return o.configureAgent(view)
}

// verifyUpstream says where UP is seen and, where it is, checks that it is
// the agent's plugin directory; it returns the plugin names to link.
func (o *Options) verifyUpstream(ctx context.Context, up string, v View) ([]string, error) {
	o.say("ecs install: upstream %s %s", up, v.How)
	if !v.Visible() {
		return ecsfront.KnownPlugins, nil
	}
	found, err := v.Plugins()
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", v.Path, err)
	}
	for _, name := range ecsfront.FrontedPlugins {
		if name != "vpc-eni" && !contains(found, name) {
			continue // vpc-branch-eni is optional; vpc-eni is not
		}
		if err := v.CheckPlugin(ctx, name, o.ProbeTimeout); err != nil {
			if v.Path != up {
				return nil, fmt.Errorf("refusing: upstream %s (seen at %s): %w", up, v.Path, err)
			}
			return nil, fmt.Errorf("refusing: upstream %s: %w", up, err)
		}
		o.say("ecs install: %s/%s answers --capabilities with awsvpc-network-mode", v.Path, name)
	}
	o.say("ecs install: %d plugins in upstream: %s", len(found), strings.Join(found, " "))
	return union(ecsfront.KnownPlugins, found), nil
}

// layout writes the fronts, the symlinks and the settings file; it
// returns how many entries it changed.
func (o *Options) layout(s *ecsfront.Settings, self []byte, names []string) (int, error) {
	changes := 0
	for _, name := range ecsfront.FrontedPlugins {
		changed, err := writeFront(filepath.Join(o.Dir, name), self)
		if err != nil {
			return changes, err
		}
		changes += o.report(changed, "%s/%s: copy of %s (0755)", o.Dir, name, o.Self)
	}
	for _, name := range names {
		if ecsfront.IsFronted(name) || name == ecsfront.SettingsFile {
			continue
		}
		target := filepath.Join(s.Upstream, name)
		changed, err := writeLink(filepath.Join(o.Dir, name), target)
		if err != nil {
			return changes, err
		}
		changes += o.report(changed, "%s/%s -> %s", o.Dir, name, target)
	}
	data, err := s.Marshal()
	if err != nil {
		return changes, err
	}
	path := filepath.Join(o.Dir, ecsfront.SettingsFile)
	changed := !sameFile(path, data, 0o644)
	if changed {
		if err := atomicWrite(path, data, 0o644, -1, -1); err != nil {
			return changes, err
		}
	}
	changes += o.report(changed, "%s: front settings (0644), upstream %s", path, s.Upstream)
	return changes, nil
}

func (o *Options) report(changed bool, format string, a ...any) int {
	if changed {
		o.say("ecs install: wrote "+format, a...)
		return 1
	}
	o.say("ecs install: unchanged "+format, a...)
	return 0
}

// writeFront installs data as an executable front at path unless it is
// already there, identical, 0755 and trusted.
func writeFront(path string, data []byte) (bool, error) {
	if sameFile(path, data, 0o755) {
		return false, nil
	}
	return true, atomicWrite(path, data, 0o755, -1, -1)
}

// writeLink points path at target unless it already does.
func writeLink(path, target string) (bool, error) {
	if cur, err := os.Readlink(path); err == nil && cur == target {
		return false, nil
	}
	return true, atomicSymlink(target, path)
}

// AgentMounts are the host directories ecs-init bind-mounts into the
// agent's container at the same path (ecs-init/docker/docker.go): an
// ECS_CNI_PLUGINS_PATH elsewhere does not exist for the agent.
var AgentMounts = []string{"/var/lib/ecs", "/etc/ecs", "/var/cache/ecs"}

// checkAgentSees warns when the agent's container will not see o.Dir:
// checked through a running agent's root, else against AgentMounts.
func (o *Options) checkAgentSees() {
	agents := FindAgents(o.Proc)
	for _, a := range agents {
		if IsInstall(filepath.Join(a.Root, o.Dir)) {
			o.say("ecs install: the running ECS agent's container (pid %d) sees %s", a.PID, o.Dir)
			return
		}
	}
	if len(agents) > 0 {
		o.say("ecs install: WARNING: the running ECS agent's container (pid %d) does not see %s: with it as %s the agent cannot start; use a --dir below %s",
			agents[0].PID, o.Dir, ecsfront.PluginsPathVar, strings.Join(AgentMounts, ", "))
		return
	}
	if !UnderAgentMounts(o.Dir) {
		o.say("ecs install: WARNING: %s is not below %s, which ecs-init mounts into the agent's container at the same path: the agent will not find it",
			o.Dir, strings.Join(AgentMounts, ", "))
	}
}

// UnderAgentMounts reports whether dir is inside one of AgentMounts.
func UnderAgentMounts(dir string) bool {
	for _, m := range AgentMounts {
		if dir == m || strings.HasPrefix(dir, m+"/") {
			return true
		}
	}
	return false
}

// configureAgent prints (or with --write sets) the ecs.config line and the
// restart step.
func (o *Options) configureAgent(v View) error {
	line := ecsfront.PluginsPathVar + "=" + o.Dir
	changed := false
	if o.Write {
		var err error
		changed, err = configChange(o.ECSConfig, func(b []byte) []byte { return setConfigLine(b, ecsfront.PluginsPathVar, o.Dir) })
		if err != nil {
			return fmt.Errorf("cannot write %s: %w", o.ECSConfig, err)
		}
		if changed {
			o.say("ecs install: %s: set %s (other lines kept)", o.ECSConfig, line)
		} else {
			o.say("ecs install: %s already has %s", o.ECSConfig, line)
		}
	} else {
		o.say("Add this line to %s (or run again with --write):", o.ECSConfig)
	}
	fmt.Fprintln(o.Out, line)
	if a := o.agentUsing(o.Dir); a != nil && !changed {
		o.say("The running ECS agent (pid %d) already uses %s: no restart needed.", a.PID, o.Dir)
		return nil
	}
	o.say("Then restart the ECS agent: %s", RestartStep)
	return nil
}

// agentUsing returns the running agent whose environment names dir.
func (o *Options) agentUsing(dir string) *Agent {
	for _, a := range FindAgents(o.Proc) {
		if v, ok := AgentEnv(a, ecsfront.PluginsPathVar); ok && filepath.Clean(v) == dir {
			return &a
		}
	}
	return nil
}

// IsInstall reports whether dir holds a front's settings file.
func IsInstall(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, ecsfront.SettingsFile))
	return err == nil && fi.Mode().IsRegular()
}

// Uninstall removes the front in o.Dir and the ecs.config line (--write).
func Uninstall(_ context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	fi, err := os.Lstat(o.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		o.say("ecs uninstall: nothing installed at %s", o.Dir)
	case err != nil:
		return err
	case !fi.IsDir() || !IsInstall(o.Dir):
		return fmt.Errorf("refusing: %s is not an ec2-policy-routes ECS front (no %s in it); not removing it", o.Dir, ecsfront.SettingsFile)
	default:
		if err := os.RemoveAll(o.Dir); err != nil {
			return fmt.Errorf("cannot remove %s: %w", o.Dir, err)
		}
		o.say("ecs uninstall: removed %s", o.Dir)
	}
	return o.unconfigureAgent()
}

func (o *Options) unconfigureAgent() error {
	line := ecsfront.PluginsPathVar + "=" + o.Dir
	var others []string
	if o.Write {
		changed, err := configChange(o.ECSConfig, func(b []byte) []byte {
			out, _, oth := dropConfigLine(b, ecsfront.PluginsPathVar, o.Dir)
			others = oth
			return out
		})
		if err != nil {
			return fmt.Errorf("cannot write %s: %w", o.ECSConfig, err)
		}
		if changed {
			o.say("ecs uninstall: %s: removed %s (other lines kept)", o.ECSConfig, line)
		} else {
			o.say("ecs uninstall: %s has no %s line", o.ECSConfig, line)
		}
	} else if v, ok, _ := ReadConfigValue(o.ECSConfig, ecsfront.PluginsPathVar); ok && filepath.Clean(v) == o.Dir {
		o.say("Remove this line from %s (or run again with --write):\n%s", o.ECSConfig, line)
	}
	for _, l := range others {
		o.say("ecs uninstall: %s still sets %s (not this install): left alone", o.ECSConfig, l)
	}
	if a := o.agentUsing(o.Dir); a != nil {
		o.say("The running ECS agent (pid %d) still uses %s: restart it now: %s", a.PID, o.Dir, RestartStep)
	} else {
		o.say("Then restart the ECS agent if it was using %s: %s", o.Dir, RestartStep)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// union is a then the names of b not in a, in order.
func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, n := range b {
		if !contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
