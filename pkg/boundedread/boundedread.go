// Package boundedread reads small configuration and state files that a
// hostile or broken host may have replaced with something else: a FIFO (an
// open for reading would wait for a writer forever), a device, or a huge
// sparse file (reading it whole would take gigabytes of memory).
//
// Files are opened non-blocking, must be regular, and at most a bounded
// prefix is read: such a file is never large, so anything longer is refused.
package boundedread

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrNotRegular is returned for a FIFO, socket, device or directory.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is returned for a file longer than the caller's limit.
var ErrTooLarge = errors.New("file too large")

// File reads path whole if it is a regular file of at most max bytes. The
// open never blocks (O_NONBLOCK: a FIFO without a writer returns at once and
// is then refused by its type), and at most max+1 bytes are read, so neither
// a FIFO nor a sparse file of any size can hang or balloon the caller. The
// error wraps ErrNotRegular or ErrTooLarge, or the os error (fs.ErrNotExist
// for a missing file).
func File(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, fi.Mode().Type())
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: %w (%d bytes, at most %d read)", path, ErrTooLarge, fi.Size(), max)
	}
	// The size can change after Stat (a file still being written): the
	// limited read is what bounds memory, not the size seen above.
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w (more than %d bytes)", path, ErrTooLarge, max)
	}
	return b, nil
}
