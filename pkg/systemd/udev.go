// Package systemd is the project's narrow door to systemd's D-Bus API
// (github.com/coreos/go-systemd/v22/dbus). Only the CLI verbs use it; the
// CNI plugin's ADD/DEL path never opens a connection.
package systemd

import (
	"context"
	"errors"
)

// ErrNoSystemd says the host is not running systemd (no /run/systemd/system).
var ErrNoSystemd = errors.New("systemd is not running on this host (no /run/systemd/system)")

// ReloadUdev opens a connection (Open: private socket first, then the
// system bus), asks systemd to reload systemd-udevd.service (what `udevadm
// control --reload` does) and waits for the job, bounded by ctx.
func ReloadUdev(ctx context.Context) error {
	c, err := Open(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.ReloadUdev(ctx)
}
