package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/doctor"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsinstall"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/logging"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/repair"
)

// usage is the --help text (also the man page's synopsis, packaging/).
const usage = `ec2-policy-routes %s — CNI meta plugin: per-ENI source policy routing in a task's network namespace

Run by a container runtime (CNI_COMMAND set): ADD, DEL, CHECK, STATUS, GC, VERSION,
with the network configuration on stdin. See README / man ec2-policy-routes(8).

Run by a person (CNI_COMMAND unset):
  ec2-policy-routes doctor [--json|--prometheus] [--root DIR] [--systemctl none] [--skip-netns]
        check the host for stuck ec2-net-utils setup-policy-routes processes, stale
        locks, policy-routes@ units, the udev override, and list the rules/routes this
        plugin owns per network namespace, and the ECS front. Exit 0 healthy, 1 problems found.
  ec2-policy-routes doctor --stale-locks [-0] [--root DIR]
        print the stale ec2-net-utils lock files, one a line (for xargs -r rm -f --);
        -0 or --stale-locks0: NUL-terminated (for xargs -0r rm -f --).
  ec2-policy-routes repair [--apply] [--json]
        plan (--apply: make) the cure doctor points to: the udev override, stop and
        runtime-mask the units of missing interfaces, remove stale locks; then re-check.
        Root and systemd only. Exit 0 healthy, 1 something left, 2 refused.
  ec2-policy-routes ecs install [--dir DIR] [--upstream UP] [--config FILE] [--write] [--ecs-config PATH]
        run under the stock ECS agent: lay out DIR (default /var/lib/ecs/ec2-policy-routes/cni-plugins)
        with this binary as vpc-eni/vpc-branch-eni in front of UP's (default /amazon-ecs-cni-plugins),
        print (--write: set) ECS_CNI_PLUGINS_PATH=DIR in /etc/ecs/ecs.config; then systemctl restart ecs
  ec2-policy-routes ecs uninstall [--dir DIR] [--write]    remove it (--write: and the ecs.config line)
  ec2-policy-routes ecs refresh  rewrite installed fronts with this binary (the package does it on upgrade)
  ec2-policy-routes --version    print the version
  ec2-policy-routes --help       this text

Log: JSON lines, one per invocation, in logFile (default /var/log/ecs/ec2-policy-routes.log)
at logLevel (default info). Environment overrides: EC2_POLICY_ROUTES_LOG_FILE (a path,
"stderr" or "off"), EC2_POLICY_ROUTES_LOG_LEVEL, EC2_POLICY_ROUTES_LOG_MAX_SIZE (default 10M),
EC2_POLICY_ROUTES_LOG_MAX_BACKUPS (default 5).
`

// command handles invocations by a person. It returns ok=false when the
// process is a CNI invocation (CNI_COMMAND set) or has no arguments, which
// skel handles as before.
func command(args []string, stdout, stderr io.Writer) (code int, ok bool) {
	if os.Getenv("CNI_COMMAND") != "" || len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "doctor":
		return interruptible(stderr, func(ctx context.Context) int {
			return doctor.Main(ctx, args[1:], stdout, stderr, Version)
		}), true
	case "repair":
		return interruptible(stderr, func(ctx context.Context) int {
			return repair.Main(ctx, args[1:], stdout, stderr, Version)
		}), true
	case "ecs":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return ecsinstall.Main(ctx, args[1:], stdout, stderr), true
	case "--version", "-version", "version", "-v":
		fmt.Fprintf(stdout, "ec2-policy-routes %s\n", Version)
		return 0, true
	case "--help", "-help", "help", "-h":
		fmt.Fprintf(stdout, usage, Version)
		return 0, true
	}
	fmt.Fprintf(stderr, "ec2-policy-routes: unknown command %q (CNI_COMMAND is not set)\n\n", args[0])
	fmt.Fprintf(stderr, usage, Version)
	return 2, true
}

// interruptGrace is how long a command may take to wind down after SIGTERM
// or SIGINT cancelled its context.
const interruptGrace = 2 * time.Second

// interruptible runs a command whose context SIGTERM and SIGINT cancel.
// Catching the signals would otherwise make the process ignore them while
// anything does not watch the context, so after interruptGrace it returns
// regardless (exit 2; the caller exits, ending what still runs).
func interruptible(stderr io.Writer, run func(context.Context) int) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	done := make(chan int, 1)
	go func() { done <- run(ctx) }()
	select {
	case code := <-done:
		return code
	case <-ctx.Done():
	}
	t := time.NewTimer(interruptGrace)
	defer t.Stop()
	select {
	case code := <-done:
		return code
	case <-t.C:
		fmt.Fprintln(stderr, "ec2-policy-routes: interrupted; exiting")
		return 2
	}
}

// newLogger is the plugin's LoggerFactory: the configured file and level,
// with the EC2_POLICY_ROUTES_LOG_* environment overrides.
func newLogger(file, level string) (*slog.Logger, func()) {
	return logging.New(logging.Options{File: file, Level: level})
}
