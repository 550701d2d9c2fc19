package doctor

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/udevoverride"
)

// UdevRuleName is ec2-net-utils' rule; a file of the same name in
// /etc/udev/rules.d (or /run/udev/rules.d) replaces it.
const UdevRuleName = udevoverride.RuleName

// UdevMarker identifies this project's override (conf/udev).
const UdevMarker = udevoverride.Marker

// maxUdevRule bounds a rule file read.
const maxUdevRule = 64 << 10

// Udev is what the host has of ec2-net-utils' udev rule and its override.
type Udev struct {
	// Vendor is ec2-net-utils' rule, "" when not installed.
	Vendor string `json:"vendor,omitempty"`
	// Override is the file of the same name udev reads instead (/etc
	// first, then /run), "" when none.
	Override string `json:"override,omitempty"`
	// Masked: the override is empty or a link to /dev/null (EKS-style).
	Masked bool `json:"masked,omitempty"`
	// Ours: the override carries this project's marker.
	Ours bool `json:"ours,omitempty"`
	// State is what pkg/udevoverride finds at udevoverride.Path.
	State    udevoverride.State `json:"-"`
	StateStr string             `json:"state"`
	StateErr string             `json:"state_error,omitempty"`
}

// Problem reports the doctor's udev problem: the vendor rule is active and
// nothing overrides it.
func (u Udev) Problem() bool { return u.Override == "" && u.Vendor != "" }

func (d *doctor) readUdev() {
	u := &d.f.Udev
	for _, p := range udevoverride.VendorRules {
		if d.exists(p) {
			u.Vendor = p
			break
		}
	}
	for _, dir := range []string{"/etc/udev/rules.d", "/run/udev/rules.d"} { // udev(7): /etc, then /run, then /usr/lib
		p := filepath.Join(dir, UdevRuleName)
		if !d.exists(p) {
			continue
		}
		u.Override = p
		if target, err := os.Readlink(d.path(p)); err == nil && target == "/dev/null" {
			u.Masked = true
		} else if b, err := d.readSmall(p, maxUdevRule); err == nil {
			content := string(b)
			u.Masked = strings.TrimSpace(content) == ""
			u.Ours = strings.Contains(content, UdevMarker)
		}
		break
	}
	st, err := udevoverride.Inspect(d.root)
	u.State, u.StateStr = st, st.String()
	if err != nil {
		u.StateErr = err.Error()
	}
}

func (d *doctor) udevVerdict() {
	c := Check{ID: CheckUdev}
	u := d.f.Udev
	switch {
	case u.Override != "" && u.Masked:
		c.Status, c.Summary = StatusOK, u.Override+" masks ec2-net-utils' udev rule: it handles no hot-plugged ENI (EKS-style)"
	case u.Override != "" && u.Ours:
		c.Status, c.Summary = StatusOK, u.Override+" (ec2-policy-routes) replaces ec2-net-utils' rule: task ENIs (ecs*, CNI-owned) are left alone"
	case u.Override != "":
		c.Status, c.Summary = StatusWarn, u.Override+" replaces ec2-net-utils' rule with content this doctor does not recognise"
		c.Hint = "check that it skips ecs* interfaces (see conf/udev/" + UdevRuleName + ")"
	case u.Vendor == "":
		c.Status, c.Summary = StatusOK, "ec2-net-utils' udev rule is not installed"
	default:
		c.Status = StatusProblem
		c.Summary = u.Vendor + " is active and not overridden: ec2-net-utils starts policy-routes@ for every task ENI, including the ecs* names vpc-eni hands back on DEL"
		c.Hint = "install /usr/share/ec2-policy-routes/udev/" + UdevRuleName + " as /etc/udev/rules.d/" + UdevRuleName + " and reload udev: ec2-policy-routes repair --apply does it (README: Migrate)"
	}
	d.add(c)
}
