package doctor

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/boundedread"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsinstall"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/udevoverride"
)

// ECS front check IDs.
const (
	CheckECSFront    = "ecs_front_configured"
	CheckECSPlugins  = "ecs_front_plugins"
	CheckECSUpstream = "ecs_front_upstream"
	CheckECSBinary   = "ecs_front_binary"
	CheckECSUdev     = "ecs_front_udev_override"
)

// PackageBinary is the package's copy the fronts must match.
const PackageBinary = "/opt/cni/bin/ec2-policy-routes"

// ECSFront is what the doctor found of the ECS front (`ecs install`).
type ECSFront struct {
	Config         string   `json:"config"`                     // /etc/ecs/ecs.config
	PluginsPath    string   `json:"plugins_path,omitempty"`     // its ECS_CNI_PLUGINS_PATH
	Installed      bool     `json:"installed"`                  // PluginsPath holds the settings file
	Upstream       string   `json:"upstream,omitempty"`         // UP from the settings
	AgentPID       int      `json:"agent_pid,omitempty"`        // the running agent, if found
	UpstreamSeenAt string   `json:"upstream_seen_at,omitempty"` // where this host sees UP
	Missing        []string `json:"missing_plugins"`            // names the agent needs that DIR lacks
	Stale          []string `json:"stale_fronts"`               // fronts differing from the package binary
}

// ecsCheck carries what the four ECS checks share.
type ecsCheck struct {
	*doctor
	front    *ECSFront
	dir      string // host path of the install (below the root)
	settings *ecsfront.Settings
	view     ecsinstall.View
}

func (d *doctor) checkECS(ctx context.Context) {
	e := &ecsCheck{doctor: d, front: &ECSFront{Config: ecsfront.ECSConfig, Missing: []string{}, Stale: []string{}}}
	if !e.checkConfigured() {
		for _, id := range []string{CheckECSPlugins, CheckECSUpstream, CheckECSBinary, CheckECSUdev} {
			d.add(Check{ID: id, Status: StatusSkip, Summary: "no ECS front configured"})
		}
		return
	}
	d.rep.ECS = e.front
	e.view = ecsinstall.LocateUpstream(e.settings.Upstream, d.path("/proc"), d.root)
	if e.view.Agent != nil {
		e.front.AgentPID = e.view.Agent.PID
	}
	e.front.UpstreamSeenAt = e.view.Path
	e.checkPlugins()
	e.checkUpstream(ctx)
	e.checkBinary()
	e.checkUdevOverride()
}

// checkConfigured reads ECS_CNI_PLUGINS_PATH; it reports whether a front
// is configured and installed (the other checks then run).
func (e *ecsCheck) checkConfigured() bool {
	c := Check{ID: CheckECSFront}
	defer func() { e.add(c) }()
	v, ok, err := ecsinstall.ReadConfigValue(e.path(ecsfront.ECSConfig), ecsfront.PluginsPathVar) // bounded, never a FIFO; missing: not set
	switch {
	case err != nil:
		c.Status, c.Summary = StatusWarn, fmt.Sprintf("cannot read %s: %v", ecsfront.ECSConfig, err)
		return false
	case !ok && ecsinstall.IsInstall(e.path(ecsfront.DefaultInstallDir)):
		c.Status = StatusWarn
		c.Summary = "a front is installed at " + ecsfront.DefaultInstallDir + " but " + ecsfront.ECSConfig + " does not set " + ecsfront.PluginsPathVar + ": the agent does not use it"
		c.Hint = "add " + ecsfront.PluginsPathVar + "=" + ecsfront.DefaultInstallDir + " (ec2-policy-routes ecs install --write) and " + ecsinstall.RestartStep
		return false
	case !ok:
		c.Status, c.Summary = StatusSkip, "not configured: "+ecsfront.PluginsPathVar+" is not set in "+ecsfront.ECSConfig+" (the ECS agent runs its own plugins; see README: Run under the stock ECS agent)"
		return false
	}
	e.front.PluginsPath, e.dir = v, e.path(v)
	return e.judgeInstall(&c)
}

func (e *ecsCheck) judgeInstall(c *Check) bool {
	v := e.front.PluginsPath
	if e.agentsOwn(v) {
		c.Status, c.Summary = StatusSkip, fmt.Sprintf("%s=%s is the agent's own plugin directory: no front configured", ecsfront.PluginsPathVar, v)
		return false
	}
	if _, err := os.Stat(e.dir); err != nil {
		c.Status = StatusProblem
		c.Summary = fmt.Sprintf("%s=%s in %s, but %s does not exist: the agent exits at startup (its plugin probes fail)", ecsfront.PluginsPathVar, v, ecsfront.ECSConfig, v)
		c.Hint = "run ec2-policy-routes ecs install --dir " + v + ", or remove the line; then " + ecsinstall.RestartStep
		return false
	}
	if !ecsinstall.IsInstall(e.dir) {
		c.Status = StatusWarn
		c.Summary = fmt.Sprintf("%s=%s is not an ec2-policy-routes front (no %s): task ENIs get no policy routing from it", ecsfront.PluginsPathVar, v, ecsfront.SettingsFile)
		c.Hint = "ec2-policy-routes ecs install --dir " + v
		return false
	}
	e.front.Installed = true
	sp := filepath.Join(e.dir, ecsfront.SettingsFile)
	s, err := loadSettings(sp)
	if err != nil {
		c.Status, c.Summary = StatusProblem, fmt.Sprintf("front at %s: %v: the front refuses every call", v, err)
		c.Hint = "re-run ec2-policy-routes ecs install (it writes the settings root-owned, 0644)"
		return false
	}
	e.settings, e.front.Upstream = s, s.Upstream
	c.Status, c.Summary = StatusOK, fmt.Sprintf("%s=%s: an ec2-policy-routes front for upstream %s", ecsfront.PluginsPathVar, v, s.Upstream)
	for _, a := range ecsinstall.FindAgents(e.path("/proc")) {
		if !ecsinstall.IsInstall(filepath.Join(a.Root, v)) {
			c.Status = StatusProblem
			c.Summary = fmt.Sprintf("the running agent's container (pid %d) does not see %s: the agent cannot run its plugins", a.PID, v)
			c.Hint = "install below " + strings.Join(ecsinstall.AgentMounts, ", ") + " (ecs-init mounts them at the same path): ec2-policy-routes ecs install --write"
			return true
		}
		if got, _ := ecsinstall.AgentEnv(a, ecsfront.PluginsPathVar); filepath.Clean(got) != filepath.Clean(v) {
			c.Status = StatusWarn
			c.Summary += fmt.Sprintf("; but the running agent (pid %d) has %s=%q: it was not restarted since", a.PID, ecsfront.PluginsPathVar, got)
			c.Hint = ecsinstall.RestartStep
		}
	}
	return true
}

// agentsOwn reports whether dir is the agent image's plugin directory
// (the default, or a path only its container has).
func (e *ecsCheck) agentsOwn(dir string) bool {
	if filepath.Clean(dir) == ecsfront.DefaultUpstreamDir {
		return true
	}
	if _, err := os.Stat(e.path(dir)); err == nil {
		return false
	}
	for _, a := range ecsinstall.FindAgents(e.path("/proc")) {
		if _, err := os.Stat(filepath.Join(a.Root, dir)); err == nil {
			return true
		}
	}
	return false
}

// loadSettings is ecsfront.LoadSettings with the install's trust rule.
func loadSettings(path string) (*ecsfront.Settings, error) {
	if err := ecsinstall.CheckTrusted(path); err != nil {
		return nil, err
	}
	b, err := boundedread.File(path, maxConfFile)
	if err != nil {
		return nil, err
	}
	return ecsfront.ParseSettings(b)
}

// checkPlugins: every name the agent probes or runs resolves in DIR, and
// every name the agent's image has is in DIR (an agent upgrade can add one).
func (e *ecsCheck) checkPlugins() {
	c := Check{ID: CheckECSPlugins}
	var bad []string
	for _, name := range ecsfront.KnownPlugins {
		detail, ok := e.resolve(name)
		c.Details = append(c.Details, name+": "+detail)
		if !ok {
			bad = append(bad, name)
		}
	}
	if e.view.Visible() {
		found, _ := e.view.Plugins()
		for _, name := range found {
			if _, err := os.Lstat(filepath.Join(e.dir, name)); err != nil && !contains(ecsfront.KnownPlugins, name) {
				c.Details = append(c.Details, name+": in upstream ("+e.view.Path+") but MISSING from "+e.front.PluginsPath)
				bad = append(bad, name)
			}
		}
	}
	e.front.Missing = append(e.front.Missing, bad...)
	if len(bad) > 0 {
		c.Status = StatusProblem
		c.Summary = fmt.Sprintf("plugins that do not resolve in %s: %s (the agent exits at startup if a probed one is missing, and fails tasks that need one)",
			e.front.PluginsPath, strings.Join(bad, " "))
		c.Hint = "re-run ec2-policy-routes ecs install (after an agent upgrade it links the new plugins)"
	} else {
		c.Status, c.Summary = StatusOK, fmt.Sprintf("all %d plugins the agent uses resolve in %s", len(ecsfront.KnownPlugins), e.front.PluginsPath)
	}
	e.add(c)
}

// resolve judges DIR/name: a front is an executable file here; a link
// must point at UP/name and, where UP is visible, reach an executable.
func (e *ecsCheck) resolve(name string) (string, bool) {
	p := filepath.Join(e.dir, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return "MISSING", false
	}
	if ecsfront.IsFronted(name) {
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Sprintf("front is not an executable file (%v)", fi.Mode()), false
		}
		if err := ecsinstall.CheckTrusted(p); err != nil {
			return "front is UNTRUSTED (anyone who can write it runs code as root): " + err.Error(), false
		}
		return "front (this plugin)", true
	}
	target, err := os.Readlink(p)
	if err != nil {
		return "not a symlink to the upstream plugin", false
	}
	if !e.view.Visible() {
		return "-> " + target + " (upstream not visible from here)", true
	}
	rel := strings.TrimPrefix(target, e.settings.Upstream)
	st, err := os.Stat(filepath.Join(e.view.Path, rel))
	if rel == target || err != nil || st.Mode().Perm()&0o111 == 0 {
		return "-> " + target + ": DANGLING (not an executable in " + e.view.Path + ")", false
	}
	return "-> " + target, true
}

// checkUpstream: UP answers --capabilities where this host can see it.
func (e *ecsCheck) checkUpstream(ctx context.Context) {
	c := Check{ID: CheckECSUpstream}
	if !e.view.Visible() {
		c.Status, c.Summary = StatusSkip, "upstream "+e.settings.Upstream+" "+e.view.How
		e.add(c)
		return
	}
	var errs []string
	for _, name := range ecsfront.FrontedPlugins {
		if _, err := os.Lstat(filepath.Join(e.view.Path, name)); err != nil && name != "vpc-eni" {
			continue
		}
		if err := e.view.CheckPlugin(ctx, name, 5*time.Second); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		c.Status, c.Summary, c.Details = StatusProblem, "upstream "+e.settings.Upstream+" ("+e.view.How+") is broken: the front fails every call", errs
		c.Hint = "check the agent image; re-run ec2-policy-routes ecs install --upstream UP if the plugins moved"
	} else {
		c.Status, c.Summary = StatusOK, "upstream "+e.settings.Upstream+" "+e.view.How+": vpc-eni answers --capabilities"
	}
	e.add(c)
}

// checkBinary: the fronts are the package's binary (content hash).
func (e *ecsCheck) checkBinary() {
	c := Check{ID: CheckECSBinary}
	want, err := ecsinstall.FileSum(e.path(PackageBinary))
	if err != nil {
		c.Status, c.Summary = StatusWarn, "cannot compare the fronts with the package: "+PackageBinary+": "+err.Error()
		e.add(c)
		return
	}
	for _, name := range ecsfront.FrontedPlugins {
		got, err := ecsinstall.FileSum(filepath.Join(e.dir, name))
		if err != nil || got != want {
			e.front.Stale = append(e.front.Stale, name)
			c.Details = append(c.Details, fmt.Sprintf("%s/%s: sha256 %s, package %s", e.front.PluginsPath, name, short(got), short(want)))
		}
	}
	if len(e.front.Stale) > 0 {
		c.Status = StatusProblem
		c.Summary = fmt.Sprintf("fronts that differ from %s: %s: the agent runs another build than the package holds", PackageBinary, strings.Join(e.front.Stale, " "))
		c.Hint = "ec2-policy-routes ecs refresh (or ecs install); the package's post-install does it on upgrade"
	} else {
		c.Status, c.Summary = StatusOK, "fronts match "+PackageBinary+" (sha256 "+short(want)+")"
	}
	e.add(c)
}

// checkUdevOverride: a front's host has the udev override where
// ec2-net-utils' rule is installed; without it every task ENI the agent
// hands back (ecs*) starts policy-routes@ units (the stuck processes).
func (e *ecsCheck) checkUdevOverride() {
	c := Check{ID: CheckECSUdev}
	u := e.f.Udev // read once with the other findings
	st, vendor := u.State, u.Vendor != ""
	switch {
	case u.StateErr != "":
		c.Status, c.Summary = StatusWarn, "cannot read "+udevoverride.Path+": "+u.StateErr
	case st == udevoverride.Ours:
		c.Status, c.Summary = StatusOK, udevoverride.Path+" (ec2-policy-routes) is in place"
	case st == udevoverride.Foreign:
		c.Status, c.Summary = StatusSkip, udevoverride.Path+" is not ours (judged by "+CheckUdev+")"
	case !vendor:
		c.Status, c.Summary = StatusOK, "ec2-net-utils' udev rule is not installed: no override needed"
	case st == udevoverride.OursOutdated:
		c.Status, c.Summary = StatusWarn, udevoverride.Path+" is another release's override"
		c.Hint = "ec2-policy-routes repair --apply, or re-run ec2-policy-routes ecs install (rewrites it)"
	default:
		c.Status = StatusWarn
		c.Summary = "the ECS front's host lacks the udev override: ec2-net-utils starts policy-routes@ for every task ENI the agent hands back (ecs*)"
		c.Hint = "ec2-policy-routes repair --apply, or re-run ec2-policy-routes ecs install (places " + udevoverride.Path + ")"
	}
	e.add(c)
}

func short(sum [32]byte) string { return hex.EncodeToString(sum[:6]) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
