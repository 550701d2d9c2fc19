package ecsfront

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type upstreamCase struct {
	name     string
	bin      upstreamBin
	script   string
	limit    time.Duration
	exit     int
	stdout   string
	stderr   string // "*": the grandchild's PID, ended by the test
	timedOut bool
	err      string
}

// TestRunUpstream: the upstream gets its stdin, its stdout, stderr and exit
// status come back; a deadline kills it (TimedOut, the context's cause);
// a kill from elsewhere and a file that cannot run are errors; a
// grandchild that keeps stdout open does not hold the front up. Each case
// waits on a pidfd in the poller and, as on a kernel without pidfds, in
// waitid.
func TestRunUpstream(t *testing.T) {
	sh := upstreamBin{Path: "/bin/sh", File: "/bin/sh"}
	for _, tc := range []upstreamCase{
		{name: "output and status", bin: sh, script: `cat; echo; echo "$CNI_COMMAND $CNI_PATH $EC2_POLICY_ROUTES_FRONT"; echo oops >&2; exit 3`,
			exit: 3, stdout: "{\"cniVersion\":\"0.3.0\"}\nDEL /bin 1\n", stderr: "oops\n"},
		{name: "killed at its deadline", bin: sh, script: `exec sleep 30`, limit: 200 * time.Millisecond, exit: -1, timedOut: true, err: "context deadline exceeded"},
		{name: "killed from elsewhere", bin: sh, script: `kill -9 $$`, exit: -1, err: "signal: killed"},
		{name: "cannot run", bin: upstreamBin{Path: "/nonexistent/vpc-eni", File: "/nonexistent/vpc-eni"}, exit: -1, err: "no such file"},
		{name: "grandchild keeps stdout", bin: sh, script: `sleep 30 & echo $! >&2; echo started`, exit: 0, stdout: "started\n", stderr: "*"},
	} {
		for _, pidfd := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/pidfd=%v", tc.name, pidfd), func(t *testing.T) {
				defer func(old bool) { pidfdWait = old }(pidfdWait)
				pidfdWait = pidfd
				tc.run(t)
			})
		}
	}
}

func (tc upstreamCase) run(t *testing.T) {
	limit := tc.limit
	if limit == 0 {
		limit = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	r := runUpstream(ctx, tc.bin, "DEL", []string{"-c", tc.script}, []byte(`{"cniVersion":"0.3.0"}`))
	if tc.stderr == "*" {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(r.Stderr))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		r.Stderr = []byte("*")
	}
	if r.Exit != tc.exit || r.TimedOut != tc.timedOut || string(r.Stdout) != tc.stdout || string(r.Stderr) != tc.stderr {
		t.Fatalf("got exit %d timedOut %v stdout %q stderr %q err %v", r.Exit, r.TimedOut, r.Stdout, r.Stderr, r.Err)
	}
	if (r.Err == nil) != (tc.err == "") || (r.Err != nil && !strings.Contains(r.Err.Error(), tc.err)) {
		t.Fatalf("err %v, want %q", r.Err, tc.err)
	}
	if tc.timedOut && !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("err %v is not the context's cause", r.Err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}
