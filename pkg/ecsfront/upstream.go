package ecsfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// upstreamRun is one execution of the upstream plugin.
type upstreamRun struct {
	Verb     string // CNI_COMMAND, or the probe's first argument
	Stdout   []byte
	Stderr   []byte
	Exit     int  // exit status; -1 when killed by a signal or not started
	TimedOut bool // killed at its deadline (or on SIGTERM to the front)
	Err      error
	Duration time.Duration // fork to reaped, Held included
	// Held is how long the upstream ran with its stdin held back (from its
	// exec to the front writing stdin) while the front did its own work.
	Held time.Duration
}

// ok reports whether the upstream ran and exited 0.
func (r *upstreamRun) ok() bool { return r.Err == nil && r.Exit == 0 }

// upstreamProc is an upstream plugin started with its stdin held back. A
// CNI plugin reads its whole network configuration from stdin before it
// acts (it names the ENI), so until release the front does its own work
// alongside the upstream's exec and runtime start without the upstream
// having touched anything. One fork+exec, no goroutines: stdout and stderr
// are anonymous files read after exit (a grandchild that keeps them open
// cannot hold the front up), stdin a pipe written at release.
type upstreamProc struct {
	verb        string
	start       time.Time // just before the fork
	forked      time.Time // its exec under way
	pid         int
	stdin       *os.File // write end; the child holds the read end
	out, errOut *os.File
	// pidfd, when the kernel gives one, is waited on in the runtime's
	// poller: the front's threads all sleep while the upstream runs
	// (blocked in waitid, the runtime's monitor would keep polling).
	pidfd *os.File

	mu     sync.Mutex
	reaped bool // set before the PID is released: no kill after it
}

// startUpstream forks and executes bin with args and the front's
// environment (CNI_PATH set to the upstream directory, CNI_COMMAND to verb
// unless empty). The caller has checked bin.File with CheckTrusted, and
// must call release on the same goroutine: the calling thread stays locked
// until then, since the upstream's parent-death signal (it dies with the
// front, so that no orphan keeps changing the ENI after the agent killed
// the front) fires when the forking thread ends.
func startUpstream(bin upstreamBin, verb string, args []string) (*upstreamProc, error) {
	p := &upstreamProc{verb: verb}
	if verb == "" && len(args) > 0 {
		p.verb = args[0]
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	p.stdin = w
	if p.out, err = scratchFile("stdout"); err == nil {
		p.errOut, err = scratchFile("stderr")
	}
	if err != nil {
		p.closeFiles()
		return nil, err
	}
	pidfd := -1
	attr := &syscall.ProcAttr{
		Env:   upstreamEnv(os.Environ(), filepath.Dir(bin.Path), verb),
		Files: []uintptr{r.Fd(), p.out.Fd(), p.errOut.Fd()},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	if pidfdWait {
		attr.Sys.PidFD = &pidfd
	}
	runtime.LockOSThread()
	p.start = time.Now()
	// argv[0] is the plugin's name as the agent would run it.
	p.pid, err = syscall.ForkExec(bin.File, append([]string{bin.Path}, args...), attr)
	p.forked = time.Now()
	if err != nil {
		runtime.UnlockOSThread()
		p.closeFiles()
		return nil, &os.PathError{Op: "fork/exec", Path: bin.File, Err: err}
	}
	if pidfd >= 0 {
		if syscall.SetNonblock(pidfd, true) == nil {
			p.pidfd = os.NewFile(uintptr(pidfd), "pidfd") // non-blocking: in the poller
		} else {
			_ = syscall.Close(pidfd)
		}
	}
	return p, nil
}

// pidfdWait: wait for the upstream on a pidfd when the kernel gives one
// (tests turn it off to cover the waitid fallback).
var pidfdWait = true

// scratchFile is an anonymous file for the upstream's output.
func scratchFile(name string) (*os.File, error) {
	if fd, err := unix.MemfdCreate("ec2-policy-routes-front-"+name, unix.MFD_CLOEXEC); err == nil {
		return os.NewFile(uintptr(fd), name), nil
	}
	f, err := os.CreateTemp("", "ec2-policy-routes-front-")
	if err != nil {
		return nil, err
	}
	_ = os.Remove(f.Name())
	return f, nil
}

func (p *upstreamProc) closeFiles() {
	for _, f := range []*os.File{p.stdin, p.out, p.errOut, p.pidfd} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// kill ends the upstream unless it has been reaped (its PID may be reused).
func (p *upstreamProc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

// release hands the upstream its stdin and waits for it, bounded by ctx
// (killed when ctx ends, the write to stdin included).
func (p *upstreamProc) release(ctx context.Context, stdin []byte) *upstreamRun {
	defer runtime.UnlockOSThread()
	defer p.closeFiles()
	held := time.Since(p.forked)
	stop := context.AfterFunc(ctx, p.kill)
	if dl, ok := ctx.Deadline(); ok {
		_ = p.stdin.SetWriteDeadline(dl)
	}
	_, _ = p.stdin.Write(stdin) // an upstream that exits without reading it: EPIPE
	_ = p.stdin.Close()
	ws, err := p.wait()
	stop()
	r := &upstreamRun{Verb: p.verb, Duration: time.Since(p.start), Held: held}
	r.Stdout, r.Stderr = readBack(p.out), readBack(p.errOut)
	switch {
	case err != nil:
		r.Exit, r.Err = -1, err
	case ws.Exited():
		r.Exit = ws.ExitStatus()
	case ctx.Err() != nil:
		r.Exit, r.TimedOut, r.Err = -1, true, context.Cause(ctx)
	default:
		r.Exit, r.Err = -1, fmt.Errorf("signal: %v", ws.Signal()) // killed from elsewhere
	}
	return r
}

// wait waits for the upstream to exit without reaping it, marks it reaped
// (no kill can reach a reused PID), then reaps it.
func (p *upstreamProc) wait() (syscall.WaitStatus, error) {
	var err error = unix.EINTR
	if !p.pollExit() {
		var info unix.Siginfo
		for errors.Is(err, unix.EINTR) {
			err = unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		}
	} else {
		err = nil
	}
	p.mu.Lock()
	p.reaped = true
	p.mu.Unlock()
	var ws syscall.WaitStatus
	for {
		_, werr := syscall.Wait4(p.pid, &ws, 0, nil)
		if !errors.Is(werr, syscall.EINTR) {
			if err == nil {
				err = werr
			}
			return ws, err
		}
	}
}

// pollExit waits in the runtime's poller until the upstream has exited
// (its pidfd turns readable), without reaping it; false when it cannot.
func (p *upstreamProc) pollExit() bool {
	if p.pidfd == nil {
		return false
	}
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return false
	}
	exited := false
	err = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		werr := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		exited = werr == nil && info.Signo != 0
		return exited || (werr != nil && !errors.Is(werr, unix.EINTR))
	})
	return err == nil && exited
}

func readBack(f *os.File) []byte {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	return b
}

// runUpstream runs bin with args and stdin, bounded by ctx.
func runUpstream(ctx context.Context, bin upstreamBin, verb string, args []string, stdin []byte) *upstreamRun {
	p, err := startUpstream(bin, verb, args)
	if err != nil {
		return notStarted(verb, args, err)
	}
	return p.release(ctx, stdin)
}

func notStarted(verb string, args []string, err error) *upstreamRun {
	r := &upstreamRun{Verb: verb, Exit: -1, Err: err}
	if verb == "" && len(args) > 0 {
		r.Verb = args[0]
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
