// Command spawn runs its arguments as a child process and reports, on fd 3,
// what wait4 says about it: CLOCK_MONOTONIC ns just before fork and just
// after wait4 returned, then the child's rusage (max RSS KiB, user and
// system ns, voluntary and involuntary context switches) and its wait
// status. It exits with the child's exit code.
//
// The benchmark runs every timed call through it because a child's
// ru_maxrss includes the RSS of the process that exec'd it (the kernel
// carries the old mm's high-water mark across execve): exec'd straight from
// the benchmark, every plugin would "use" the benchmark's ~10 MiB. This
// parent is a minimal Go program, so the floor it adds is the smallest a Go
// parent can have, and it is the same for every binary measured.
package main

import (
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

func mono() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func main() {
	if len(os.Args) < 2 {
		os.Exit(125)
	}
	argv := os.Args[1:]
	attr := &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}}
	start := mono()
	pid, err := syscall.ForkExec(argv[0], argv, attr)
	if err != nil {
		os.Stderr.WriteString("spawn: " + err.Error() + "\n")
		os.Exit(127)
	}
	var ws syscall.WaitStatus
	var ru syscall.Rusage
	for {
		_, err = syscall.Wait4(pid, &ws, 0, &ru)
		if err != syscall.EINTR {
			break
		}
	}
	end := mono()
	if err != nil {
		os.Stderr.WriteString("spawn: wait4: " + err.Error() + "\n")
		os.Exit(126)
	}
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	b := make([]byte, 0, 128)
	for i, v := range []int64{start, end, ru.Maxrss, ru.Utime.Nano(), ru.Stime.Nano(), ru.Nvcsw, ru.Nivcsw, int64(code)} {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendInt(b, v, 10)
	}
	b = append(b, '\n')
	if f := os.NewFile(3, "report"); f != nil {
		_, _ = f.Write(b)
	}
	os.Exit(code)
}
