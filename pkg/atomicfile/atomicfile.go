// Package atomicfile replaces files so that a reader (the ECS agent, udev,
// the front) sees the old file or the new one, never a partial one.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to a temporary file beside path (".<base>.tmp-*"),
// sets its mode (and owner when uid >= 0), syncs and renames it over path,
// then syncs the directory so the rename survives a crash.
func Write(path string, data []byte, mode os.FileMode, uid, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer func() { _ = os.Remove(name) }() // after the rename: ENOENT, ignored
	if err := fill(tmp, data, mode, uid, gid); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

func fill(f *os.File, data []byte, mode os.FileMode, uid, gid int) error {
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	return f.Sync()
}

// SyncDir makes a rename or link in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}
