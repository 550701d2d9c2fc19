// Package nslock serialises invocations that change the same network
// namespace.
//
// The lock is flock(2) on the already open namespace file descriptor (an
// nsfs inode, shared by /var/run/netns/X and /proc/PID/ns/net for the same
// namespace). Nothing is created on disk, so there is no lock file to leak or
// to create at a vanished netns path, and the kernel releases it when the
// holder exits or is killed — unlike ec2-net-utils' pidfile locks, which
// outlive their owners.
package nslock

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/blocking"
)

// Lock takes an exclusive lock on the namespace open at fd, waiting at most
// until ctx ends. The returned function releases it; closing fd (or exiting)
// does too.
func Lock(ctx context.Context, fd int) (unlock func(), err error) {
	// Uncontended: the common case costs one syscall and no goroutine.
	err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return func() { _ = unix.Flock(fd, unix.LOCK_UN) }, nil
	}
	if err != unix.EWOULDBLOCK {
		return nil, fmt.Errorf("lock network namespace: %w", err)
	}
	// Contended: block in the kernel on a private duplicate of the fd so
	// that, if ctx ends first, closing the duplicate abandons the attempt
	// without touching the caller's descriptor. flock locks belong to the
	// open file description, which the duplicate shares, so the lock taken
	// through it is the caller's lock.
	blocking.Ahead(ctx) // about to wait: let SIGTERM end it (see package blocking)
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, fmt.Errorf("lock network namespace: %w", err)
	}
	result := make(chan error, 1)
	go func() { result <- unix.Flock(dup, unix.LOCK_EX) }()
	select {
	case err := <-result:
		_ = unix.Close(dup)
		if err != nil {
			return nil, fmt.Errorf("lock network namespace: %w", err)
		}
		return func() { _ = unix.Flock(fd, unix.LOCK_UN) }, nil
	case <-ctx.Done():
		// The goroutine stays blocked in flock until the holder releases
		// or this short-lived process exits; if it then acquires, release
		// at once so no lock outlives the abandoned attempt.
		go func() {
			if <-result == nil {
				_ = unix.Flock(dup, unix.LOCK_UN)
			}
			_ = unix.Close(dup)
		}()
		return nil, fmt.Errorf("waiting for another invocation on this network namespace: %w", context.Cause(ctx))
	}
}
