package ecsinstall

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

// Usage is the `ecs` subcommand's help text.
const Usage = `usage: ec2-policy-routes ecs install   [--dir DIR] [--upstream UP] [--config FILE] [--write] [--ecs-config PATH]
       ec2-policy-routes ecs uninstall [--dir DIR] [--write] [--ecs-config PATH]
       ec2-policy-routes ecs refresh   [--dir DIR] [--ecs-config PATH] [--quiet]

install: lays out DIR (default ` + ecsfront.DefaultInstallDir + `) for the stock ECS agent's
ECS_CNI_PLUGINS_PATH: vpc-eni and vpc-branch-eni are copies of this binary (the front: it
runs UP/<name>, then adds the policy routing), every other plugin of UP (default
` + ecsfront.DefaultUpstreamDir + `, as the agent's container sees it) is a symlink to
UP/<name>, and ` + ecsfront.SettingsFile + ` holds the front's settings (FILE: JSON with
upstream and the plugin's fields linkTimeout, tableBase, priority, logFile, logLevel, imds).
UP is verified where this host can see it: directly, or through the running agent's
container (/proc/<pid>/root). Idempotent. Prints the ecs.config line; --write sets it.
uninstall: removes DIR (only an install: it holds the settings file); --write drops the line.
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
	if verb == "install" {
		fs.StringVar(&o.Upstream, "upstream", "", "`UP`, the real plugins as the agent's container sees them (default: the settings' upstream, else "+ecsfront.DefaultUpstreamDir+")")
		fs.StringVar(&o.ConfigFile, "config", "", "front settings JSON `FILE`")
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
