package ecsinstall

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/atomicfile"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

// prior is what DIR holds before an install or uninstall: its manifest (nil
// for none, or an install from before manifests) and the verdict on its
// entries.
type prior struct {
	m        *Manifest
	upstream string // the existing settings' upstream (the legacy rule's)
	judged   Judged
}

// readPrior scans o.Dir and judges its entries.
func (o *Options) readPrior(self []byte) (*prior, error) {
	m, up, err := ReadManifest(o.Dir)
	if err != nil {
		o.say("ecs %s: WARNING: %v: judging %s by the layout of installs without a record", o.verb, err, o.Dir)
	}
	p := &prior{m: m, upstream: up}
	if p.upstream == "" {
		p.upstream = ecsfront.DefaultUpstreamDir
	}
	found, err := ScanDir(o.Dir, self)
	if err != nil {
		return nil, err
	}
	p.judged = Owned(found, p.m, p.upstream)
	return p, nil
}

// checkForeign refuses a DIR holding entries install does not own, naming
// them, unless --force; with --force it returns the names it must leave.
// A foreign entry where a front must go is refused even with --force.
func (o *Options) checkForeign(p *prior) (skip map[string]bool, err error) {
	skip = map[string]bool{}
	if len(p.judged.Foreign) == 0 {
		return skip, nil
	}
	names := Names(p.judged.Foreign)
	for _, n := range names {
		if ecsfront.IsFronted(n) || n == ecsfront.SettingsFile {
			return nil, fmt.Errorf("refusing: %s holds %s, which is not ours, where the front must go; not touching it", o.Dir, n)
		}
	}
	if !o.Force {
		return nil, fmt.Errorf("refusing: %s holds entries this install does not own: %s (give another --dir, or --force to lay out next to them; they are never touched)",
			o.Dir, strings.Join(names, " "))
	}
	for _, n := range names {
		skip[n] = true
	}
	o.say("ecs install: --force: laying out next to entries not ours, left as they are and not recorded: %s", strings.Join(names, " "))
	return skip, nil
}

// Install lays out the front in o.Dir; see the package comment and README.
func Install(ctx context.Context, o Options) error {
	if err := o.defaults("install"); err != nil {
		return err
	}
	self, err := os.ReadFile(o.Self)
	if err != nil {
		return fmt.Errorf("cannot read this binary %s: %w", o.Self, err)
	}
	p, err := o.readPrior(self)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", o.Dir, err)
	}
	skip, err := o.checkForeign(p)
	if err != nil {
		return err
	}
	s, err := o.settings()
	if err != nil {
		return err
	}
	if uid := os.Geteuid(); uid != 0 {
		o.say("ecs install: warning: not root: files will be owned by uid %d, and the front refuses files not owned by root", uid)
	}
	view := LocateUpstream(s.Upstream, o.Proc, "/")
	names, err := o.verifyUpstream(ctx, s.Upstream, view)
	if err != nil {
		return err
	}
	m, err := o.lay(ctx, s, self, names, skip, p)
	if err != nil {
		return err
	}
	o.checkAgentSees()
	return o.configureAgent(m, s)
}

// lay creates DIR, writes the entries and the settings with the install
// record: what it wrote plus what an earlier install made and is still
// ours, the directories it created, the udev override.
func (o *Options) lay(ctx context.Context, s *ecsfront.Settings, self []byte, names []string, skip map[string]bool, p *prior) (*Manifest, error) {
	created, err := ensureDir(o.Dir)
	for _, d := range created {
		o.say("ecs install: created directory %s (0755)", d)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", o.Dir, err)
	}
	made, changes, err := o.layout(s, self, names, skip)
	if err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", o.Dir, err)
	}
	m := mergeManifest(o.Dir, p, made, created)
	m.UdevOverride = o.placeUdev(ctx, p.m)
	record(s, m)
	changed, err := o.writeSettings(s)
	if err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", o.Dir, err)
	}
	if changes += changed + len(created); changes == 0 {
		o.say("ecs install: %s is already installed and up to date: nothing changed", o.Dir)
	} else {
		o.say("ecs install: %s: %d changes", o.Dir, changes)
	}
	return m, nil
}

// layout writes the fronts and the symlinks, leaving
// the names in skip; it returns what it made and how many entries it
// changed.
func (o *Options) layout(s *ecsfront.Settings, self []byte, names []string, skip map[string]bool) ([]Made, int, error) {
	var made []Made
	changes := 0
	for _, name := range ecsfront.FrontedPlugins {
		changed, err := writeFront(filepath.Join(o.Dir, name), self)
		if err != nil {
			return made, changes, err
		}
		made = append(made, Made{Name: name, Kind: KindFront})
		changes += o.report(changed, "%s/%s: copy of %s (0755)", o.Dir, name, o.Self)
	}
	for _, name := range names {
		if ecsfront.IsFronted(name) || name == ecsfront.SettingsFile {
			continue
		}
		if skip[name] {
			o.say("ecs install: left %s/%s: not ours (--force); the agent runs it as %s", o.Dir, name, name)
			continue
		}
		target := filepath.Join(s.Upstream, name)
		changed, err := writeLink(filepath.Join(o.Dir, name), target)
		if err != nil {
			return made, changes, err
		}
		made = append(made, Made{Name: name, Kind: KindLink, Target: target})
		changes += o.report(changed, "%s/%s -> %s", o.Dir, name, target)
	}
	return made, changes, nil
}

func (o *Options) writeSettings(s *ecsfront.Settings) (int, error) {
	data, err := s.Marshal()
	if err != nil {
		return 0, err
	}
	path := filepath.Join(o.Dir, ecsfront.SettingsFile)
	changed := !sameFile(path, data, 0o644)
	if changed {
		if err := atomicfile.Write(path, data, 0o644, -1, -1); err != nil {
			return 0, err
		}
	}
	imds := "on"
	if s.IMDS == nil || (s.IMDS.Enabled != nil && !*s.IMDS.Enabled) {
		imds = "off (task ENI facts from the agent's configuration)"
	}
	return o.report(changed, "%s: front settings (0644), upstream %s, IMDS %s", path, s.Upstream, imds), nil
}

// mergeManifest is the record after an install: the entries it wrote (and
// the settings file), those an earlier install made that are still ours
// (e.g. a link to a plugin the agent's image has since dropped), the
// directories created by either, and the earlier ecs.config record.
func mergeManifest(dir string, p *prior, made []Made, created []string) *Manifest {
	m := &Manifest{Version: 1, Dir: dir, Entries: append(made, Made{Name: ecsfront.SettingsFile, Kind: KindSettings})}
	have := map[string]bool{}
	for _, e := range m.Entries {
		have[e.Name] = true
	}
	for _, e := range p.judged.Ours {
		if !have[e.Name] && (e.Kind == KindFront || e.Kind == KindLink) {
			m.Entries = append(m.Entries, e)
		}
	}
	if p.m != nil {
		m.CreatedDirs = append(m.CreatedDirs, p.m.CreatedDirs...)
		m.ECSConfig = p.m.ECSConfig
	}
	for _, d := range created {
		if !contains(m.CreatedDirs, d) {
			m.CreatedDirs = append(m.CreatedDirs, d)
		}
	}
	return m
}
