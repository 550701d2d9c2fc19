// Command ctrd-pause is the sandbox ("pause") process of the containerd
// integration test's image: it blocks until SIGTERM or SIGINT. Its
// arguments are ignored; the test passes a token so that its processes can
// be found in /proc and killed if a test leaves them behind.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
