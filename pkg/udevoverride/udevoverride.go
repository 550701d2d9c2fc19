// Package udevoverride owns /etc/udev/rules.d/99-vpc-policy-routes.rules, the
// project's replacement for ec2-net-utils' udev rule (same name, so udev
// reads it instead of /usr/lib/udev/rules.d's). It decides whether the file
// there is ours and places or removes it; it never touches a file someone
// else put there (an operator's own rule, or the EKS AMI's empty mask).
// Reloading udev is the caller's business.
package udevoverride

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ec2-policy-routes/ec2-policy-routes/conf"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/atomicfile"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/boundedread"
)

// RuleName is ec2-net-utils' rule's file name; a file of the same name in
// /etc/udev/rules.d replaces it.
const RuleName = "99-vpc-policy-routes.rules"

// Path is where the override lives on a host.
const Path = "/etc/udev/rules.d/" + RuleName

// VendorRules are where ec2-net-utils installs the rule the override
// replaces, in the order udev looks: without one there is nothing to
// override.
var VendorRules = []string{"/usr/lib/udev/rules.d/" + RuleName, "/lib/udev/rules.d/" + RuleName}

// Marker identifies a file this project wrote (any version of it).
const Marker = "ec2-policy-routes"

// maxSize bounds the read: our rule is a few KiB; anything far larger is
// not ours.
const maxSize = 64 << 10

// ErrForeign is returned by Place when a file that is not ours is there.
var ErrForeign = errors.New("foreign udev rule in place")

// State is what is at Path.
type State int

const (
	// Absent: nothing at Path.
	Absent State = iota
	// Ours: a regular file identical to the embedded rule.
	Ours
	// OursOutdated: a regular file with our marker but other content (an
	// older or newer release's rule).
	OursOutdated
	// Foreign: anything else (another rule, an empty mask, a symlink, a
	// non-regular file).
	Foreign
)

func (s State) String() string {
	switch s {
	case Absent:
		return "absent"
	case Ours:
		return "ours"
	case OursOutdated:
		return "ours-outdated"
	case Foreign:
		return "foreign"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Rule returns the embedded rule (a copy: callers may not change ours).
func Rule() []byte { return bytes.Clone(conf.UdevRule) }

func hostPath(root string) string {
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, Path)
}

// Inspect reports what is at Path under root ("" is "/").
func Inspect(root string) (State, error) {
	p := hostPath(root)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Absent, nil
	}
	if err != nil {
		return Foreign, err
	}
	if !fi.Mode().IsRegular() {
		return Foreign, nil
	}
	b, err := boundedread.File(p, maxSize)
	switch {
	case errors.Is(err, boundedread.ErrTooLarge), errors.Is(err, boundedread.ErrNotRegular):
		return Foreign, nil // replaced between Lstat and open, or huge: not ours
	case err != nil:
		return Foreign, err
	}
	return classify(b), nil
}

func classify(b []byte) State {
	switch {
	case bytes.Equal(b, conf.UdevRule):
		return Ours
	case bytes.Contains(b, []byte(Marker)):
		return OursOutdated
	}
	return Foreign
}

// Place writes the embedded rule at Path unless it is already there. An
// absent or outdated rule of ours is (re)written atomically; a foreign file
// is left untouched and reported as ErrForeign.
func Place(root string) (changed bool, err error) {
	st, err := Inspect(root)
	if err != nil {
		return false, err
	}
	p := hostPath(root)
	switch st {
	case Ours:
		return false, nil
	case Foreign:
		return false, fmt.Errorf("%s: %w (left as it is)", p, ErrForeign)
	}
	if err := writeAtomic(p, conf.UdevRule); err != nil {
		return false, err
	}
	return true, nil
}

// writeAtomic writes b as p (root-owned when we are root) through
// atomicfile, so udev never reads a half-written rule; its temporary name
// does not end in .rules, so udev ignores it meanwhile.
func writeAtomic(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		uid, gid = 0, 0
	}
	return atomicfile.Write(p, b, 0o644, uid, gid)
}

// Remove deletes the rule at Path if it is ours (current or outdated). A
// foreign file or nothing at all is left: (false, nil).
func Remove(root string) (removed bool, err error) {
	st, err := Inspect(root)
	if err != nil {
		return false, err
	}
	if st != Ours && st != OursOutdated {
		return false, nil
	}
	if err := os.Remove(hostPath(root)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
