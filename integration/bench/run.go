package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sample is one whole-process exec: fork+exec to reaped exit, as a runtime
// sees it.
type sample struct {
	Dur    time.Duration
	Start  time.Time // just before fork
	End    time.Time // wait4 returned
	Exit   int
	MaxRSS int64         // KiB, from wait4's rusage
	CPU    time.Duration // user+system time, from wait4's rusage
	VCSW   int64         // voluntary context switches (blocked), all threads
	IVCSW  int64         // involuntary context switches (preempted)
	Stdout []byte
	Stderr []byte
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
	cmd             *exec.Cmd
	in, out, errout *os.File
	start           time.Time
}

// startProc forks and execs bin (argv is bin plus args) with env and stdin.
func startProc(ctx context.Context, env []string, stdin []byte, bin string, args ...string) (*proc, error) {
	in, err := memfile("stdin", stdin)
	if err != nil {
		return nil, err
	}
	out, err := memfile("stdout", nil)
	if err != nil {
		in.Close()
		return nil, err
	}
	errout, err := memfile("stderr", nil)
	if err != nil {
		in.Close()
		out.Close()
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, errout
	p := &proc{cmd: cmd, in: in, out: out, errout: errout}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *proc) close() {
	p.in.Close()
	p.out.Close()
	p.errout.Close()
}

// wait reaps the process and returns its sample.
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
	return s, nil
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
