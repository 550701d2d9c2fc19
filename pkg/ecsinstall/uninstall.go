package ecsinstall

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

// Uninstall removes what the install in o.Dir made (its manifest's
// entries, while still what it made; an install from before manifests:
// what that layout created), then DIR and the directories it created if
// empty, the udev override if it placed it, and with --write the
// ecs.config line (restoring the lines it replaced).
func Uninstall(ctx context.Context, o Options) error {
	if err := o.defaults("uninstall"); err != nil {
		return err
	}
	fi, err := os.Lstat(o.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		o.say("ecs uninstall: nothing installed at %s", o.Dir)
		return o.unconfigureAgent(nil)
	case err != nil:
		return err
	case !fi.IsDir() || !isInstallDir(o.Dir):
		return fmt.Errorf("refusing: %s is not an ec2-policy-routes ECS front (no %s in it); not removing it", o.Dir, ecsfront.SettingsFile)
	}
	self, _ := os.ReadFile(o.Self) // only to recognise fronts; a build of this module is recognised without it
	p, err := o.readPrior(self)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", o.Dir, err)
	}
	if err := o.unconfigureAgent(p.m); err != nil {
		return err // nothing removed yet: a re-run still has the record
	}
	if err := o.removeOwned(p); err != nil {
		return err
	}
	o.removeUdev(ctx, p.m)
	o.restartHint()
	return nil
}

// removeOwned removes the entries of ours, the settings (with the record)
// last (they make DIR an install: an interrupted run can be re-run), then
// DIR and the directories the install created, each only if empty.
func (o *Options) removeOwned(p *prior) error {
	ours := append([]Made(nil), p.judged.Ours...)
	last := func(m Made) bool { return m.Name == ecsfront.SettingsFile }
	sort.SliceStable(ours, func(i, k int) bool { return !last(ours[i]) && last(ours[k]) })
	for _, m := range ours {
		if err := os.Remove(filepath.Join(o.Dir, m.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cannot remove %s: %w", filepath.Join(o.Dir, m.Name), err)
		}
	}
	left := append(Names(p.judged.Foreign), Names(p.judged.Hidden)...)
	if len(left) > 0 {
		o.say("ecs uninstall: left in %s, not ours: %s", o.Dir, strings.Join(left, " "))
	}
	if err := os.Remove(o.Dir); err != nil {
		// Not a failure: ours are gone; what is left is someone else's.
		why := "not empty"
		if !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
			why = err.Error()
		}
		o.say("ecs uninstall: removed the front's %d entries; left %s (%s)", len(ours), o.Dir, why)
		return nil //nolint:nilerr // see above
	}
	o.say("ecs uninstall: removed %s", o.Dir)
	o.removeCreatedDirs(p.m)
	return nil
}

// removeCreatedDirs removes the parents of DIR the install created, deepest
// first, while they are empty.
func (o *Options) removeCreatedDirs(m *Manifest) {
	if m == nil {
		return
	}
	dirs := append([]string(nil), m.CreatedDirs...)
	sort.Slice(dirs, func(i, k int) bool { return len(dirs[i]) > len(dirs[k]) })
	for _, d := range dirs {
		if d == o.Dir || !under(o.Dir, d) || isMountOrAbove(d) {
			continue // the agent's mounts are ecs-init's, even if install made them
		}
		if os.Remove(d) != nil {
			return // not empty (or gone): its parents are not empty either
		}
		o.say("ecs uninstall: removed %s (created by install, now empty)", d)
	}
}

func (o *Options) restartHint() {
	if a := o.agentUsing(o.Dir); a != nil {
		o.say("The running ECS agent (pid %d) still uses %s: restart it now: %s", a.PID, o.Dir, RestartStep)
	} else {
		o.say("Then restart the ECS agent if it was using %s: %s", o.Dir, RestartStep)
	}
}

func isMountOrAbove(d string) bool {
	for _, m := range AgentMounts {
		if under(m, d) {
			return true
		}
	}
	return false
}
