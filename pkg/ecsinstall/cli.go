package ecsinstall

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/udevoverride"
)

// Usage is the `ecs` subcommand's help text.
const Usage = `usage: ec2-policy-routes ecs install   [--dir DIR] [--upstream UP] [--config FILE] [--write] [--ecs-config PATH] [--force] [--no-udev-override]
       ec2-policy-routes ecs uninstall [--dir DIR] [--write] [--ecs-config PATH] [--no-udev-override]
       ec2-policy-routes ecs refresh   [--dir DIR] [--ecs-config PATH] [--quiet]

install: lays out DIR (default ` + ecsfront.DefaultInstallDir + `) for the stock ECS agent's
ECS_CNI_PLUGINS_PATH: vpc-eni and vpc-branch-eni are copies of this binary (the front: it
runs UP/<name>, then adds the policy routing), every other plugin of UP (default
` + ecsfront.DefaultUpstreamDir + `, as the agent's container sees it) is a symlink to
UP/<name>, and ` + ecsfront.SettingsFile + ` holds the front's settings (FILE: JSON with
upstream and the plugin's fields linkTimeout, tableBase, priority, logFile, logLevel, imds;
IMDS is off unless FILE enables it).
UP is verified where this host can see it: directly, or through the running agent's
container (/proc/<pid>/root). DIR is resolved (symlinks) first. A DIR holding entries not
ours is refused, naming them (--force: lay out next to them, never touching them).
Without --upstream, an ` + ecsfront.PluginsPathVar + ` that ecs.config sets to another directory is UP.
Idempotent. Prints the ecs.config line; --write sets it (lines it replaces are recorded).
Places the udev override ` + udevoverride.Path + ` where ec2-net-utils' rule is
installed (never over a file not ours) unless --no-udev-override.
uninstall: removes what install recorded (still as made), then DIR if empty; --write drops
the line and puts back what install replaced; removes the udev override if install placed it.
refresh: rewrites the fronts of existing installs with this binary (the package's
post-install runs it on upgrade); never creates an install.
Then restart the agent: ` + RestartStep + `

Flags:
`

// Main runs `ec2-policy-routes ecs ...` and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, Usage)
		return 2
	}
	verb, run := args[0], map[string]func(context.Context, Options) error{
		"install": Install, "uninstall": Uninstall, "refresh": Refresh,
	}[args[0]]
	if verb == "--help" || verb == "-h" || verb == "help" {
		fmt.Fprint(stdout, Usage)
		return 0
	}
	if run == nil {
		fmt.Fprintf(stderr, "ecs: unknown command %q\n\n%s", verb, Usage)
		return 2
	}
	o := Options{Out: stdout}
	fs := flag.NewFlagSet("ecs "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Dir, "dir", "", "install `DIR` (default "+ecsfront.DefaultInstallDir+")")
	fs.StringVar(&o.ECSConfig, "ecs-config", ecsfront.ECSConfig, "the agent's config `file`")
	fs.StringVar(&o.Proc, "proc", "/proc", "the host's proc `dir` (where the running agent is looked for)")
	noUdev := false
	if verb != "refresh" {
		fs.StringVar(&o.UdevRoot, "root", "/", "the host's root `dir` for the udev override (tests: a fixture tree)")
		fs.BoolVar(&noUdev, "no-udev-override", false, "leave the udev override alone")
	}
	if verb == "install" {
		fs.StringVar(&o.Upstream, "upstream", "", "`UP`, the real plugins as the agent's container sees them (default: the settings' upstream, else "+ecsfront.DefaultUpstreamDir+")")
		fs.StringVar(&o.ConfigFile, "config", "", "front settings JSON `FILE`")
		fs.BoolVar(&o.Force, "force", false, "lay out next to entries of DIR that are not ours (they are left as they are)")
	}
	if verb == "refresh" {
		fs.BoolVar(&o.Quiet, "quiet", false, "report only the fronts it rewrites")
	} else {
		fs.BoolVar(&o.Write, "write", false, "also edit the ecs.config file")
	}
	fs.Usage = func() { fmt.Fprint(stderr, Usage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if noUdev || o.UdevRoot == "" {
		o.UdevRoot = ""
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ecs %s: unexpected argument %q\n", verb, fs.Arg(0))
		return 2
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(stderr, "ec2-policy-routes ecs %s: %v\n", verb, err)
		return 1
	}
	return 0
}
