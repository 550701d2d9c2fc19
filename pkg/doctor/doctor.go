// Package doctor inspects a host for the amazon-ec2-net-utils failure this
// plugin replaces and for the setup the plugin expects. It automates the
// "Detection" section of the ec2-net-utils bug report (stuck
// setup-policy-routes processes looping on interfaces missing from
// /sys/class/net, lock files whose owner is dead, accumulated
// policy-routes@ units, load average), checks the udev override, the
// iproute2 protocol name and systemd-networkd's foreign-rule setting, and
// lists, per network namespace, the rules and routes this plugin owns.
//
// The host's state is read once into Findings (findings.go: processes,
// lock files, units, the udev override), plain data that the doctor judges
// and `repair` plans from. Files are read with pkg/boundedread (regular
// files only, non-blocking, bounded) and every step honours the context.
//
// Every host path is read below Options.Root, so tests (and post-mortems on
// a copied tree) can point it at a fabricated /proc, /run, /sys and /etc.
package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/boundedread"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
)

// Status is a check's verdict. Only StatusProblem makes the host unhealthy
// (exit code 1).
type Status string

const (
	StatusOK      Status = "ok"
	StatusWarn    Status = "warn"
	StatusProblem Status = "problem"
	StatusSkip    Status = "skip"
)

// Check IDs, stable for JSON and Prometheus consumers.
const (
	CheckProcesses = "setup_policy_routes_processes"
	CheckLocks     = "ec2_net_utils_lock_files"
	CheckUnits     = "policy_routes_units"
	CheckUdev      = "udev_override"
	CheckRtProtos  = "iproute2_protocol_name"
	CheckNetworkd  = "networkd_foreign_rules"
	CheckInstalled = "plugin_installed"
	CheckLoad      = "load_average"
	CheckNetns     = "netns_policy_routing"
)

// Check is one verdict with its evidence and, when not ok, what to do.
type Check struct {
	ID      string   `json:"id"`
	Status  Status   `json:"status"`
	Summary string   `json:"summary"`
	Details []string `json:"details,omitempty"`
	Hint    string   `json:"hint,omitempty"`
}

// Process is one running setup-policy-routes invocation.
type Process struct {
	PID             int    `json:"pid"`
	Action          string `json:"action"`
	Interface       string `json:"interface"`
	InterfaceExists bool   `json:"interface_exists"`
	OwnsLock        bool   `json:"owns_lock"`
}

// LockFile is one ec2-net-utils per-interface lock file.
type LockFile struct {
	Interface       string `json:"interface"`
	Path            string `json:"path"`
	PID             int    `json:"pid"`
	OwnerAlive      bool   `json:"owner_alive"`
	InterfaceExists bool   `json:"interface_exists"`
	Stale           bool   `json:"stale"`
	Reason          string `json:"reason,omitempty"`
}

// Unit is one policy-routes@ / refresh-policy-routes@ systemd unit.
type Unit struct {
	Name            string `json:"name"`
	Load            string `json:"load"`
	Active          string `json:"active"`
	Sub             string `json:"sub"`
	Interface       string `json:"interface"`
	InterfaceExists bool   `json:"interface_exists"`
}

// Load is /proc/loadavg with the CPU count it is judged against.
type Load struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
	CPUs   int     `json:"cpus"`
}

// Namespace is one network namespace holding rules or routes of ours.
type Namespace struct {
	ID           string   `json:"id"` // "dev:inode" of the nsfs inode
	Paths        []string `json:"paths"`
	PIDs         []int    `json:"pids,omitempty"`
	Host         bool     `json:"host,omitempty"`
	Rules        []string `json:"rules"`
	Routes       []string `json:"routes"`
	Tables       []int    `json:"tables"`
	OrphanTables []int    `json:"orphan_tables,omitempty"`
	Error        string   `json:"error,omitempty"`
}

// Report is everything the doctor found.
type Report struct {
	Version           string      `json:"version"`
	Time              time.Time   `json:"time"`
	Hostname          string      `json:"hostname"`
	Root              string      `json:"root"`
	Healthy           bool        `json:"healthy"`
	Problems          int         `json:"problems"`
	Warnings          int         `json:"warnings"`
	Checks            []Check     `json:"checks"`
	Processes         []Process   `json:"setup_policy_routes_processes"`
	LockFiles         []LockFile  `json:"lock_files"`
	Units             []Unit      `json:"units"`
	UnitsListed       bool        `json:"units_listed"`
	Load              *Load       `json:"load,omitempty"`
	NamespacesScanned int         `json:"namespaces_scanned"`
	NamespaceErrors   int         `json:"namespace_errors"`
	Namespaces        []Namespace `json:"namespaces"`
	ECS               *ECSFront   `json:"ecs_front,omitempty"`
}

// Options configures Run and Read.
type Options struct {
	// Root prefixes every host path (/proc, /run, /var/run, /sys, /etc,
	// /usr, /lib, /opt, /amazon-ecs-cni-plugins). "" or "/" is the host.
	Root string
	// Units lists the policy-routes units; nil opens systemd's D-Bus API
	// (pkg/systemd) when Root is the host and systemd runs, else the unit
	// check is skipped.
	Units UnitSource
	// SkipUnits skips the unit check (--systemctl none).
	SkipUnits bool
	// SkipNetns skips the namespace scan.
	SkipNetns bool
	Version   string
	Now       func() time.Time
}

type doctor struct {
	opts Options
	root string
	f    *Findings
	rep  *Report
}

func newDoctor(o Options) (*doctor, error) {
	root := o.Root
	if root == "" {
		root = "/"
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("root %s is not a directory", root)
	}
	return &doctor{opts: o, root: root, f: newFindings(root), rep: &Report{Root: root, Checks: []Check{}}}, nil
}

// Run reads the host's findings once, judges them and returns the report;
// it fails on a bad option or when ctx ends, never because a check could
// not be made (that check is skipped).
func Run(ctx context.Context, o Options) (*Report, error) {
	d, err := newDoctor(o)
	if err != nil {
		return nil, err
	}
	if err := d.read(ctx); err != nil {
		return nil, err
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	host, _ := os.Hostname()
	if d.root != "/" {
		host = ""
	}
	r := d.rep
	r.Version, r.Time, r.Hostname = o.Version, now().UTC(), host
	r.Processes, r.LockFiles, r.Units, r.UnitsListed = d.f.Processes, d.f.LockFiles, d.f.Units, d.f.UnitsListed
	r.Namespaces, r.NamespacesScanned, r.NamespaceErrors = d.f.Netns.Namespaces, d.f.Netns.Scanned, len(d.f.Netns.Errors)
	if r.Namespaces == nil {
		r.Namespaces = []Namespace{}
	}
	if err := d.judge(ctx); err != nil {
		return nil, err
	}
	for _, c := range r.Checks {
		switch c.Status {
		case StatusProblem:
			r.Problems++
		case StatusWarn:
			r.Warnings++
		}
	}
	r.Healthy = r.Problems == 0
	return r, nil
}

// judge runs the checks: verdicts on the findings, and the checks that
// read as they judge (setup files, the ECS front, whose upstream probe is
// an action rather than a read, load).
func (d *doctor) judge(ctx context.Context) error {
	d.processesVerdict()
	d.locksVerdict()
	d.unitsVerdict()
	d.udevVerdict()
	d.checkRtProtos()
	d.checkNetworkd()
	d.checkInstalled()
	d.checkECS(ctx)
	d.checkLoad()
	d.netnsVerdict()
	return ctx.Err()
}

func (d *doctor) add(c Check) { d.rep.Checks = append(d.rep.Checks, c) }

// path maps an absolute host path below the root.
func (d *doctor) path(p string) string { return filepath.Join(d.root, p) }

func (d *doctor) exists(p string) bool {
	_, err := os.Lstat(d.path(p))
	return err == nil
}

// ifaceExists is the bug report's `[ -e /sys/class/net/$iface ]`.
func (d *doctor) ifaceExists(name string) bool {
	if config.ValidateIfName(name) != nil {
		return false
	}
	return d.exists("/sys/class/net/" + name)
}

// readSmall reads a small state or config file below the root: regular
// files only, opened non-blocking (a FIFO never hangs the doctor), at most
// max bytes (a huge sparse file never balloons it).
func (d *doctor) readSmall(p string, max int64) ([]byte, error) {
	return boundedread.File(d.path(p), max)
}
