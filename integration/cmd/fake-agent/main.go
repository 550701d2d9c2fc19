// Command fake-agent stands in for the ECS agent's process in tests and
// the demo: run as /agent inside a chroot holding a plugin directory, it is
// what `ec2-policy-routes ecs install` and doctor look for in /proc (argv[0]
// /agent, the container's files at /proc/<pid>/root). It prints "ready"
// once running and exits on SIGTERM/SIGINT, when stdin closes, or after
// ten minutes, so it never outlives a test.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	fmt.Println("ready")
	select {
	case <-sigs:
	case <-eof:
	case <-time.After(10 * time.Minute):
	}
}
