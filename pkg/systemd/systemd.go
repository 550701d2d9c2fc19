package systemd

// Conn (this file) is the door doctor, repair and ecs install use: list,
// stop, disable, runtime-mask, reset-failed, reload udev — systemd's D-Bus
// API, never systemctl's output. It prefers systemd's private socket
// /run/systemd/private (root only, works without a dbus daemon, as on
// minbase Debian) and falls back to the system bus.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// UdevService is the unit whose reload makes udevd re-read its rules.
const UdevService = "systemd-udevd.service"

// Unit is one unit as systemd lists it: plain data.
type Unit struct {
	Name        string `json:"name"`
	LoadState   string `json:"load"`
	ActiveState string `json:"active"`
	SubState    string `json:"sub"`
}

// Running reports whether systemd is PID 1 under root, by the test
// sd_booted(3) documents: /run/systemd/system exists.
func Running(root string) bool {
	fi, err := os.Stat(filepath.Join(root, "/run/systemd/system"))
	return err == nil && fi.IsDir()
}

// Conn is an open door. Close it when done.
type Conn struct {
	c *sd.Conn
}

// Open connects to systemd: the private socket first (no dbus daemon
// needed), the system bus if that fails (e.g. not root).
func Open(ctx context.Context) (*Conn, error) {
	if !Running("/") {
		return nil, ErrNoSystemd
	}
	c, err := sd.NewSystemdConnectionContext(ctx)
	if err != nil {
		var err2 error
		c, err2 = sd.NewSystemConnectionContext(ctx)
		if err2 != nil {
			return nil, fmt.Errorf("connecting to systemd: private socket: %w; system bus: %w", err, err2)
		}
	}
	// Jobs (Stop, ReloadUdev) are waited on through JobRemoved, which
	// systemd sends to every private-socket client; as root (repair) the
	// private socket is what we get.
	return &Conn{c: c}, nil
}

// Close closes the connection.
func (c *Conn) Close() { c.c.Close() }

// ListUnits returns the loaded units (any state) whose names match one of
// the glob patterns.
func (c *Conn) ListUnits(ctx context.Context, patterns []string) ([]Unit, error) {
	us, err := c.c.ListUnitsByPatternsContext(ctx, nil, patterns)
	if err != nil {
		return nil, fmt.Errorf("listing units %v: %w", patterns, err)
	}
	out := make([]Unit, 0, len(us))
	for _, u := range us {
		out = append(out, Unit{Name: u.Name, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState})
	}
	return out, nil
}

// Stop stops a unit and waits for the job to finish (or ctx to end).
func (c *Conn) Stop(ctx context.Context, name string) error {
	ch := make(chan string, 1) // buffered: the library blocks on an unread send
	if _, err := c.c.StopUnitContext(ctx, name, "replace", ch); err != nil {
		return fmt.Errorf("stopping %s: %w", name, err)
	}
	return waitJob(ctx, "stopping "+name, ch)
}

// MaskRuntime masks units in /run/systemd (gone at reboot, like
// systemctl mask --runtime) and reloads the manager so the mask takes hold.
func (c *Conn) MaskRuntime(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if _, err := c.c.MaskUnitFilesContext(ctx, names, true, false); err != nil {
		return fmt.Errorf("masking %v: %w", names, err)
	}
	if err := c.c.ReloadContext(ctx); err != nil {
		return fmt.Errorf("reloading systemd after masking: %w", err)
	}
	return nil
}

// Disable removes the symlinks in /etc that enable units (systemctl
// disable, one call for all) and reloads the manager. systemd skips a
// masked unit ("masked, ignoring") and leaves its links, so a runtime mask
// (an earlier repair's) is lifted for the call and put back; a mask in
// /etc is not ours: its unit stays enabled and is named in the error.
func (c *Conn) Disable(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	changes, err := c.c.DisableUnitFilesContext(ctx, names, false)
	if err != nil {
		return fmt.Errorf("disabling %v: %w", names, err)
	}
	if masked := maskedIn(changes); len(masked) > 0 {
		if err := c.disableMasked(ctx, masked); err != nil {
			return err
		}
	}
	if err := c.c.ReloadContext(ctx); err != nil {
		return fmt.Errorf("reloading systemd after disabling: %w", err)
	}
	return nil
}

// maskedIn names the units a DisableUnitFiles call skipped as masked.
func maskedIn(changes []sd.DisableUnitFileChange) []string {
	var out []string
	for _, ch := range changes {
		if ch.Type == "masked" {
			out = append(out, filepath.Base(ch.Filename))
		}
	}
	return out
}

// disableMasked lifts the runtime masks of names, disables them and masks
// again exactly the ones it lifted.
func (c *Conn) disableMasked(ctx context.Context, names []string) error {
	lifted, err := c.c.UnmaskUnitFilesContext(ctx, names, true)
	if err != nil {
		return fmt.Errorf("lifting the runtime masks of %v to disable them: %w", names, err)
	}
	var relift []string
	for _, ch := range lifted {
		if ch.Type == "unlink" {
			relift = append(relift, filepath.Base(ch.Filename))
		}
	}
	changes, derr := c.c.DisableUnitFilesContext(ctx, names, false)
	if len(relift) > 0 {
		if _, err := c.c.MaskUnitFilesContext(ctx, relift, true, false); err != nil {
			return fmt.Errorf("masking %v again after disabling: %w", relift, err)
		}
	}
	switch still := maskedIn(changes); {
	case derr != nil:
		return fmt.Errorf("disabling masked %v: %w", names, derr)
	case len(still) > 0:
		return fmt.Errorf("%v masked in /etc (not by repair): their enablement is left", still)
	}
	return nil
}

// ResetFailed clears a unit's failed state.
func (c *Conn) ResetFailed(ctx context.Context, name string) error {
	if err := c.c.ResetFailedUnitContext(ctx, name); err != nil {
		return fmt.Errorf("reset-failed %s: %w", name, err)
	}
	return nil
}

// ReloadUdev reloads systemd-udevd.service (udevadm control --reload) and
// waits for the job.
func (c *Conn) ReloadUdev(ctx context.Context) error {
	ch := make(chan string, 1)
	if _, err := c.c.ReloadUnitContext(ctx, UdevService, "replace", ch); err != nil {
		return fmt.Errorf("reloading %s: %w", UdevService, err)
	}
	return waitJob(ctx, "reloading "+UdevService, ch)
}

// waitJob waits for a job's result; anything but "done" is an error.
func waitJob(ctx context.Context, what string, ch <-chan string) error {
	select {
	case r := <-ch:
		if r != "done" {
			return fmt.Errorf("%s: job %s", what, r)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// NoSuchUnit reports systemd's "unit not loaded" answer (the unit was
// garbage-collected, so there is nothing to stop or reset).
func NoSuchUnit(err error) bool {
	var v godbus.Error
	var p *godbus.Error
	switch {
	case errors.As(err, &v):
		return v.Name == noSuchUnit
	case errors.As(err, &p):
		return p.Name == noSuchUnit
	}
	return false
}

const noSuchUnit = "org.freedesktop.systemd1.NoSuchUnit"
