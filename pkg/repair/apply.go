package repair

import (
	"context"
	"fmt"
	"path"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/doctor"
)

// Host is everything repair reads and changes: the doctor's reads, the
// systemd door and the two file operations. System is the real one; tests
// fake it.
type Host interface {
	// Read reads the findings (doctor.Read).
	Read(ctx context.Context) (*doctor.Findings, error)
	// Check runs the doctor's checks (doctor.Run).
	Check(ctx context.Context) (*doctor.Report, error)
	Stop(ctx context.Context, unit string) error
	ResetFailed(ctx context.Context, unit string) error
	// MaskRuntime masks units in /run/systemd (gone at reboot).
	MaskRuntime(ctx context.Context, units []string) error
	ReloadUdev(ctx context.Context) error
	// PlaceUdevOverride is udevoverride.Place.
	PlaceUdevOverride() (changed bool, err error)
	// RemoveLock removes a lock file (a path below the host's root).
	RemoveLock(path string) error
}

// Result is what repair planned, did and left; its JSON is the documented
// shape (README: Migrate).
type Result struct {
	Apply   bool     `json:"apply"`
	Actions []Action `json:"actions"`
	Notes   []string `json:"notes,omitempty"`
	Left    []string `json:"left"`
	Healthy bool     `json:"healthy"`
}

// Run reads the findings once and plans; with apply it makes the changes,
// then re-checks with the doctor's checks. Without apply nothing changes.
func Run(ctx context.Context, h Host, apply bool) (*Result, error) {
	f, err := h.Read(ctx)
	if err != nil {
		return nil, err
	}
	actions, notes := Plan(f)
	r := &Result{Apply: apply, Actions: actions, Notes: notes, Left: []string{}}
	if r.Actions == nil {
		r.Actions = []Action{}
	}
	if apply {
		if err := execute(ctx, h, r.Actions); err != nil {
			return nil, err
		}
	}
	rep, err := h.Check(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range r.Actions {
		if apply && !a.Done {
			r.Left = append(r.Left, fmt.Sprintf("%s %s: %s", a.Kind, a.Target, a.Error))
		}
	}
	for _, c := range rep.Checks {
		if c.Status == doctor.StatusProblem {
			r.Left = append(r.Left, c.ID+": "+c.Summary)
		}
	}
	r.Healthy = len(r.Left) == 0
	return r, nil
}

// execute makes the actions in plan order: the udev override, the units
// (masks in one call: one daemon reload), then the locks against a fresh
// read, since stopping units ends their stuck owners.
func execute(ctx context.Context, h Host, actions []Action) error {
	var masks []int
	locksFrom := len(actions)
	for i := range actions {
		a := &actions[i]
		switch a.Kind {
		case KindMask:
			masks = append(masks, i)
			continue
		case KindRemoveLock:
			if i < locksFrom {
				locksFrom = i
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		setResult(a, doOne(ctx, h, a))
		if a.Kind == KindPlaceUdev && !a.Done {
			skipReload(actions)
		}
	}
	if len(masks) > 0 {
		var names []string
		for _, i := range masks {
			names = append(names, actions[i].Target)
		}
		err := h.MaskRuntime(ctx, names)
		for _, i := range masks {
			setResult(&actions[i], err)
		}
	}
	return removeLocks(ctx, h, actions[locksFrom:])
}

func doOne(ctx context.Context, h Host, a *Action) error {
	switch a.Kind {
	case KindPlaceUdev:
		_, err := h.PlaceUdevOverride()
		return err
	case KindReloadUdev:
		if a.Error != "" {
			return fmt.Errorf("%s", a.Error)
		}
		return h.ReloadUdev(ctx)
	case KindStop:
		return h.Stop(ctx, a.Target)
	case KindResetFailed:
		return h.ResetFailed(ctx, a.Target)
	}
	return fmt.Errorf("unknown action kind %q", a.Kind)
}

// skipReload marks the reload as not made: the override was not placed.
func skipReload(actions []Action) {
	for i := range actions {
		if actions[i].Kind == KindReloadUdev {
			actions[i].Error = "skipped: the override was not placed"
		}
	}
}

func setResult(a *Action, err error) {
	if err != nil {
		a.Error = err.Error()
		return
	}
	a.Done, a.Error = true, ""
}

// removeLocks re-reads the lock files and removes each planned one that
// is stale now (or already gone); a lock whose owner is still a live
// setup-policy-routes is left and named.
func removeLocks(ctx context.Context, h Host, actions []Action) error {
	if len(actions) == 0 {
		return nil
	}
	f, err := h.Read(ctx)
	if err != nil {
		return err
	}
	now := map[string]doctor.LockFile{}
	for _, lf := range f.LockFiles {
		now[path.Clean(lf.Path)] = lf
	}
	for i := range actions {
		a := &actions[i]
		lf, present := now[path.Clean(a.Target)]
		switch {
		case !present:
			setResult(a, nil) // gone meanwhile (its owner cleaned up)
		case !lf.Stale:
			a.Error = "left: " + lf.Reason
		default:
			setResult(a, h.RemoveLock(a.Target))
		}
	}
	return nil
}
