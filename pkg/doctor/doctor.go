// Package doctor inspects a host for the amazon-ec2-net-utils failure this
// plugin replaces and for the setup the plugin expects. It automates the
// "Detection" section of the ec2-net-utils bug report (stuck
// setup-policy-routes processes looping on interfaces missing from
// /sys/class/net, lock files whose owner is dead, accumulated
// policy-routes@ units, load average), checks the udev override, the
// iproute2 protocol name and systemd-networkd's foreign-rule setting, and
// lists, per network namespace, the rules and routes this plugin owns.
//
// Every host path is read below Options.Root, so tests (and post-mortems on
// a copied tree) can point it at a fabricated /proc, /run, /sys and /etc.
package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

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

// Options configures Run.
type Options struct {
	// Root prefixes every host path (/proc, /run, /var/run, /sys, /etc,
	// /usr, /lib, /opt, /amazon-ecs-cni-plugins). "" or "/" is the host.
	Root string
	// Systemctl is the systemctl binary; "" looks it up in PATH when Root
	// is the host, "none" skips the unit check.
	Systemctl string
	// SkipNetns skips the namespace scan.
	SkipNetns bool
	Version   string
	Now       func() time.Time
}

type doctor struct {
	opts Options
	root string
	rep  *Report
}

// Run inspects the host and returns the report; it fails only on a bad
// option, never because a check could not be made (that check is skipped).
func Run(ctx context.Context, o Options) (*Report, error) {
	root := o.Root
	if root == "" {
		root = "/"
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("root %s is not a directory", root)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	host, _ := os.Hostname()
	if root != "/" {
		host = ""
	}
	d := &doctor{opts: o, root: root, rep: &Report{Version: o.Version, Time: now().UTC(), Hostname: host, Root: root,
		Processes: []Process{}, LockFiles: []LockFile{}, Units: []Unit{}, Namespaces: []Namespace{}}}
	d.checkProcessesAndLocks()
	d.checkUnits(ctx)
	d.checkUdev()
	d.checkRtProtos()
	d.checkNetworkd()
	d.checkInstalled()
	d.checkECS(ctx)
	d.checkLoad()
	if o.SkipNetns {
		d.add(Check{ID: CheckNetns, Status: StatusSkip, Summary: "namespace scan skipped (--skip-netns)"})
	} else {
		d.checkNetns()
	}
	for _, c := range d.rep.Checks {
		switch c.Status {
		case StatusProblem:
			d.rep.Problems++
		case StatusWarn:
			d.rep.Warnings++
		}
	}
	d.rep.Healthy = d.rep.Problems == 0
	return d.rep, nil
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

const lockDir = "/run/amazon-ec2-net-utils/setup-policy-routes"

// pidEntries lists the numeric entries of /proc.
func (d *doctor) pidEntries() []int {
	ents, err := os.ReadDir(d.path("/proc"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

func (d *doctor) cmdline(pid int) []string {
	b, err := os.ReadFile(d.path(fmt.Sprintf("/proc/%d/cmdline", pid)))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// policyRoutesArgs finds "setup-policy-routes <iface> <action>" in argv,
// run directly, through an interpreter with its options ("/bin/bash -x
// /usr/bin/setup-policy-routes ens6 start", "sh -c 'setup-policy-routes …'")
// or through wrappers (env with assignments, nice, nohup, setsid, ionice,
// timeout, exec); a `grep setup-policy-routes` or an editor on the file is
// not a match.
func policyRoutesArgs(argv []string) (iface, action string, ok bool) {
	return policyRoutesArgsDepth(argv, 0)
}

func policyRoutesArgsDepth(argv []string, depth int) (iface, action string, ok bool) {
	argv = skipWrappers(argv)
	if len(argv) > 0 && isShell(argv[0]) {
		rest, script, isC := shellOperands(argv[1:])
		if isC {
			if depth > 3 {
				return "", "", false
			}
			return policyRoutesArgsDepth(strings.Fields(script), depth+1)
		}
		argv = rest
	}
	if len(argv) == 0 {
		return "", "", false
	}
	base := filepath.Base(argv[0])
	if base != "setup-policy-routes" && base != "setup-policy-routes.sh" {
		return "", "", false
	}
	if len(argv) > 1 {
		iface = argv[1]
	}
	if len(argv) > 2 {
		action = argv[2]
	}
	return iface, action, true
}

func isShell(arg0 string) bool {
	switch filepath.Base(arg0) {
	case "bash", "sh", "dash", "ash", "ksh", "mksh", "zsh":
		return true
	}
	return false
}

// wrappers lists, per wrapper command, the options that take a separate
// argument; positional says how many operands precede the command.
var wrappers = map[string]struct {
	optArgs    []string
	positional int
}{
	"env":     {optArgs: []string{"-u", "--unset", "-C", "--chdir"}},
	"exec":    {optArgs: []string{"-a"}},
	"nice":    {optArgs: []string{"-n", "--adjustment"}},
	"nohup":   {},
	"setsid":  {},
	"ionice":  {optArgs: []string{"-c", "--class", "-n", "--classdata"}},
	"timeout": {optArgs: []string{"-s", "--signal", "-k", "--kill-after"}, positional: 1},
	"busybox": {},
}

// skipWrappers drops leading wrapper commands with their options (and env's
// NAME=VALUE assignments).
func skipWrappers(argv []string) []string {
	for len(argv) > 0 {
		w, ok := wrappers[filepath.Base(argv[0])]
		if !ok {
			return argv
		}
		argv = argv[1:]
		for len(argv) > 0 {
			a := argv[0]
			switch {
			case a == "--":
				argv = argv[1:]
			case strings.HasPrefix(a, "-") && len(a) > 1:
				argv = argv[1:]
				if slices.Contains(w.optArgs, a) && len(argv) > 0 {
					argv = argv[1:]
				}
				continue
			case strings.Contains(a, "=") && !strings.HasPrefix(a, "/"):
				argv = argv[1:] // env NAME=VALUE
				continue
			}
			break
		}
		if w.positional > 0 && len(argv) > 0 {
			argv = argv[w.positional:]
		}
	}
	return argv
}

// shellOperands skips an interpreter's options (-x, -ex, +o name, --norc,
// --rcfile file, ...) and returns the operands; with -c it returns the
// command string instead.
func shellOperands(args []string) (rest []string, script string, isC bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--" || a == "-":
			return args[i+1:], "", false
		case a == "-o" || a == "+o" || a == "-O" || a == "+O" || a == "--rcfile" || a == "--init-file":
			i++
		case strings.HasPrefix(a, "--"):
		case strings.HasPrefix(a, "-") || strings.HasPrefix(a, "+"):
			if strings.HasPrefix(a, "-") && strings.Contains(a, "c") {
				isC = true
			}
		default:
			if isC {
				return nil, a, true
			}
			return args[i:], "", false
		}
	}
	return nil, "", false
}

func (d *doctor) checkProcessesAndLocks() {
	running := d.findProcesses()
	lockDirErr := d.readLockFiles(running)
	d.processesVerdict()
	d.locksVerdict(lockDirErr)
}

// findProcesses lists the running setup-policy-routes processes.
func (d *doctor) findProcesses() map[int]bool {
	self := os.Getpid()
	running := map[int]bool{}
	for _, pid := range d.pidEntries() {
		if d.root == "/" && pid == self {
			continue
		}
		iface, action, ok := policyRoutesArgs(d.cmdline(pid))
		if !ok {
			continue
		}
		running[pid] = true
		d.rep.Processes = append(d.rep.Processes, Process{PID: pid, Action: action, Interface: iface, InterfaceExists: d.ifaceExists(iface)})
	}
	return running
}

// readLockFiles reads ec2-net-utils' lock files,
// /run/amazon-ec2-net-utils/setup-policy-routes/<iface>, holding the
// owner's PID (bash noclobber, never cleaned on death), and marks the
// processes that own one.
func (d *doctor) readLockFiles(running map[int]bool) error {
	owners := map[int]string{}
	ents, err := os.ReadDir(d.path(lockDir))
	lockDirErr := err
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		lf := d.lockFile(e.Name(), running)
		if lf.PID != 0 {
			owners[lf.PID] = e.Name()
		}
		d.rep.LockFiles = append(d.rep.LockFiles, lf)
	}
	for i := range d.rep.Processes {
		p := &d.rep.Processes[i]
		p.OwnsLock = owners[p.PID] == p.Interface
	}
	return lockDirErr
}

// lockFile reads one lock file and judges it.
func (d *doctor) lockFile(name string, running map[int]bool) LockFile {
	lf := LockFile{Interface: name, Path: filepath.Join(lockDir, name), InterfaceExists: d.ifaceExists(name)}
	b, err := os.ReadFile(d.path(lf.Path))
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	switch {
	case err != nil:
		lf.Reason = "unreadable: " + err.Error()
	case perr != nil || pid <= 0:
		lf.Stale, lf.Reason = true, fmt.Sprintf("holds no PID (%q)", strings.TrimSpace(string(b)))
	default:
		lf.PID = pid
		lf.OwnerAlive = d.exists(fmt.Sprintf("/proc/%d", pid))
		switch {
		case !lf.OwnerAlive:
			lf.Stale, lf.Reason = true, fmt.Sprintf("owner PID %d is dead", pid)
		case !running[pid]:
			// PID reused by an unrelated process: as stale as a dead one.
			lf.Stale, lf.Reason = true, fmt.Sprintf("PID %d is alive but is not setup-policy-routes (PID reused)", pid)
		case !lf.InterfaceExists:
			lf.Reason = fmt.Sprintf("owner PID %d is alive, looping on a missing interface", pid)
		default:
			lf.Reason = fmt.Sprintf("held by PID %d", pid)
		}
	}
	return lf
}

// processesVerdict: the bug's signature is a process for an interface
// missing from sysfs.
func (d *doctor) processesVerdict() {
	var missing []string
	seen := map[string]bool{}
	var details []string
	for _, p := range d.rep.Processes {
		state := "exists"
		if !p.InterfaceExists {
			state = "MISSING from /sys/class/net"
			if !seen[p.Interface] {
				seen[p.Interface] = true
				missing = append(missing, p.Interface)
			}
		}
		role := "waiting for lock"
		if p.OwnsLock {
			role = "owns lock"
		}
		details = append(details, fmt.Sprintf("pid %d: %s %s (%s, %s)", p.PID, p.Action, p.Interface, state, role))
	}
	c := Check{ID: CheckProcesses, Details: details}
	switch {
	case len(missing) > 0:
		c.Status = StatusProblem
		c.Summary = fmt.Sprintf("%d setup-policy-routes processes, %d for interfaces missing from /sys/class/net (%s): the ec2-net-utils stuck-loop bug",
			len(d.rep.Processes), len(missing), strings.Join(missing, ", "))
		c.Hint = "stop and mask the units of the missing interfaces (systemctl stop/mask 'policy-routes@IF.service' 'refresh-policy-routes@IF.timer' 'refresh-policy-routes@IF.service'), install the udev override (README: Migrate), or replace the instance"
	case len(d.rep.Processes) > 0:
		c.Status = StatusOK
		c.Summary = fmt.Sprintf("%d setup-policy-routes processes, all for existing interfaces", len(d.rep.Processes))
	default:
		c.Status = StatusOK
		c.Summary = "no setup-policy-routes process running"
	}
	d.add(c)
}

// locksVerdict judges the lock files readLockFiles found.
func (d *doctor) locksVerdict(lockDirErr error) {
	lc := Check{ID: CheckLocks}
	var stale, stuck int
	for _, lf := range d.rep.LockFiles {
		lc.Details = append(lc.Details, fmt.Sprintf("%s: %s", lf.Path, lf.Reason))
		if lf.Stale {
			stale++
		} else if lf.OwnerAlive && !lf.InterfaceExists {
			stuck++
		}
	}
	switch {
	case errors.Is(lockDirErr, fs.ErrNotExist):
		lc.Status, lc.Summary = StatusOK, "no ec2-net-utils lock directory ("+lockDir+")"
	case lockDirErr != nil:
		lc.Status, lc.Summary = StatusWarn, fmt.Sprintf("cannot read %s: %v", lockDir, lockDirErr)
	case stale > 0 || stuck > 0:
		lc.Status = StatusProblem
		lc.Summary = fmt.Sprintf("%d lock files: %d stale (owner dead or PID reused), %d held by processes looping on missing interfaces", len(d.rep.LockFiles), stale, stuck)
		lc.Hint = "every refresh of these interfaces spins up to 1000 s on the lock; stop the units (see " + CheckProcesses + "), then remove the stale files: ec2-policy-routes doctor --stale-locks | xargs -r rm -f --"
	default:
		lc.Status, lc.Summary = StatusOK, fmt.Sprintf("%d lock files, all held by live setup-policy-routes for existing interfaces", len(d.rep.LockFiles))
	}
	d.add(lc)
}

// systemctl returns the binary to run, or "" to skip the check.
func (d *doctor) systemctl() string {
	switch s := d.opts.Systemctl; {
	case s == "none":
		return ""
	case s != "":
		return s
	case d.root != "/":
		return "" // a fixture tree has no systemd to ask
	case !d.exists("/run/systemd/system"):
		return "" // sd_booted(): systemd is not the init system here
	}
	p, err := exec.LookPath("systemctl")
	if err != nil {
		return ""
	}
	return p
}

func (d *doctor) checkUnits(ctx context.Context) {
	bin := d.systemctl()
	c := Check{ID: CheckUnits}
	if bin == "" {
		c.Status, c.Summary = StatusSkip, "systemctl not available or systemd not running; unit check skipped"
		d.add(c)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "list-units", "--all", "--plain", "--no-legend", "--no-pager", "--full",
		"policy-routes@*", "refresh-policy-routes@*")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.Status, c.Summary = StatusWarn, fmt.Sprintf("systemctl list-units failed: %v: %s", err, strings.Join(strings.Fields(stderr.String()), " "))
		d.add(c)
		return
	}
	d.rep.UnitsListed = true
	d.rep.Units = parseUnits(string(out), d.ifaceExists)
	var services, live int
	var stuck []string
	for _, u := range d.rep.Units {
		isLive := liveState(u.Active)
		if strings.HasPrefix(u.Name, "policy-routes@") && strings.HasSuffix(u.Name, ".service") {
			services++ // what the bug report's `systemctl list-units 'policy-routes@*' | wc -l` counts
		}
		if isLive {
			live++
		}
		if isLive && !u.InterfaceExists {
			stuck = append(stuck, u.Name)
		}
		c.Details = append(c.Details, fmt.Sprintf("%s %s/%s (interface %s %s)", u.Name, u.Active, u.Sub, u.Interface, existsWord(u.InterfaceExists)))
	}
	switch {
	case len(stuck) > 0:
		c.Status = StatusProblem
		c.Summary = fmt.Sprintf("%d policy-routes units (%d policy-routes@ services, %d live); %d live for interfaces missing from /sys/class/net: %s",
			len(d.rep.Units), services, live, len(stuck), strings.Join(stuck, " "))
		c.Hint = "systemctl stop then mask exactly these units (not the @ templates); new task ENIs will keep adding units until the udev override is installed"
	case services > 1:
		c.Status = StatusOK
		c.Summary = fmt.Sprintf("%d policy-routes@ services, all for existing interfaces (the bug report's >1 heuristic does not apply: each has its interface)", services)
	default:
		c.Status = StatusOK
		c.Summary = fmt.Sprintf("%d policy-routes units (%d policy-routes@ services)", len(d.rep.Units), services)
	}
	d.add(c)
}

func existsWord(ok bool) string {
	if ok {
		return "exists"
	}
	return "MISSING"
}

// liveState is an ACTIVE column that means the unit runs or will run.
func liveState(active string) bool {
	switch active {
	case "active", "activating", "reloading", "deactivating", "refreshing":
		return true
	}
	return false
}

// parseUnits reads `systemctl list-units --plain --no-legend` lines:
// UNIT LOAD ACTIVE SUB DESCRIPTION..., failed units may carry a leading ●.
func parseUnits(out string, exists func(string) bool) []Unit {
	units := []Unit{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "●" || f[0] == "*" || f[0] == "○") {
			f = f[1:]
		}
		if len(f) < 4 || !strings.Contains(f[0], "policy-routes@") {
			continue
		}
		u := Unit{Name: f[0], Load: f[1], Active: f[2], Sub: f[3], Interface: unitInstance(f[0])}
		u.InterfaceExists = exists(u.Interface)
		units = append(units, u)
	}
	return units
}

// unitInstance returns the unescaped instance of "name@inst.type".
func unitInstance(unit string) string {
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

// UdevRuleName is ec2-net-utils' rule; a file of the same name in
// /etc/udev/rules.d (or /run/udev/rules.d) replaces it.
const UdevRuleName = "99-vpc-policy-routes.rules"

// UdevMarker identifies this project's override (conf/udev).
const UdevMarker = "ec2-policy-routes"

func (d *doctor) checkUdev() {
	c := Check{ID: CheckUdev}
	var vendor string
	for _, dir := range []string{"/usr/lib/udev/rules.d", "/lib/udev/rules.d"} {
		if d.exists(filepath.Join(dir, UdevRuleName)) {
			vendor = filepath.Join(dir, UdevRuleName)
			break
		}
	}
	var override, content string
	var masked bool
	for _, dir := range []string{"/etc/udev/rules.d", "/run/udev/rules.d"} { // udev(7): /etc, then /run, then /usr/lib
		p := filepath.Join(dir, UdevRuleName)
		if !d.exists(p) {
			continue
		}
		override = p
		if target, err := os.Readlink(d.path(p)); err == nil && target == "/dev/null" {
			masked = true
		} else if b, err := os.ReadFile(d.path(p)); err == nil {
			content = string(b)
			masked = strings.TrimSpace(content) == ""
		}
		break
	}
	switch {
	case override != "" && masked:
		c.Status, c.Summary = StatusOK, override+" masks ec2-net-utils' udev rule: it handles no hot-plugged ENI (EKS-style)"
	case override != "" && strings.Contains(content, UdevMarker):
		c.Status, c.Summary = StatusOK, override+" (ec2-policy-routes) replaces ec2-net-utils' rule: task ENIs (ecs*, CNI-owned) are left alone"
	case override != "":
		c.Status, c.Summary = StatusWarn, override+" replaces ec2-net-utils' rule with content this doctor does not recognise"
		c.Hint = "check that it skips ecs* interfaces (see conf/udev/" + UdevRuleName + ")"
	case vendor == "":
		c.Status, c.Summary = StatusOK, "ec2-net-utils' udev rule is not installed"
	default:
		c.Status = StatusProblem
		c.Summary = vendor + " is active and not overridden: ec2-net-utils starts policy-routes@ for every task ENI, including the ecs* names vpc-eni hands back on DEL"
		c.Hint = "install /usr/share/ec2-policy-routes/udev/" + UdevRuleName + " as /etc/udev/rules.d/" + UdevRuleName + " and run udevadm control --reload (README: Migrate)"
	}
	d.add(c)
}

// RtProtosFile is where the package installs the protocol name.
const RtProtosFile = "/etc/iproute2/rt_protos.d/ec2-policy-routes.conf"

func (d *doctor) checkRtProtos() {
	c := Check{ID: CheckRtProtos}
	for _, p := range []string{RtProtosFile, "/usr/share/iproute2/rt_protos.d/ec2-policy-routes.conf", "/usr/lib/iproute2/rt_protos.d/ec2-policy-routes.conf"} {
		if b, err := os.ReadFile(d.path(p)); err == nil && protoNamed(string(b)) {
			c.Status, c.Summary = StatusOK, p+" names protocol 236"
			d.add(c)
			return
		}
	}
	c.Status = StatusWarn
	c.Summary = "protocol 236 has no name: ip rule / ip route show \"proto 236\" instead of \"proto ec2-policy-routes\""
	c.Hint = "install conf/iproute2/rt_protos.d/ec2-policy-routes.conf as " + RtProtosFile
	d.add(c)
}

func protoNamed(s string) bool {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "236" {
			return true
		}
	}
	return false
}

func (d *doctor) checkNetworkd() {
	c := Check{ID: CheckNetworkd}
	present := false
	for _, p := range []string{"/usr/lib/systemd/systemd-networkd", "/lib/systemd/systemd-networkd"} {
		if d.exists(p) {
			present = true
		}
	}
	if !present {
		c.Status, c.Summary = StatusSkip, "systemd-networkd not installed"
		d.add(c)
		return
	}
	// networkd.conf, then drop-ins in lexical order across dirs, last wins.
	value, from := "", ""
	files := []string{"/usr/lib/systemd/networkd.conf", "/etc/systemd/networkd.conf"}
	dropins := map[string]string{}
	for _, dir := range []string{"/usr/lib/systemd/networkd.conf.d", "/run/systemd/networkd.conf.d", "/etc/systemd/networkd.conf.d"} {
		ents, _ := os.ReadDir(d.path(dir))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".conf") {
				dropins[e.Name()] = filepath.Join(dir, e.Name()) // later dir of same name wins
			}
		}
	}
	names := make([]string, 0, len(dropins))
	for n := range dropins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, dropins[n])
	}
	for _, f := range files {
		b, err := os.ReadFile(d.path(f))
		if err != nil {
			continue
		}
		if v, ok := iniValue(string(b), "Network", "ManageForeignRoutingPolicyRules"); ok {
			value, from = v, f
		}
	}
	switch strings.ToLower(value) {
	case "no", "false", "0", "off":
		c.Status, c.Summary = StatusOK, "ManageForeignRoutingPolicyRules=no ("+from+")"
	default:
		c.Status = StatusWarn
		c.Summary = "systemd-networkd manages foreign routing policy rules (ManageForeignRoutingPolicyRules not set to no): a reconfigure may delete rules it did not create in the host namespace"
		c.Hint = "install conf/systemd/networkd.conf.d/ec2-policy-routes.conf in /etc/systemd/networkd.conf.d/"
	}
	d.add(c)
}

// iniValue returns the last value of key in [section] of a systemd INI file.
func iniValue(s, section, key string) (string, bool) {
	cur, val, ok := "", "", false
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' && strings.HasSuffix(line, "]") {
			cur = line[1 : len(line)-1]
			continue
		}
		k, v, found := strings.Cut(line, "=")
		if found && cur == section && strings.TrimSpace(k) == key {
			val, ok = strings.TrimSpace(v), true
		}
	}
	return val, ok
}

// PluginPaths are where runtimes look for the binary.
var PluginPaths = []string{"/opt/cni/bin/ec2-policy-routes", "/amazon-ecs-cni-plugins/ec2-policy-routes"}

func (d *doctor) checkInstalled() {
	c := Check{ID: CheckInstalled}
	var found []string
	for _, p := range PluginPaths {
		if st, err := os.Stat(d.path(p)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			found = append(found, p)
		}
	}
	if len(found) > 0 {
		c.Status, c.Summary = StatusOK, "plugin binary at "+strings.Join(found, ", ")
	} else {
		c.Status = StatusWarn
		c.Summary = "no executable plugin binary at " + strings.Join(PluginPaths, " or ")
		c.Hint = "install the package, or copy bin/ec2-policy-routes to the runtime's CNI bin directory"
	}
	d.add(c)
}

func (d *doctor) checkLoad() {
	c := Check{ID: CheckLoad}
	b, err := os.ReadFile(d.path("/proc/loadavg"))
	f := strings.Fields(string(b))
	if err != nil || len(f) < 3 {
		c.Status, c.Summary = StatusSkip, "cannot read /proc/loadavg"
		d.add(c)
		return
	}
	l := &Load{}
	l.Load1, _ = strconv.ParseFloat(f[0], 64)
	l.Load5, _ = strconv.ParseFloat(f[1], 64)
	l.Load15, _ = strconv.ParseFloat(f[2], 64)
	l.CPUs = d.cpus()
	d.rep.Load = l
	c.Summary = fmt.Sprintf("load average %.2f %.2f %.2f on %d CPUs", l.Load1, l.Load5, l.Load15, l.CPUs)
	// The bug report's hosts: load ~107 with 112 stuck units, 414 on 8 vCPUs.
	// Twice the CPU count sustained over 15 minutes is worth a look; it is
	// a warning, not a verdict, since many things load a host.
	if l.CPUs > 0 && l.Load15 > 2*float64(l.CPUs) {
		c.Status = StatusWarn
		c.Summary += ": above twice the CPU count"
		c.Hint = "if setup-policy-routes processes are stuck (see above), they and the security sensors tracing their syscalls are a likely cause"
	} else {
		c.Status = StatusOK
	}
	d.add(c)
}

// cpus counts "cpuN" lines of /proc/stat (present in fixtures too).
func (d *doctor) cpus() int {
	b, err := os.ReadFile(d.path("/proc/stat"))
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) > 3 && strings.HasPrefix(line, "cpu") && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return n
}
