package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/boundedread"
)

// LockDir is where ec2-net-utils' setup-policy-routes keeps its
// per-interface lock files.
const LockDir = lockDir

// maxLockFile bounds a lock file read: it holds a PID and a newline.
const maxLockFile = 4096

const lockDir = "/run/amazon-ec2-net-utils/setup-policy-routes"

// readLockFiles reads ec2-net-utils' lock files,
// /run/amazon-ec2-net-utils/setup-policy-routes/<iface>, holding the
// owner's PID (bash noclobber, never cleaned on death), and marks the
// processes that own one.
func (d *doctor) readLockFiles(ctx context.Context, running map[int]bool) error {
	owners := map[int]string{}
	ents, err := os.ReadDir(d.path(lockDir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.f.LockDirMissing = true
	case err != nil:
		d.f.LockDirErr = err.Error()
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() {
			continue
		}
		lf := d.lockFile(e.Name(), running)
		if lf.PID != 0 {
			owners[lf.PID] = e.Name()
		}
		d.f.LockFiles = append(d.f.LockFiles, lf)
	}
	for i := range d.f.Processes {
		p := &d.f.Processes[i]
		p.OwnsLock = owners[p.PID] == p.Interface
	}
	return nil
}

// lockFile reads one lock file and judges it.
func (d *doctor) lockFile(name string, running map[int]bool) LockFile {
	lf := LockFile{Interface: name, Path: filepath.Join(lockDir, name), InterfaceExists: d.ifaceExists(name)}
	b, err := d.readSmall(lf.Path, maxLockFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	switch {
	case errors.Is(err, boundedread.ErrNotRegular):
		// A FIFO or device: never a noclobber PID file, nobody holds it.
		lf.Stale, lf.Reason = true, errDetail(err)+": holds no PID"
	case errors.Is(err, boundedread.ErrTooLarge):
		lf.Stale, lf.Reason = true, "holds no PID: "+errDetail(err)
	case err != nil:
		lf.Reason = "unreadable: " + err.Error()
	case perr != nil || pid <= 0:
		lf.Stale, lf.Reason = true, fmt.Sprintf("holds no PID (%q)", strings.TrimSpace(string(b)))
	default:
		lf.PID = pid
		lf.OwnerAlive = d.exists(fmt.Sprintf("/proc/%d", pid))
		switch {
		case !lf.OwnerAlive:
			lf.Stale, lf.Reason = true, fmt.Sprintf("owner PID %d is dead", pid)
		case !running[pid]:
			// PID reused by an unrelated process: as stale as a dead one.
			lf.Stale, lf.Reason = true, fmt.Sprintf("PID %d is alive but is not setup-policy-routes (PID reused)", pid)
		case !lf.InterfaceExists:
			lf.Reason = fmt.Sprintf("owner PID %d is alive, looping on a missing interface", pid)
		default:
			lf.Reason = fmt.Sprintf("held by PID %d", pid)
		}
	}
	return lf
}

// errDetail is a boundedread error without the path it starts with.
func errDetail(err error) string {
	s := err.Error()
	if _, after, ok := strings.Cut(s, ": "); ok {
		return after
	}
	return s
}

// locksVerdict judges the lock files readLockFiles found.
func (d *doctor) locksVerdict() {
	lc := Check{ID: CheckLocks}
	var stale, stuck int
	for _, lf := range d.f.LockFiles {
		lc.Details = append(lc.Details, fmt.Sprintf("%s: %s", lf.Path, lf.Reason))
		if lf.Stale {
			stale++
		} else if lf.OwnerAlive && !lf.InterfaceExists {
			stuck++
		}
	}
	switch {
	case d.f.LockDirMissing:
		lc.Status, lc.Summary = StatusOK, "no ec2-net-utils lock directory ("+lockDir+")"
	case d.f.LockDirErr != "":
		lc.Status, lc.Summary = StatusWarn, fmt.Sprintf("cannot read %s: %s", lockDir, d.f.LockDirErr)
	case stale > 0 || stuck > 0:
		lc.Status = StatusProblem
		lc.Summary = fmt.Sprintf("%d lock files: %d stale (owner dead or PID reused), %d held by processes looping on missing interfaces", len(d.f.LockFiles), stale, stuck)
		lc.Hint = "every refresh of these interfaces spins up to 1000 s on the lock; stop the units (see " + CheckProcesses + "), then remove the stale files: ec2-policy-routes repair --apply does both (by hand: ec2-policy-routes doctor --stale-locks0 | xargs -0r rm -f --)"
	default:
		lc.Status, lc.Summary = StatusOK, fmt.Sprintf("%d lock files, all held by live setup-policy-routes for existing interfaces", len(d.f.LockFiles))
	}
	d.add(lc)
}
