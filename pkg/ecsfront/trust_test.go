package ecsfront

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// slowResolveTrusted is what CheckTrusted did before resolveTrusted: the
// fast path must agree with it on every path, refusals included.
func slowResolveTrusted(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	return real, WalkTrusted(real, "/", RootOwner)
}

// TestResolveTrustedAgrees: with and without symlinks, missing entries,
// group/world-writable files and directories, and a sticky directory,
// resolveTrusted returns what EvalSymlinks + WalkTrusted return. (As
// root the layout under the temp dir is trusted; otherwise both refuse the
// same entry.)
func TestResolveTrustedAgrees(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(p string, mode os.FileMode, dir bool) string {
		p = filepath.Join(base, p)
		var err error
		if dir {
			err = os.Mkdir(p, mode)
		} else {
			err = os.WriteFile(p, []byte("x"), mode)
		}
		if err == nil {
			err = os.Chmod(p, mode) // past the umask
		}
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(target, p string) string {
		p = filepath.Join(base, p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mk("ok", 0o755, true)
	good := mk("ok/file", 0o644, false)
	mk("gw", 0o775, true)
	inGW := mk("gw/file", 0o644, false)
	ww := mk("ok/ww", 0o666, false)
	mk("sticky", 0o1777, true)
	inSticky := mk("sticky/file", 0o644, false)
	toGood := link(good, "ok/link")
	dirLink := link(filepath.Join(base, "ok"), "dirlink")
	for _, p := range []string{
		good, inGW, ww, inSticky, toGood, filepath.Join(dirLink, "file"), filepath.Join(base, "sticky"),
		filepath.Join(base, "ok/missing"), filepath.Join(base, "nodir/file"), base, "/",
		filepath.Join(base, "ok/../ok/file"),
	} {
		got, gerr := resolveTrusted(p)
		want, werr := slowResolveTrusted(p)
		var u unresolved
		if errors.As(gerr, &u) {
			gerr = u.err
		}
		if (gerr == nil && got != want) || (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
			t.Errorf("%s: got %q, %v; want %q, %v", p, got, gerr, want, werr)
		}
		if errors.Is(werr, os.ErrNotExist) != errors.Is(CheckTrusted(p), os.ErrNotExist) {
			t.Errorf("%s: CheckTrusted loses ErrNotExist", p)
		}
	}
}
