// Package ecsinstall lays out, refreshes and removes the ECS front: a
// directory for the agent's ECS_CNI_PLUGINS_PATH holding this binary as
// vpc-eni and vpc-branch-eni (ecsfront), symlinks to the agent's other
// plugins and the front's settings file, plus the ecs.config line naming it.
package ecsinstall

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/atomicfile"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/boundedread"
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
	// Force lets install lay out next to entries of DIR it does not own
	// (they are left as they are and not recorded as ours).
	Force bool
	verb  string // for messages
	// UdevRoot is the host root below which install places (and uninstall
	// removes) the udev override; "" leaves the override alone (the CLI
	// passes "/" unless --no-udev-override).
	UdevRoot string
}

func (o *Options) defaults(verb string) error {
	o.verb = verb
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Dir == "" {
		o.Dir = ecsfront.DefaultInstallDir
	}
	if !filepath.IsAbs(o.Dir) {
		return fmt.Errorf("--dir %q must be an absolute path (the agent resolves it inside its container)", o.Dir)
	}
	dir, err := ResolveDir(o.Dir)
	if err != nil {
		return fmt.Errorf("--dir %s: %w", o.Dir, err)
	}
	if dir != filepath.Clean(o.Dir) {
		o.say("ecs %s: %s resolves to %s: working there", o.verb, o.Dir, dir)
	}
	o.Dir, _ = agentPath(dir) // the same directory, named as the agent's container names it
	if o.ECSConfig == "" {
		o.ECSConfig = ecsfront.ECSConfig
	}
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = 5 * time.Second
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

// maxSettingsSize bounds a read of a settings file (a few hundred bytes).
const maxSettingsSize = 1 << 20

// settingsSource returns the settings JSON install starts from: --config,
// else an existing install's (a re-run after an agent upgrade keeps what
// the operator chose), else the defaults.
func (o *Options) settingsSource() (data []byte, from string, err error) {
	existing := filepath.Join(o.Dir, ecsfront.SettingsFile)
	switch {
	case o.ConfigFile != "":
		b, err := boundedread.File(o.ConfigFile, maxSettingsSize)
		if err != nil {
			return nil, "", fmt.Errorf("--config: %w", err)
		}
		return b, "--config " + o.ConfigFile, nil
	case IsInstall(o.Dir):
		b, err := boundedread.File(existing, maxSettingsSize)
		if err != nil {
			return nil, "", err
		}
		return b, "the existing " + existing + " (no --config)", nil
	}
	return []byte("{}"), "defaults", nil
}

// settings reads the settings source, applies --upstream (or the upstream
// ecs.config implies) over it and checks the plugin fields with the
// plugin's own parser: the front must never meet a settings file it would
// reject. Settings without an "imds" section get it written out as the
// front's default: off.
func (o *Options) settings() (*ecsfront.Settings, error) {
	data, from, err := o.settingsSource()
	if err != nil {
		return nil, err
	}
	o.say("ecs install: front settings from %s", from)
	s, err := ecsfront.ParseSettings(data)
	if err != nil {
		return nil, fmt.Errorf("settings from %s: %w", from, err)
	}
	implied := o.upstreamFromECSConfig()
	switch {
	case o.Upstream != "":
		if !filepath.IsAbs(o.Upstream) {
			return nil, fmt.Errorf("--upstream %q must be an absolute path (as the agent's container sees it)", o.Upstream)
		}
		s.Upstream = filepath.Clean(o.Upstream)
	case implied != "" && !setsUpstream(data) && implied != s.Upstream:
		s.Upstream = implied
		o.say("ecs install: upstream %s, taken from %s's current %s (give --upstream to choose another)", implied, o.ECSConfig, ecsfront.PluginsPathVar)
	}
	if filepath.Clean(s.Upstream) == o.Dir {
		return nil, fmt.Errorf("upstream %s is the install directory itself: the front would run itself", s.Upstream)
	}
	if s.IMDS == nil { // the front's default, written out
		off := false
		s.IMDS = &config.IMDSConf{Enabled: &off}
	}
	return s, checkPluginFields(s, from)
}

// setsUpstream reports whether settings JSON names an upstream itself.
func setsUpstream(data []byte) bool {
	var probe struct {
		Upstream *string `json:"upstream"`
	}
	return json.Unmarshal(data, &probe) == nil && probe.Upstream != nil && *probe.Upstream != ""
}

// checkPluginFields runs the settings' plugin fields through the plugin's
// own configuration parser.
func checkPluginFields(s *ecsfront.Settings, from string) error {
	b, _ := json.Marshal(s)
	var conf map[string]any
	_ = json.Unmarshal(b, &conf)
	delete(conf, "install")
	conf["cniVersion"], conf["name"], conf["type"] = "0.3.0", "ecs-front-settings", "vpc-eni"
	b, _ = json.Marshal(conf)
	if _, err := config.Parse(b); err != nil {
		return fmt.Errorf("front settings from %s: %w", from, err)
	}
	return nil
}

// upstreamFromECSConfig looks at the ECS_CNI_PLUGINS_PATH ecs.config sets
// now, if it names another directory: the agent runs its plugins from
// there, so that is the upstream; if it is another front of ours, that
// front's upstream. It says what it found; "" when nothing applies.
func (o *Options) upstreamFromECSConfig() string {
	v, ok, err := ReadConfigValue(o.ECSConfig, ecsfront.PluginsPathVar)
	if err != nil {
		o.say("ecs install: WARNING: cannot read %s: %v", o.ECSConfig, err)
		return ""
	}
	if !ok || !filepath.IsAbs(v) || sameDir(v, o.Dir) {
		return ""
	}
	o.say("ecs install: %s sets %s=%s (another directory than %s)", o.ECSConfig, ecsfront.PluginsPathVar, v, o.Dir)
	r, err := ResolveDir(v)
	if err != nil || !isInstallDir(r) {
		return filepath.Clean(v)
	}
	o.say("ecs install: %s is another ec2-policy-routes front: with --write this install takes its place in %s; it stays installed (ec2-policy-routes ecs uninstall --dir %s removes it)", v, o.ECSConfig, v)
	b, err := boundedread.File(filepath.Join(r, ecsfront.SettingsFile), maxSettingsSize)
	if err != nil {
		return ""
	}
	if s, err := ecsfront.ParseSettings(b); err == nil {
		return s.Upstream
	}
	return ""
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
	return true, atomicfile.Write(path, data, 0o755, -1, -1)
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

// isInstallDir is IsInstall.
func isInstallDir(dir string) bool { return IsInstall(dir) }

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
