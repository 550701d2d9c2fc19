package repair

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/doctor"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/systemd"
)

// Usage is repair's help text.
const Usage = `usage: ec2-policy-routes repair [--apply] [--json]

Cures this host of the amazon-ec2-net-utils stuck-loop failure that
` + "`ec2-policy-routes doctor`" + ` reports. It reads the host once and plans:
  place-udev-override  /etc/udev/rules.d/99-vpc-policy-routes.rules, when ec2-net-utils'
                       rule is active and not overridden (a file of that name that is
                       not ours, e.g. the EKS AMI's empty mask, is left alone), then
  reload-udev          systemd-udevd.service;
  stop, reset-failed, mask-runtime
                       policy-routes@X.service, refresh-policy-routes@X.service and
                       refresh-policy-routes@X.timer of every X missing from
                       /sys/class/net (runtime masks: gone at reboot); never the @
                       templates, never a present interface's units;
  disable              the same instances of every missing X enabled by a link in
                       /etc/systemd/system/*.wants or *.requires (ec2-net-utils 2.7.x's
                       udev add runs systemctl enable; its remove never ran for them):
                       one call, before the masks; then
  remove-empty-dir     the directories /etc/systemd/system/<name>@X.<type>.wants (or
                       .requires) of missing X that held nothing else (rmdir);
  remove-lock          ec2-net-utils lock files whose owner is dead or is no
                       setup-policy-routes (and, once their units are stopped, those
                       of stuck owners), re-read before each removal; never a lock of
                       a live setup-policy-routes.
Without --apply it prints the plan and changes nothing. With --apply it makes
the changes, then re-checks with the doctor's checks. A second --apply has
nothing to do. Root only; systemd (its D-Bus API) required.

--json prints {"apply","actions":[{"kind","target","why","done","error"}],
"notes","left","healthy"} (for SSM Run Command).

Exit status: 0 healthy, 1 something is left (each item named), 2 refused
(not root, no systemd), usage error or interrupted.

Flags:
`

// env is what Main needs of the process; tests replace it.
type env struct {
	euid    func() int
	systemd func() bool
	open    func(ctx context.Context, version string) (Host, func(), error)
}

var sysEnv = env{
	euid:    os.Geteuid,
	systemd: func() bool { return systemd.Running("/") },
	open: func(ctx context.Context, version string) (Host, func(), error) {
		c, err := systemd.Open(ctx)
		if err != nil {
			return nil, nil, err
		}
		return &System{Conn: c, Version: version}, c.Close, nil
	},
}

// Main runs the repair CLI and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, version string) int {
	return mainWith(ctx, args, stdout, stderr, version, sysEnv)
}

func mainWith(ctx context.Context, args []string, stdout, stderr io.Writer, version string, e env) int {
	fs := flag.NewFlagSet("repair", flag.ContinueOnError)
	fs.SetOutput(stderr)
	apply := fs.Bool("apply", false, "make the changes (default: print the plan, change nothing)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
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
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "repair: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if msg := refusal(e); msg != "" {
		fmt.Fprintln(stderr, "repair: refused: "+msg)
		return 2
	}
	h, closer, err := e.open(ctx, version)
	if err != nil {
		fmt.Fprintf(stderr, "repair: refused: cannot reach systemd: %v\n", err)
		return 2
	}
	defer closer()
	r, err := Run(ctx, h, *apply)
	if err != nil {
		fmt.Fprintf(stderr, "repair: %v\n", doctor.Interrupted(ctx, err))
		return 2
	}
	if err := write(stdout, r, *asJSON); err != nil {
		fmt.Fprintf(stderr, "repair: %v\n", err)
		return 2
	}
	if !r.Healthy {
		return 1
	}
	return 0
}

func refusal(e env) string {
	switch {
	case e.euid() != 0:
		return "repair must run as root (it reads every process and lock, and changes units and /etc/udev)"
	case !e.systemd():
		return "systemd is not running on this host (no /run/systemd/system): there are no units to repair"
	}
	return ""
}

func write(w io.Writer, r *Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	_, err := io.WriteString(w, Text(r))
	return err
}

// Text renders a result for a person.
func Text(r *Result) string {
	var b strings.Builder
	switch {
	case len(r.Actions) == 0 && r.Apply:
		b.WriteString("repair: nothing to do: no action needed (a repeated --apply changes nothing)\n")
	case len(r.Actions) == 0:
		b.WriteString("repair (dry run): nothing to do\n")
	case r.Apply:
		fmt.Fprintf(&b, "repair --apply: %d actions\n", len(r.Actions))
	default:
		fmt.Fprintf(&b, "repair (dry run: nothing changed; --apply makes these %d changes):\n", len(r.Actions))
	}
	for _, a := range r.Actions {
		state := ""
		switch {
		case r.Apply && a.Done:
			state = "done    "
		case r.Apply:
			state = "FAILED  "
		}
		fmt.Fprintf(&b, "  %s%-20s %s\n", state, a.Kind, a.Target)
		fmt.Fprintf(&b, "  %s%-20s   why: %s\n", strings.Repeat(" ", len(state)), "", a.Why)
		if a.Error != "" {
			fmt.Fprintf(&b, "  %s%-20s   error: %s\n", strings.Repeat(" ", len(state)), "", a.Error)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	label := "left"
	if !r.Apply {
		label = "problem now"
	}
	for _, l := range r.Left {
		fmt.Fprintf(&b, "%s: %s\n", label, l)
	}
	if r.Healthy {
		b.WriteString("HEALTHY\n")
	} else {
		fmt.Fprintf(&b, "NOT HEALTHY: %d items left\n", len(r.Left))
	}
	return b.String()
}
