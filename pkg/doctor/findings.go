package doctor

import (
	"context"
)

// Findings is the host's state as read once: plain data. The doctor's
// checks judge it; `repair` derives its actions from it (a pure function)
// and reads it again to see what its actions changed.
type Findings struct {
	Root string `json:"root"`
	// Processes are the running setup-policy-routes invocations.
	Processes []Process `json:"setup_policy_routes_processes"`
	// LockFiles are ec2-net-utils' per-interface locks with their verdicts.
	LockFiles []LockFile `json:"lock_files"`
	// LockDirMissing: there is no lock directory; LockDirErr: it could not
	// be read.
	LockDirMissing bool   `json:"lock_dir_missing,omitempty"`
	LockDirErr     string `json:"lock_dir_error,omitempty"`
	// Units are the policy-routes@/refresh-policy-routes@ units systemd
	// has loaded; UnitsListed says they were listed, UnitsSkipped why not
	// (no systemd), UnitsErr that listing failed.
	Units        []Unit `json:"units"`
	UnitsListed  bool   `json:"units_listed"`
	UnitsSkipped string `json:"units_skipped,omitempty"`
	UnitsErr     string `json:"units_error,omitempty"`
	// RuntimeMasked names units masked in /run/systemd/system (a runtime
	// mask systemd no longer lists once it dropped the unit).
	RuntimeMasked []string `json:"runtime_masked,omitempty"`
	// Udev is the udev override state.
	Udev Udev `json:"udev"`
	// Netns is the namespace scan (unless Options.SkipNetns).
	Netns Netns `json:"netns"`
}

// Netns is what the namespace scan found: the namespaces holding rules or
// routes of ours, and those that could not be read.
type Netns struct {
	Read       bool        `json:"read"`
	Scanned    int         `json:"scanned"`
	Namespaces []Namespace `json:"namespaces"`
	Errors     []string    `json:"errors,omitempty"`
}

func newFindings(root string) *Findings {
	return &Findings{Root: root, Processes: []Process{}, LockFiles: []LockFile{}, Units: []Unit{}}
}

// Read reads the host's findings (processes, lock files, units, udev
// override, namespaces) without judging them.
func Read(ctx context.Context, o Options) (*Findings, error) {
	d, err := newDoctor(o)
	if err != nil {
		return nil, err
	}
	if err := d.read(ctx); err != nil {
		return nil, err
	}
	return d.f, nil
}

func (d *doctor) read(ctx context.Context) error {
	running, err := d.findProcesses(ctx)
	if err != nil {
		return err
	}
	if err := d.readLockFiles(ctx, running); err != nil {
		return err
	}
	d.readUnits(ctx)
	d.readUdev()
	if !d.opts.SkipNetns {
		d.f.Netns.Read = true
		if err := d.readNetns(ctx); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Stale reports the lock files nobody holds any more (owner dead, PID now
// another program's, no PID at all).
func (f *Findings) Stale() []LockFile {
	var out []LockFile
	for _, lf := range f.LockFiles {
		if lf.Stale {
			out = append(out, lf)
		}
	}
	return out
}
