package ecsinstall

import (
	"fmt"
	"path/filepath"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

// same matches an ecs.config value naming o.Dir (the symlink rule).
func (o *Options) same(v string) bool { return sameDir(v, o.Dir) }

// configureAgent prints (or with --write sets) the ecs.config line and the
// restart step. Lines for another directory that --write replaces are
// said and recorded in the manifest, so uninstall --write restores them.
func (o *Options) configureAgent(m *Manifest, s *ecsfront.Settings) error {
	line := ecsfront.PluginsPathVar + "=" + o.Dir
	changed := false
	if o.Write {
		var replaced []string
		var err error
		changed, err = configChange(o.ECSConfig, func(b []byte) []byte {
			out, r := replaceConfigLine(b, ecsfront.PluginsPathVar, o.Dir, o.same)
			replaced = r
			return out
		})
		if err != nil {
			return fmt.Errorf("cannot write %s: %w", o.ECSConfig, err)
		}
		if err := o.recordReplaced(m, s, replaced); err != nil {
			return err
		}
		if changed {
			o.say("ecs install: %s: set %s (other settings kept)", o.ECSConfig, line)
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

// recordReplaced says which lines --write replaced and records them.
func (o *Options) recordReplaced(m *Manifest, s *ecsfront.Settings, replaced []string) error {
	if len(replaced) == 0 {
		return nil
	}
	for _, l := range replaced {
		o.say("ecs install: %s: replaced %s (recorded in %s: ecs uninstall --write puts it back)", o.ECSConfig, l, filepath.Join(o.Dir, ecsfront.SettingsFile))
	}
	if m.ECSConfig == nil || m.ECSConfig.Path != o.ECSConfig {
		m.ECSConfig = &ConfigRecord{Path: o.ECSConfig}
	}
	m.ECSConfig.Replaced = append(m.ECSConfig.Replaced, replaced...)
	record(s, m)
	if _, err := o.writeSettings(s); err != nil {
		return fmt.Errorf("cannot record the replaced lines in %s: %w", filepath.Join(o.Dir, ecsfront.SettingsFile), err)
	}
	return nil
}

// unconfigureAgent drops the ecs.config line (--write), putting back the
// lines the install replaced (m's record), or says which line to drop.
func (o *Options) unconfigureAgent(m *Manifest) error {
	line := ecsfront.PluginsPathVar + "=" + o.Dir
	if !o.Write {
		if v, ok, _ := ReadConfigValue(o.ECSConfig, ecsfront.PluginsPathVar); ok && o.same(v) {
			o.say("Remove this line from %s (or run again with --write):\n%s", o.ECSConfig, line)
		}
		return nil
	}
	var rec []string
	if m != nil && m.ECSConfig != nil && len(m.ECSConfig.Replaced) > 0 {
		if m.ECSConfig.Path == o.ECSConfig {
			rec = m.ECSConfig.Replaced
		} else {
			o.say("ecs uninstall: the lines install replaced were in %s, not %s: not restored: %v", m.ECSConfig.Path, o.ECSConfig, m.ECSConfig.Replaced)
		}
	}
	var others []string
	restored := false
	changed, err := configChange(o.ECSConfig, func(b []byte) []byte {
		if out, ok := restoreConfigLines(b, ecsfront.PluginsPathVar, o.same, rec); ok && len(rec) > 0 {
			restored = true
			return out
		}
		out, _, oth := dropConfigLineFunc(b, ecsfront.PluginsPathVar, o.same)
		others = oth
		return out
	})
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", o.ECSConfig, err)
	}
	o.reportUnconfigured(changed, restored, rec, others)
	return nil
}

func (o *Options) reportUnconfigured(changed, restored bool, rec, others []string) {
	line := ecsfront.PluginsPathVar + "=" + o.Dir
	switch {
	case restored:
		o.say("ecs uninstall: %s: removed %s and put back what install replaced: %v", o.ECSConfig, line, rec)
	case changed:
		o.say("ecs uninstall: %s: removed %s (other lines kept)", o.ECSConfig, line)
	default:
		o.say("ecs uninstall: %s has no %s line", o.ECSConfig, line)
		if len(rec) > 0 {
			o.say("ecs uninstall: not restoring %v: %s no longer names this install (changed since: left as it is)", rec, o.ECSConfig)
		}
	}
	for _, l := range others {
		o.say("ecs uninstall: %s still sets %s (not this install): left alone", o.ECSConfig, l)
	}
	for _, l := range rec {
		if _, v, _ := lineKey(l); restored && !isDir(v) && !agentsOwnDefault(v) {
			o.say("ecs uninstall: note: restored %s names %s, which does not exist on this host (the agent's container may have it)", l, v)
		}
	}
}

func agentsOwnDefault(v string) bool { return filepath.Clean(v) == ecsfront.DefaultUpstreamDir }
