package ecsfront

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// waitDelay bounds how long a killed upstream's inherited pipes may stay
// open (a grandchild holding stdout) before the front stops reading.
const waitDelay = time.Second

// upstreamRun is one execution of the upstream plugin.
type upstreamRun struct {
	Verb     string // CNI_COMMAND, or the probe's first argument
	Stdout   []byte
	Stderr   []byte
	Exit     int  // exit status; -1 when killed by a signal or not started
	TimedOut bool // killed at its deadline (or on SIGTERM to the front)
	Err      error
	Duration time.Duration
}

// ok reports whether the upstream ran and exited 0.
func (r *upstreamRun) ok() bool { return r.Err == nil && r.Exit == 0 }

// runUpstream executes path with args, stdin and env (CNI_PATH set to the
// upstream directory, CNI_COMMAND to verb unless empty), bounded by ctx.
// The caller has checked path with CheckTrusted.
func runUpstream(ctx context.Context, path, verb string, args []string, stdin []byte) *upstreamRun {
	start := time.Now()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = upstreamEnv(os.Environ(), filepath.Dir(path), verb)
	cmd.Stdin = bytes.NewReader(stdin)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.WaitDelay = waitDelay
	// The upstream dies with the front: when the agent SIGKILLs the front
	// at its deadline, no orphan keeps changing the ENI behind the DEL that
	// follows. Pdeathsig fires when the forking thread ends, so that thread
	// stays locked to this goroutine until the upstream has exited.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	err := cmd.Run()
	runtime.UnlockOSThread()
	r := &upstreamRun{Verb: verb, Stdout: so.Bytes(), Stderr: se.Bytes(), Duration: time.Since(start)}
	if verb == "" && len(args) > 0 {
		r.Verb = args[0]
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		r.Exit, r.TimedOut, r.Err = -1, true, context.Cause(ctx)
	case errors.As(err, &ee):
		r.Exit = ee.ExitCode()
		if r.Exit < 0 {
			r.Err = err // killed by a signal from elsewhere
		}
	default:
		r.Exit, r.Err = -1, err
	}
	return r
}

// upstreamEnv is the front's environment with CNI_PATH naming the upstream
// directory (the agent's names only the front's: a vpc-eni delegating by
// name would find the front again), CNI_COMMAND set to verb, and the
// marker that stops a front from running a front.
func upstreamEnv(env []string, upDir, verb string) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if strings.HasPrefix(kv, "CNI_PATH=") || strings.HasPrefix(kv, frontMarkerVar+"=") || (verb != "" && strings.HasPrefix(kv, "CNI_COMMAND=")) {
			continue
		}
		out = append(out, kv)
	}
	out = append(out, "CNI_PATH="+upDir, frontMarkerVar+"=1")
	if verb != "" {
		out = append(out, "CNI_COMMAND="+verb)
	}
	return out
}
