package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// UnitConfigDir is where `systemctl enable` (not --runtime) puts the
// symlinks that enable a unit: <unit>.wants/ and <unit>.requires/.
const UnitConfigDir = "/etc/systemd/system"

// CheckEnablement judges the enablement ec2-net-utils' udev rule leaves for
// interfaces that are gone.
const CheckEnablement = "policy_routes_enablement"

// maxEnablementEntries bounds the entries read below UnitConfigDir (an
// affected host has one directory per handed-back ENI: thousands, not
// millions).
const maxEnablementEntries = 200000

// EnabledLink is one symlink in /etc/systemd/system/*.wants or *.requires
// that enables a policy-routes@X.service, refresh-policy-routes@X.service or
// refresh-policy-routes@X.timer instance. ec2-net-utils 2.7.x's udev `add`
// runs `systemctl enable`, its `remove` the `disable` that never ran for
// ENIs detached under it; 2.3.0's units have no [Install], so it makes none.
type EnabledLink struct {
	Path            string `json:"path"` // host path
	Unit            string `json:"unit"`
	Interface       string `json:"interface"`
	InterfaceExists bool   `json:"interface_exists"`
}

// UnitDir is one *.wants or *.requires directory in /etc/systemd/system
// named after a policy-routes instance (e.g.
// setup-policy-routes@ecse1a2b3c.service.wants), with the names it holds.
type UnitDir struct {
	Path            string   `json:"path"` // host path
	Interface       string   `json:"interface"`
	InterfaceExists bool     `json:"interface_exists"`
	Entries         []string `json:"entries"`
}

// Enablement is what /etc/systemd/system holds of policy-routes instances.
type Enablement struct {
	Links []EnabledLink `json:"links"`
	Dirs  []UnitDir     `json:"dirs,omitempty"`
	Err   string        `json:"error,omitempty"`
}

// dirPrefixes name the units whose .wants/.requires hold the enabled
// instances (2.7.x's timer is WantedBy=setup-policy-routes@%i.service).
var dirPrefixes = []string{"setup-policy-routes@", "policy-routes@", "refresh-policy-routes@"}

// EnabledUnitName reports whether name is a policy-routes instance (never a
// template) that ec2-net-utils enables.
func EnabledUnitName(name string) bool {
	switch {
	case strings.HasPrefix(name, "policy-routes@") && strings.HasSuffix(name, ".service"),
		strings.HasPrefix(name, "refresh-policy-routes@") && (strings.HasSuffix(name, ".service") || strings.HasSuffix(name, ".timer")):
		return UnitInstance(name) != ""
	}
	return false
}

// UnitDirInstance returns the interface a *.wants/*.requires directory is
// named after ("" unless it is a policy-routes instance's, e.g.
// setup-policy-routes@ecse1a2b3c.service.wants).
func UnitDirInstance(name string) string {
	unit, ok := strings.CutSuffix(name, ".wants")
	if !ok {
		unit, ok = strings.CutSuffix(name, ".requires")
	}
	if !ok || !strings.HasSuffix(unit, ".service") && !strings.HasSuffix(unit, ".timer") {
		return ""
	}
	for _, p := range dirPrefixes {
		if strings.HasPrefix(unit, p) {
			return UnitInstance(unit)
		}
	}
	return ""
}

// readEnablement lists the enablement symlinks of policy-routes instances
// and the directories named after them, without judging.
func (d *doctor) readEnablement(ctx context.Context) error {
	e := &d.f.Enablement
	ents, err := os.ReadDir(d.path(UnitConfigDir))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			e.Err = err.Error()
		}
		return nil
	}
	budget := maxEnablementEntries
	for _, de := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := de.Name()
		if !de.IsDir() || !strings.HasSuffix(name, ".wants") && !strings.HasSuffix(name, ".requires") {
			continue
		}
		if budget -= d.readUnitDir(path.Join(UnitConfigDir, name)); budget < 0 {
			e.Err = fmt.Sprintf("more than %d entries below %s: stopped reading", maxEnablementEntries, UnitConfigDir)
			return nil
		}
	}
	return nil
}

// readUnitDir reads one *.wants/*.requires directory; it returns how many
// entries it held.
func (d *doctor) readUnitDir(dir string) int {
	ents, err := os.ReadDir(d.path(dir))
	if err != nil {
		return 0
	}
	iface := UnitDirInstance(path.Base(dir))
	ud := UnitDir{Path: dir, Interface: iface, Entries: []string{}}
	for _, de := range ents {
		ud.Entries = append(ud.Entries, de.Name())
		if de.Type()&os.ModeSymlink == 0 || !EnabledUnitName(de.Name()) {
			continue
		}
		l := EnabledLink{Path: path.Join(dir, de.Name()), Unit: de.Name(), Interface: UnitInstance(de.Name())}
		l.InterfaceExists = d.ifaceExists(l.Interface)
		d.f.Enablement.Links = append(d.f.Enablement.Links, l)
	}
	if iface != "" {
		ud.InterfaceExists = d.ifaceExists(iface)
		d.f.Enablement.Dirs = append(d.f.Enablement.Dirs, ud)
	}
	return len(ents)
}

// MissingLinks are the enablement links of interfaces missing from
// /sys/class/net.
func (e Enablement) MissingLinks() []EnabledLink {
	var out []EnabledLink
	for _, l := range e.Links {
		if !l.InterfaceExists {
			out = append(out, l)
		}
	}
	return out
}

// enablementVerdict warns about enablement left for missing interfaces:
// nothing runs from it until the next boot or daemon-reload, when systemd
// pulls the units in again for interfaces that will never come back.
func (d *doctor) enablementVerdict() {
	c := Check{ID: CheckEnablement}
	e := d.f.Enablement
	missing := e.MissingLinks()
	ifaces := map[string]bool{}
	for _, l := range missing {
		ifaces[l.Interface] = true
		c.Details = append(c.Details, l.Path)
	}
	switch {
	case len(missing) > 0:
		var ex []string
		for i := 0; i < len(missing) && i < 3; i++ {
			ex = append(ex, missing[i].Path)
		}
		c.Status = StatusWarn
		c.Summary = fmt.Sprintf("%d enablement links in %s for %d interfaces missing from /sys/class/net (ec2-net-utils' udev add enabled them, its remove never disabled them), e.g. %s",
			len(missing), UnitConfigDir, len(ifaces), strings.Join(ex, " "))
		c.Hint = "ec2-policy-routes repair --apply disables exactly these units (never a template, never a present interface's) and removes the emptied <unit>.wants directories named after them"
	case e.Err != "":
		c.Status, c.Summary = StatusWarn, "cannot read "+UnitConfigDir+": "+e.Err
	default:
		c.Status = StatusOK
		c.Summary = fmt.Sprintf("no policy-routes enablement for missing interfaces (%d links for present interfaces)", len(e.Links))
	}
	d.add(c)
}
