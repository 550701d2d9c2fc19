// Package repair cures a host of the ec2-net-utils stuck-loop failure the
// doctor detects: it places the udev override (and reloads udev), stops,
// runtime-masks and reset-fails the policy-routes units of interfaces that
// are gone, and removes the lock files nobody holds. The actions are a pure
// function of the doctor's findings (Plan), so a dry run shows exactly what
// --apply does; Apply goes through one Host interface (the systemd door and
// the file operations), which tests fake.
package repair

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/doctor"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/udevoverride"
)

// Action kinds, stable for JSON consumers.
const (
	KindPlaceUdev   = "place-udev-override"
	KindReloadUdev  = "reload-udev"
	KindStop        = "stop"
	KindResetFailed = "reset-failed"
	KindMask        = "mask-runtime"
	KindRemoveLock  = "remove-lock"
)

// Action is one change repair makes (or, in a dry run, would make).
type Action struct {
	Kind   string `json:"kind"`
	Target string `json:"target"`
	Why    string `json:"why"`
	Done   bool   `json:"done"`
	Error  string `json:"error,omitempty"`
}

// unitKinds are the three units ec2-net-utils runs per interface, in the
// order they are stopped: the timer first, so it starts no new refresh.
var unitKinds = []struct{ prefix, suffix string }{
	{"refresh-policy-routes@", ".timer"},
	{"refresh-policy-routes@", ".service"},
	{"policy-routes@", ".service"},
}

// Plan derives the actions from the findings, in the order Apply makes
// them: udev override and reload, stops, reset-failed, runtime masks, lock
// removals. Notes say what is deliberately left alone. It never names a
// template (no instance) or a unit of a present interface, and never a
// lock held by a live setup-policy-routes of a present interface.
func Plan(f *doctor.Findings) (actions []Action, notes []string) {
	actions, notes = planUdev(f.Udev)
	units, stopped := planUnits(f)
	actions = append(actions, units...)
	actions = append(actions, planLocks(f.LockFiles, stopped)...)
	return actions, notes
}

func planUdev(u doctor.Udev) ([]Action, []string) {
	var notes []string
	if u.StateErr != "" {
		notes = append(notes, "cannot inspect "+udevoverride.Path+": "+u.StateErr)
	}
	var why string
	switch {
	case u.State == udevoverride.Foreign:
		return nil, append(notes, udevoverride.Path+" exists and is not ours (e.g. the EKS AMI's empty mask, or an operator's rule): left alone")
	case u.State == udevoverride.OursOutdated:
		why = "our rule there is another release's: replaced by this one's"
	case u.State == udevoverride.Absent && u.Problem():
		why = u.Vendor + " is active and not overridden: ec2-net-utils starts policy-routes@ for every task ENI, including the ecs* names vpc-eni hands back on DEL"
	default:
		return nil, notes
	}
	return []Action{
		{Kind: KindPlaceUdev, Target: udevoverride.Path, Why: why},
		{Kind: KindReloadUdev, Target: "systemd-udevd.service", Why: "udevd reads the override from the next event on"},
	}, notes
}

// instance is one missing interface's units as listed, by unit name.
type instance struct {
	iface  string
	listed map[string]doctor.Unit
}

// missingInstances groups the listed units of interfaces missing from
// /sys/class/net by their escaped instance.
func missingInstances(units []doctor.Unit) (map[string]*instance, []string) {
	byInst := map[string]*instance{}
	var order []string
	for _, u := range units {
		at, dot := strings.IndexByte(u.Name, '@'), strings.LastIndexByte(u.Name, '.')
		if u.InterfaceExists || u.Interface == "" || at < 0 || dot <= at+1 {
			continue // a present interface's unit, or a template: never touched
		}
		inst := u.Name[at+1 : dot]
		if byInst[inst] == nil {
			byInst[inst] = &instance{iface: u.Interface, listed: map[string]doctor.Unit{}}
			order = append(order, inst)
		}
		byInst[inst].listed[u.Name] = u
	}
	sort.Strings(order)
	return byInst, order
}

// planUnits stops, reset-fails and runtime-masks the three units of every
// missing interface; it returns the actions and the interfaces whose units
// it stops (their stuck owners die, their locks become stale).
func planUnits(f *doctor.Findings) ([]Action, map[string]bool) {
	byInst, order := missingInstances(f.Units)
	var stops, resets, masks []Action
	stopped := map[string]bool{}
	for _, inst := range order {
		in := byInst[inst]
		gone := fmt.Sprintf("interface %s is missing from /sys/class/net", in.iface)
		for _, k := range unitKinds {
			name := k.prefix + inst + k.suffix
			u, listed := in.listed[name]
			stop := listed && doctor.LiveState(u.Active)
			if stop {
				stopped[in.iface] = true
				stops = append(stops, Action{Kind: KindStop, Target: name, Why: fmt.Sprintf("%s %s/%s: %s", name, u.Active, u.Sub, gone)})
			}
			switch {
			case stop:
				resets = append(resets, Action{Kind: KindResetFailed, Target: name, Why: "a stopped start may end failed: clear the record (" + gone + ")"})
			case listed && u.Active == "failed":
				resets = append(resets, Action{Kind: KindResetFailed, Target: name, Why: fmt.Sprintf("%s/%s: clear the record (%s)", u.Active, u.Sub, gone)})
			}
			masked := (listed && u.Load == "masked") || slices.Contains(f.RuntimeMasked, name)
			if !masked {
				masks = append(masks, Action{Kind: KindMask, Target: name, Why: gone + "; nothing may start it again (runtime: gone at reboot)"})
			}
		}
	}
	return append(append(stops, resets...), masks...), stopped
}

// planLocks removes the stale locks (owner dead, PID reused, no PID) and
// the locks of stuck owners whose units are stopped first. Apply re-reads
// before removing and leaves a lock whose owner is still a live
// setup-policy-routes.
func planLocks(locks []doctor.LockFile, stopped map[string]bool) []Action {
	var out []Action
	for _, lf := range locks {
		switch {
		case lf.Stale:
			out = append(out, Action{Kind: KindRemoveLock, Target: lf.Path, Why: lf.Reason})
		case lf.OwnerAlive && !lf.InterfaceExists && stopped[lf.Interface]:
			out = append(out, Action{Kind: KindRemoveLock, Target: lf.Path,
				Why: fmt.Sprintf("%s; stopping its units ends PID %d, after which the lock is stale", lf.Reason, lf.PID)})
		}
	}
	return out
}
