// Package systemd is the project's narrow door to systemd's D-Bus API
// (github.com/coreos/go-systemd/v22/dbus). Only the CLI verbs use it; the
// CNI plugin's ADD/DEL path never opens a connection.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"

	sd "github.com/coreos/go-systemd/v22/dbus"
)

// ErrNoSystemd says the host is not running systemd (no /run/systemd/system).
var ErrNoSystemd = errors.New("systemd is not running on this host (no /run/systemd/system)")

// ReloadUdev asks systemd to reload systemd-udevd.service (what `udevadm
// control --reload` does) and waits for the job, bounded by ctx. It tries
// systemd's private socket first (root, no dbus daemon needed) and then the
// system bus.
func ReloadUdev(ctx context.Context) error {
	if fi, err := os.Stat("/run/systemd/system"); err != nil || !fi.IsDir() {
		return ErrNoSystemd
	}
	c, err := sd.NewSystemdConnectionContext(ctx)
	if err != nil {
		var err2 error
		if c, err2 = sd.NewSystemConnectionContext(ctx); err2 != nil {
			return fmt.Errorf("connecting to systemd: private socket: %v; system bus: %w", err, err2)
		}
	}
	defer c.Close()
	ch := make(chan string, 1)
	if _, err := c.ReloadUnitContext(ctx, "systemd-udevd.service", "replace", ch); err != nil {
		return fmt.Errorf("reloading systemd-udevd.service: %w", err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("reloading systemd-udevd.service: job %s", res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reloading systemd-udevd.service: %w", ctx.Err())
	}
}
