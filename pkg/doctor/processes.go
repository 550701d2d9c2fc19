package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// maxCmdline bounds a /proc/PID/cmdline read: setup-policy-routes' argv is
// short, and a longer one is some other program.
const maxCmdline = 64 << 10

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
	b, err := d.readSmall(fmt.Sprintf("/proc/%d/cmdline", pid), maxCmdline)
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

// findProcesses lists the running setup-policy-routes processes.
func (d *doctor) findProcesses(ctx context.Context) (map[int]bool, error) {
	self := os.Getpid()
	running := map[int]bool{}
	for _, pid := range d.pidEntries() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if d.root == "/" && pid == self {
			continue
		}
		iface, action, ok := policyRoutesArgs(d.cmdline(pid))
		if !ok {
			continue
		}
		running[pid] = true
		d.f.Processes = append(d.f.Processes, Process{PID: pid, Action: action, Interface: iface, InterfaceExists: d.ifaceExists(iface)})
	}
	return running, nil
}

// processesVerdict: the bug's signature is a process for an interface
// missing from sysfs.
func (d *doctor) processesVerdict() {
	var missing []string
	seen := map[string]bool{}
	var details []string
	for _, p := range d.f.Processes {
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
			len(d.f.Processes), len(missing), strings.Join(missing, ", "))
		c.Hint = "ec2-policy-routes repair --apply: installs the udev override, stops and runtime-masks the units of the missing interfaces (README: Migrate); or replace the instance"
	case len(d.f.Processes) > 0:
		c.Status = StatusOK
		c.Summary = fmt.Sprintf("%d setup-policy-routes processes, all for existing interfaces", len(d.f.Processes))
	default:
		c.Status = StatusOK
		c.Summary = "no setup-policy-routes process running"
	}
	d.add(c)
}
