// Command frontfloor is the least an ECS front can add to the plugin it
// runs, for the benchmark's front phase: a Go process that runs its
// argument (the upstream) with the same stdin and environment, passes its
// stdout and stderr through and exits with its status. No settings, no
// checks, no policy routing, no log; one fork+exec, no goroutines.
package main

import (
	"io"
	"os"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		os.Exit(2)
	}
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil {
		os.Exit(2)
	}
	r, w, err := os.Pipe()
	if err != nil {
		os.Exit(2)
	}
	pid, err := syscall.ForkExec(os.Args[1], os.Args[1:], &syscall.ProcAttr{
		Env: os.Environ(), Files: []uintptr{r.Fd(), 1, 2},
	})
	if err != nil {
		os.Exit(2)
	}
	_ = r.Close()
	_, _ = w.Write(stdin)
	_ = w.Close()
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
			break
		}
	}
	os.Exit(ws.ExitStatus())
}
