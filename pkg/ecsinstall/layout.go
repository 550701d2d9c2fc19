package ecsinstall

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/atomicfile"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

// trustedOwner is the StrictModes rule of ecsfront.CheckTrusted with one
// extension: an entry owned by this process's own user is as safe for it
// as a root-owned one (as root the two are the same, which is how install
// runs; without root it lets the tests run the same code).
func trustedOwner(uid uint32) bool { return uid == 0 || uid == uint32(os.Geteuid()) }

// CheckTrusted applies that rule to path and every directory above it,
// following symlinks like ecsfront.CheckTrusted.
func CheckTrusted(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	return ecsfront.WalkTrusted(real, "/", trustedOwner)
}

// ensureDir creates dir and any missing parent 0755, after checking that
// the deepest existing ancestor and everything above it is trusted, and
// that an existing dir is too. It returns the directories it created.
func ensureDir(dir string) (created []string, err error) {
	var missing []string
	p := dir
	for {
		if _, err := os.Lstat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, p)
		if p == "/" {
			break
		}
		p = filepath.Dir(p)
	}
	if err := CheckTrusted(p); err != nil {
		return nil, fmt.Errorf("refusing to install below an untrusted directory: %w", err)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil {
			return created, err
		}
		if err := os.Chmod(missing[i], 0o755); err != nil { // not the umask's choice
			return created, err
		}
		created = append(created, missing[i])
	}
	if fi, err := os.Stat(dir); err != nil {
		return created, err
	} else if !fi.IsDir() {
		return created, fmt.Errorf("%s is not a directory", dir)
	}
	return created, nil
}

// atomicSymlink points path at target through a rename, replacing
// whatever was there.
func atomicSymlink(target, path string) error {
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.tmp-link-%d", filepath.Base(path), os.Getpid()))
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp) // best effort: the rename's error is the one to report
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// sameFile reports whether path is a regular file with exactly data,
// mode and a trusted owner: nothing to rewrite.
func sameFile(path string, data []byte, mode os.FileMode) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		return false
	}
	if ecsfront.CheckTrustedEntry(path, fi, true, trustedOwner) != nil {
		return false
	}
	old, err := os.ReadFile(path)
	return err == nil && bytes.Equal(old, data)
}

// FileSumBytes is the SHA-256 of b.
func FileSumBytes(b []byte) [32]byte { return sha256.Sum256(b) }

// FileSum is the SHA-256 of a file's content.
func FileSum(path string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
