package ecsinstall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

// RefreshDirs are the installs a package upgrade refreshes: the directory
// ecs.config names and the default one, each only if it is an install.
func RefreshDirs(ecsConfig string) []string {
	dirs := []string{}
	if v, ok, _ := ReadConfigValue(ecsConfig, ecsfront.PluginsPathVar); ok && filepath.IsAbs(v) {
		dirs = append(dirs, filepath.Clean(v))
	}
	if !contains(dirs, ecsfront.DefaultInstallDir) {
		dirs = append(dirs, ecsfront.DefaultInstallDir)
	}
	return dirs
}

// Refresh replaces the front binaries of existing installs with this
// binary (atomically; identical ones are left alone). It never creates an
// install, touches the symlinks or settings, or edits ecs.config: that is
// `ecs install`. The package's post-install script runs it on upgrade, so
// a front never runs an older plugin than the package holds. o.Dir, if
// set, is the only directory considered.
func Refresh(_ context.Context, o Options) error {
	explicit := o.Dir != ""
	if err := o.defaults("refresh"); err != nil {
		return err
	}
	dirs := []string{o.Dir}
	if !explicit {
		dirs = RefreshDirs(o.ECSConfig)
	}
	self, err := os.ReadFile(o.Self)
	if err != nil {
		return fmt.Errorf("cannot read this binary %s: %w", o.Self, err)
	}
	var errs []error
	for _, dir := range dirs {
		if !IsInstall(dir) {
			if o.Quiet {
				continue
			}
			o.say("ecs refresh: %s: no front installed (no %s)", dir, ecsfront.SettingsFile)
			continue
		}
		if err := refreshDir(&o, dir, self); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

func refreshDir(o *Options, dir string, self []byte) error {
	if err := CheckTrusted(dir); err != nil {
		return fmt.Errorf("refusing to refresh: %w", err)
	}
	changes := 0
	for _, name := range ecsfront.FrontedPlugins {
		path := filepath.Join(dir, name)
		changed, err := writeFront(path, self)
		if err != nil {
			return err
		}
		if changed {
			changes++
			o.say("ecs refresh: wrote %s (copy of %s)", path, o.Self)
		}
	}
	if changes == 0 && !o.Quiet {
		o.say("ecs refresh: %s: fronts already match %s", dir, o.Self)
	}
	return nil
}
