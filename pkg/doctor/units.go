package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/systemd"
)

// UnitSource lists units by glob patterns; *systemd.Conn is one, tests
// fake it.
type UnitSource interface {
	ListUnits(ctx context.Context, patterns []string) ([]systemd.Unit, error)
}

// UnitPatterns are the instances ec2-net-utils' udev rule starts per
// interface (never the templates themselves, which have no instance).
var UnitPatterns = []string{"policy-routes@*.service", "refresh-policy-routes@*.service", "refresh-policy-routes@*.timer"}

// RuntimeUnitDir is where runtime masks live (gone at reboot).
const RuntimeUnitDir = "/run/systemd/system"

// unitSource returns where to list units from, with a closer, or a reason
// to skip the check.
func (d *doctor) unitSource(ctx context.Context) (UnitSource, func(), string, error) {
	switch {
	case d.opts.SkipUnits:
		return nil, nil, "unit check skipped (--systemctl none)", nil
	case d.opts.Units != nil:
		return d.opts.Units, func() {}, "", nil
	case d.root != "/":
		return nil, nil, "a --root tree has no systemd to ask; unit check skipped", nil
	case !systemd.Running("/"):
		return nil, nil, "systemd not running; unit check skipped", nil
	}
	c, err := systemd.Open(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	return c, c.Close, "", nil
}

// readUnits lists the policy-routes units through systemd's D-Bus API.
func (d *doctor) readUnits(ctx context.Context) {
	src, closer, skip, err := d.unitSource(ctx)
	switch {
	case err != nil:
		d.f.UnitsErr = err.Error()
		return
	case skip != "":
		d.f.UnitsSkipped = skip
		return
	}
	defer closer()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	us, err := src.ListUnits(ctx, UnitPatterns)
	if err != nil {
		d.f.UnitsErr = err.Error()
		return
	}
	d.f.UnitsListed = true
	for _, su := range us {
		if !strings.Contains(su.Name, "policy-routes@") {
			continue
		}
		d.f.Units = append(d.f.Units, toUnit(su, d.ifaceExists))
	}
	d.f.RuntimeMasked = d.runtimeMasks()
}

// toUnit is a listed unit with its interface and whether it exists.
func toUnit(su systemd.Unit, exists func(string) bool) Unit {
	u := Unit{Name: su.Name, Load: su.LoadState, Active: su.ActiveState, Sub: su.SubState, Interface: UnitInstance(su.Name)}
	u.InterfaceExists = exists(u.Interface)
	return u
}

// runtimeMasks lists the policy-routes instances masked in /run/systemd/system.
func (d *doctor) runtimeMasks() []string {
	ents, _ := os.ReadDir(d.path(RuntimeUnitDir))
	var out []string
	for _, e := range ents {
		if !strings.Contains(e.Name(), "policy-routes@") || e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if t, err := os.Readlink(d.path(filepath.Join(RuntimeUnitDir, e.Name()))); err == nil && t == "/dev/null" {
			out = append(out, e.Name())
		}
	}
	return out
}

func (d *doctor) unitsVerdict() {
	c := Check{ID: CheckUnits}
	switch {
	case d.f.UnitsErr != "":
		c.Status, c.Summary = StatusWarn, "listing units through systemd's D-Bus API failed: "+d.f.UnitsErr
		d.add(c)
		return
	case !d.f.UnitsListed:
		c.Status, c.Summary = StatusSkip, d.f.UnitsSkipped
		d.add(c)
		return
	}
	var services, live, leftover int
	var stuck []string
	for _, u := range d.f.Units {
		isLive := LiveState(u.Active)
		if strings.HasPrefix(u.Name, "policy-routes@") && strings.HasSuffix(u.Name, ".service") {
			services++ // what the bug report's `systemctl list-units 'policy-routes@*' | wc -l` counts
		}
		if isLive {
			live++
		}
		if isLive && !u.InterfaceExists {
			stuck = append(stuck, u.Name)
		}
		if !isLive && !u.InterfaceExists && u.Interface != "" {
			leftover++ // a failed/inactive record: runs nothing
		}
		c.Details = append(c.Details, fmt.Sprintf("%s %s/%s (interface %s %s)", u.Name, u.Active, u.Sub, u.Interface, existsWord(u.InterfaceExists)))
	}
	switch {
	case len(stuck) > 0:
		c.Status = StatusProblem
		c.Summary = fmt.Sprintf("%d policy-routes units (%d policy-routes@ services, %d live); %d live for interfaces missing from /sys/class/net: %s",
			len(d.f.Units), services, live, len(stuck), strings.Join(stuck, " "))
		c.Hint = "ec2-policy-routes repair --apply stops, runtime-masks and reset-fails exactly these units (never the @ templates); new task ENIs will keep adding units until the udev override is installed"
	case services > 1 && leftover > 0:
		c.Status = StatusOK
		c.Summary = fmt.Sprintf("%d policy-routes@ services, none live for a missing interface; %d units of missing interfaces are failed or inactive records that run nothing (repair --apply clears them)", services, leftover)
	case services > 1:
		c.Status = StatusOK
		c.Summary = fmt.Sprintf("%d policy-routes@ services, all for existing interfaces (the bug report's >1 heuristic does not apply: each has its interface)", services)
	default:
		c.Status = StatusOK
		c.Summary = fmt.Sprintf("%d policy-routes units (%d policy-routes@ services)", len(d.f.Units), services)
	}
	d.add(c)
}

func existsWord(ok bool) string {
	if ok {
		return "exists"
	}
	return "MISSING"
}

// LiveState is an ACTIVE state that means the unit runs or will run.
func LiveState(active string) bool {
	switch active {
	case "active", "activating", "reloading", "deactivating", "refreshing":
		return true
	}
	return false
}

// UnitInstance returns the unescaped instance of "name@inst.type" (the
// interface of a policy-routes unit), "" for a template.
func UnitInstance(unit string) string {
	at := strings.IndexByte(unit, '@')
	dot := strings.LastIndexByte(unit, '.')
	if at < 0 || dot <= at {
		return ""
	}
	inst := unit[at+1 : dot]
	var b strings.Builder
	for i := 0; i < len(inst); i++ {
		if inst[i] == '\\' && i+3 < len(inst) && inst[i+1] == 'x' {
			if v, err := strconv.ParseUint(inst[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(inst[i])
	}
	return b.String()
}
