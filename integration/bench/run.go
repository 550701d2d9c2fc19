package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sample is one whole-process exec: fork+exec to reaped exit, as a runtime
// sees it. Dur, MaxRSS, CPU and the context switches come from the spawn
// helper's wait4 (see spawn/main.go) for calls run through it.
type sample struct {
	Dur   time.Duration
	Start time.Time // this process: just before starting it
	End   time.Time // this process: reaped
	// CLOCK_MONOTONIC ns from the spawn helper: just before fork, and
	// when wait4 returned.
	MonoStart, MonoEnd int64
	Exit               int
	MaxRSS             int64         // KiB, from wait4's rusage
	CPU                time.Duration // user+system time, from wait4's rusage
	VCSW               int64         // voluntary context switches (blocked), all threads
	IVCSW              int64         // involuntary context switches (preempted)
	Stdout             []byte
	Stderr             []byte
}

// cniEnv is the environment a runtime passes; nothing else is inherited.
func cniEnv(command, netnsPath, ifname string, extra ...string) []string {
	env := []string{
		"CNI_COMMAND=" + command,
		"CNI_CONTAINERID=bench",
		"CNI_NETNS=" + netnsPath,
		"CNI_IFNAME=" + ifname,
		"CNI_PATH=/nonexistent",
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	}
	return append(env, extra...)
}

// memfile is an anonymous in-memory file: stdin/stdout/stderr are passed to
// the child as plain fds, so no copying goroutine runs in this process
// while the child is timed.
func memfile(name string, content []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if len(content) > 0 {
		if _, err := f.Write(content); err != nil {
			f.Close()
			return nil, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// proc is a started plugin process.
type proc struct {
	cmd                     *exec.Cmd
	in, out, errout, report *os.File
	start                   time.Time // just before starting (direct) or spawn
	spawned                 bool
}

// spawnBin is the spawn helper (integration/bench/spawn), set by main.
var spawnBin string

// startProc runs bin (argv is bin plus args) with env and stdin through the
// spawn helper, which times the call and reports its rusage.
func startProc(ctx context.Context, env []string, stdin []byte, bin string, args ...string) (*proc, error) {
	return start(ctx, true, env, stdin, bin, args...)
}

// startDirect runs bin as a direct child of this process (no timing or
// rusage worth reporting: used where the process tree matters).
func startDirect(ctx context.Context, env []string, stdin []byte, bin string, args ...string) (*proc, error) {
	return start(ctx, false, env, stdin, bin, args...)
}

func start(ctx context.Context, spawned bool, env []string, stdin []byte, bin string, args ...string) (*proc, error) {
	files := make([]*os.File, 0, 4)
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, c := range []struct {
		name string
		data []byte
	}{{"stdin", stdin}, {"stdout", nil}, {"stderr", nil}, {"report", nil}} {
		f, err := memfile(c.name, c.data)
		if err != nil {
			closeAll()
			return nil, err
		}
		files = append(files, f)
	}
	p := &proc{in: files[0], out: files[1], errout: files[2], report: files[3], spawned: spawned}
	if spawned {
		p.cmd = exec.CommandContext(ctx, spawnBin, append([]string{bin}, args...)...)
		p.cmd.ExtraFiles = []*os.File{p.report}
	} else {
		p.cmd = exec.CommandContext(ctx, bin, args...)
	}
	p.cmd.Env = env
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = p.in, p.out, p.errout
	// Own process group, so that an interrupt kills the spawn helper and the
	// plugin under it alike.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Cancel = func() error { return syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *proc) close() {
	p.in.Close()
	p.out.Close()
	p.errout.Close()
	p.report.Close()
}

// wait reaps the process and returns its sample: from the spawn helper's
// report when spawned, else from this process's own wait4.
func (p *proc) wait() (sample, error) {
	defer p.close()
	err := p.cmd.Wait()
	s := sample{Start: p.start, End: time.Now()}
	s.Dur = s.End.Sub(s.Start)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return s, err
	}
	if ps := p.cmd.ProcessState; ps != nil {
		s.Exit = ps.ExitCode()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			s.MaxRSS = ru.Maxrss
			s.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			s.VCSW, s.IVCSW = ru.Nvcsw, ru.Nivcsw
		}
	}
	s.Stdout = readAll(p.out)
	s.Stderr = readAll(p.errout)
	if p.spawned {
		var v [8]int64
		rep := strings.Fields(string(readAll(p.report)))
		if len(rep) != len(v) {
			return s, fmt.Errorf("spawn helper: no report (exit %d): %s", s.Exit, lastLine(string(s.Stderr)))
		}
		for i := range v {
			if v[i], err = strconv.ParseInt(rep[i], 10, 64); err != nil {
				return s, fmt.Errorf("spawn helper report %q: %w", rep, err)
			}
		}
		s.MonoStart, s.MonoEnd = v[0], v[1]
		s.Dur = time.Duration(v[1] - v[0])
		s.MaxRSS = v[2]
		s.CPU = time.Duration(v[3] + v[4])
		s.VCSW, s.IVCSW = v[5], v[6]
		s.Exit = int(v[7])
	}
	return s, nil
}

// mono is CLOCK_MONOTONIC in ns, the clock the spawn helper reports in.
func mono() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func readAll(f *os.File) []byte {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	return b
}

// run is startProc followed by wait.
func run(ctx context.Context, env []string, stdin []byte, bin string, args ...string) (sample, error) {
	p, err := startProc(ctx, env, stdin, bin, args...)
	if err != nil {
		return sample{}, err
	}
	return p.wait()
}
