package doctor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// Usage is the doctor's help text.
const Usage = `usage: ec2-policy-routes doctor [--json | --prometheus] [--root DIR] [--systemctl none] [--skip-netns]
       ec2-policy-routes doctor --stale-locks [-0] [--root DIR]
       ec2-policy-routes doctor --stale-locks0 [--root DIR]

Checks this host for the amazon-ec2-net-utils stuck-loop failure and for the
setup ec2-policy-routes expects, and lists per network namespace the rules and
routes the plugin owns (protocol 236). Run as root to read every namespace.
` + "`ec2-policy-routes repair`" + ` plans (and with --apply makes) the cure.

Checks: setup-policy-routes processes waiting for interfaces missing from
/sys/class/net; stale ec2-net-utils lock files (owner dead, PID reused, no PID,
not a regular file); policy-routes@ and refresh-policy-routes@ units (through
systemd's D-Bus API; skipped without systemd or with --systemctl none); whether
ec2-net-utils' udev rule is overridden for task ENIs; the iproute2 protocol name;
systemd-networkd's ManageForeignRoutingPolicyRules; the installed binary; the ECS
front (ECS_CNI_PLUGINS_PATH in /etc/ecs/ecs.config names an ` + "`ecs install`" + `ed front, every
plugin the agent uses resolves there, its upstream answers --capabilities — seen
through the running agent's container — and its binaries match
/opt/cni/bin/ec2-policy-routes); load average.

Output: text (default), --json (one document, for SSM Run Command), or
--prometheus (node_exporter textfile format; write to a temporary file and
rename it into the collector directory). --stale-locks prints the stale lock
files one a line, for ` + "`xargs -r rm -f --`" + `; a name with a blank, quote, backslash
or newline is left out (xargs would split it) and named on stderr: use
--stale-locks0 (or --stale-locks -0), NUL-terminated, for ` + "`xargs -0r rm -f --`" + `.

Files are read non-blocking, regular files only and bounded (a FIFO or a huge
sparse lock file is reported, never waited on); SIGTERM or SIGINT ends it.

Exit status: 0 healthy (warnings allowed), 1 problems found (--stale-locks: a
name was left out), 2 usage error or interrupted.

Flags:
`

// Main runs the doctor CLI and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, version string) int {
	return mainWith(ctx, args, stdout, stderr, version, nil)
}

type cliFlags struct {
	asJSON, asProm, skipNetns, staleLocks, stale0, nul bool
	root, systemctl                                    string
}

// mainWith is Main with the unit source tests fake (nil: systemd).
func mainWith(ctx context.Context, args []string, stdout, stderr io.Writer, version string, units UnitSource) int {
	var c cliFlags
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&c.asProm, "prometheus", false, "print node_exporter textfile metrics")
	fs.StringVar(&c.root, "root", "/", "read host paths (/proc, /run, /sys, /etc, ...) below `DIR` (fixtures, copied trees)")
	fs.StringVar(&c.systemctl, "systemctl", "", "none skips the unit check (units are read through systemd's D-Bus API when --root is /)")
	fs.BoolVar(&c.skipNetns, "skip-netns", false, "do not scan network namespaces")
	fs.BoolVar(&c.staleLocks, "stale-locks", false, "only print the stale ec2-net-utils lock files (owner dead, PID reused, no PID), one path a line, for `xargs -r rm -f --`")
	fs.BoolVar(&c.stale0, "stale-locks0", false, "as --stale-locks, each path NUL-terminated, for `xargs -0r rm -f --`")
	fs.BoolVar(&c.nul, "0", false, "with --stale-locks: NUL-terminated paths (as --stale-locks0)")
	fs.Usage = func() {
		fmt.Fprint(stderr, Usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if msg := c.usageError(fs); msg != "" {
		fmt.Fprintln(stderr, "doctor: "+msg)
		fs.Usage()
		return 2
	}
	if c.staleLocks || c.stale0 {
		return printStaleLocks(ctx, c.root, c.stale0 || c.nul, stdout, stderr)
	}
	rep, err := Run(ctx, Options{Root: c.root, Units: units, SkipUnits: c.systemctl == "none", SkipNetns: c.skipNetns, Version: version})
	if err != nil {
		fmt.Fprintf(stderr, "doctor: %v\n", Interrupted(ctx, err))
		return 2
	}
	return c.write(rep, stdout, stderr)
}

func (c *cliFlags) usageError(fs *flag.FlagSet) string {
	switch {
	case fs.NArg() > 0:
		return fmt.Sprintf("unexpected argument %q", fs.Arg(0))
	case c.asJSON && c.asProm:
		return "--json and --prometheus are exclusive"
	case c.systemctl != "" && c.systemctl != "none":
		return "--systemctl takes only none: units are read through systemd's D-Bus API"
	case c.nul && !c.staleLocks && !c.stale0:
		return "-0 goes with --stale-locks"
	}
	return ""
}

func (c *cliFlags) write(rep *Report, stdout, stderr io.Writer) int {
	var err error
	switch {
	case c.asJSON:
		err = WriteJSON(stdout, rep)
	case c.asProm:
		err = WritePrometheus(stdout, rep)
	default:
		err = WriteText(stdout, rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "doctor: %v\n", err)
		return 2
	}
	if !rep.Healthy {
		return 1
	}
	return 0
}

// Interrupted names a cancellation as what it is (doctor and repair).
func Interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted (%w)", ctx.Err())
	}
	return err
}

// xargsUnsafe are the bytes xargs without -0 splits or interprets.
const xargsUnsafe = " \t\n\v\f\r'\"\\"

// printStaleLocks lists the lock files nobody holds any more: their owner is
// dead or its PID now runs another program. A lock whose owner is a live
// setup-policy-routes, however it was started, is never listed.
func printStaleLocks(ctx context.Context, root string, nul bool, stdout, stderr io.Writer) int {
	f, err := Read(ctx, Options{Root: root, SkipUnits: true})
	if err != nil {
		fmt.Fprintf(stderr, "doctor: %v\n", Interrupted(ctx, err))
		return 2
	}
	code := 0
	var b strings.Builder
	for _, lf := range f.Stale() {
		p := filepath.Join(root, lf.Path)
		switch {
		case nul:
			b.WriteString(p + "\x00")
		case strings.ContainsAny(p, xargsUnsafe):
			fmt.Fprintf(stderr, "doctor: %q left out: xargs would split it; use --stale-locks0 | xargs -0r rm -f --\n", p)
			code = 1
		default:
			b.WriteString(p + "\n")
		}
	}
	if _, err := io.WriteString(stdout, b.String()); err != nil {
		fmt.Fprintf(stderr, "doctor: %v\n", err)
		return 2
	}
	return code
}
