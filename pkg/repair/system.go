package repair

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/doctor"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/systemd"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/udevoverride"
)

// opTimeout bounds one systemd job (a stop waits for the unit's processes
// to end; systemd's own default stop timeout is 90 s).
const opTimeout = 2 * time.Minute

// System is the real host: "/" read by the doctor, changed through the
// systemd door and pkg/udevoverride.
type System struct {
	Conn    *systemd.Conn
	Version string
}

func (s *System) opts() doctor.Options {
	return doctor.Options{Root: "/", Units: s.Conn, Version: s.Version}
}

// Read reads the findings repair plans from (no namespace scan: repair
// does not change namespaces; Check scans them).
func (s *System) Read(ctx context.Context) (*doctor.Findings, error) {
	o := s.opts()
	o.SkipNetns = true
	return doctor.Read(ctx, o)
}

// Check runs the doctor's checks.
func (s *System) Check(ctx context.Context) (*doctor.Report, error) {
	return doctor.Run(ctx, s.opts())
}

// Stop stops a unit; one systemd no longer has is stopped already.
func (s *System) Stop(ctx context.Context, unit string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return ignoreNoSuchUnit(s.Conn.Stop(ctx, unit))
}

// ResetFailed clears a unit's failed state; one systemd no longer has has
// none.
func (s *System) ResetFailed(ctx context.Context, unit string) error {
	return ignoreNoSuchUnit(s.Conn.ResetFailed(ctx, unit))
}

// MaskRuntime masks units until reboot.
func (s *System) MaskRuntime(ctx context.Context, units []string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return s.Conn.MaskRuntime(ctx, units)
}

// ReloadUdev reloads udevd's rules.
func (s *System) ReloadUdev(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return s.Conn.ReloadUdev(ctx)
}

// PlaceUdevOverride places the override (never over a foreign file).
func (s *System) PlaceUdevOverride() (bool, error) { return udevoverride.Place("/") }

// RemoveLock removes a lock file below the lock directory, nothing else.
func (s *System) RemoveLock(p string) error {
	if filepath.Dir(filepath.Clean(p)) != doctor.LockDir {
		return errors.New("refusing to remove " + p + ": not in " + doctor.LockDir)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// ignoreNoSuchUnit: systemd unloaded the unit meanwhile; nothing to do.
func ignoreNoSuchUnit(err error) error {
	if systemd.NoSuchUnit(err) {
		return nil
	}
	return err
}
