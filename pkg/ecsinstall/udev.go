package ecsinstall

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/systemd"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/udevoverride"
)

// reloadTimeout bounds the D-Bus call that reloads udevd.
const reloadTimeout = 15 * time.Second

func (o *Options) vendorRule() string {
	for _, p := range udevoverride.VendorRules {
		if _, err := os.Stat(filepath.Join(o.UdevRoot, p)); err == nil {
			return p
		}
	}
	return ""
}

// placeUdev puts the udev override in place (never over a file not ours)
// and reports whether it is there because of this install: placed now, or
// placed by it before (prev) and still ours. Nothing here fails install.
func (o *Options) placeUdev(ctx context.Context, prev *Manifest) bool {
	if o.UdevRoot == "" {
		o.say("ecs install: udev override left alone (--no-udev-override)")
		return false
	}
	path := filepath.Join(o.UdevRoot, udevoverride.Path)
	if v := o.vendorRule(); v == "" {
		o.say("ecs install: udev override not needed: ec2-net-utils' rule (%s) is not installed", udevoverride.VendorRules[0])
		return prev != nil && prev.UdevOverride && udevOurs(o.UdevRoot)
	}
	changed, err := udevoverride.Place(o.UdevRoot)
	switch {
	case errors.Is(err, udevoverride.ErrForeign):
		o.say("ecs install: udev override: %s is not ours: left as it is (ec2-policy-routes doctor judges it)", path)
		return false
	case err != nil:
		o.say("ecs install: WARNING: cannot place the udev override %s: %v (ec2-policy-routes repair --apply places it)", path, err)
		return false
	case !changed:
		o.say("ecs install: udev override %s already in place", path)
		return prev != nil && prev.UdevOverride
	}
	o.say("ecs install: wrote %s: ec2-net-utils' udev rule now leaves task ENIs alone", path)
	o.reloadUdev(ctx)
	return true
}

func udevOurs(root string) bool {
	st, err := udevoverride.Inspect(root)
	return err == nil && (st == udevoverride.Ours || st == udevoverride.OursOutdated)
}

// reloadUdev asks udevd, through systemd, to re-read its rules. udevd also
// notices changed rules files by itself at the next event, so a host
// without systemd (a container) only gets a note.
func (o *Options) reloadUdev(ctx context.Context) {
	if o.UdevRoot != "/" {
		return // a fixture tree, not the running host
	}
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	err := systemd.ReloadUdev(ctx)
	switch {
	case err == nil:
		o.say("ecs %s: reloaded systemd-udevd.service", o.verb)
	case errors.Is(err, systemd.ErrNoSystemd):
		o.say("ecs %s: note: systemd is not running here: udevd reads the changed rules at its next event", o.verb)
	default:
		o.say("ecs %s: note: could not reload udev through systemd (%v): udevd reads the changed rules at its next event", o.verb, err)
	}
}

// removeUdev removes the override if this install placed it, it is still
// ours, and no other front of ours remains on the host.
func (o *Options) removeUdev(ctx context.Context, m *Manifest) {
	if o.UdevRoot == "" || m == nil || !m.UdevOverride {
		if o.UdevRoot != "" && udevOurs(o.UdevRoot) {
			o.say("ecs uninstall: udev override %s left: this install did not place it", filepath.Join(o.UdevRoot, udevoverride.Path))
		}
		return
	}
	path := filepath.Join(o.UdevRoot, udevoverride.Path)
	if others := o.otherFronts(); len(others) > 0 {
		o.say("ecs uninstall: udev override %s left: other fronts of ours remain (%v)", path, others)
		return
	}
	removed, err := udevoverride.Remove(o.UdevRoot)
	switch {
	case err != nil:
		o.say("ecs uninstall: WARNING: cannot remove the udev override %s: %v", path, err)
	case !removed:
		o.say("ecs uninstall: udev override %s is no longer ours (or gone): left", path)
	default:
		o.say("ecs uninstall: removed %s (ec2-net-utils' own rule applies again)", path)
		o.reloadUdev(ctx)
	}
}

// otherFronts lists installs of ours other than o.Dir that this host can
// name: the one ecs.config sets and the default directory.
func (o *Options) otherFronts() []string {
	var out []string
	cands := []string{ecsfront.DefaultInstallDir}
	if v, ok, _ := ReadConfigValue(o.ECSConfig, ecsfront.PluginsPathVar); ok && filepath.IsAbs(v) {
		cands = append([]string{v}, cands...)
	}
	for _, c := range cands {
		r, err := ResolveDir(c)
		if err != nil || sameDir(c, o.Dir) || contains(out, r) {
			continue
		}
		if isInstallDir(r) {
			out = append(out, r)
		}
	}
	return out
}
