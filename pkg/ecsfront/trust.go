package ecsfront

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// resolveTrusted checks path as CheckTrusted does and returns what it
// checked: path with its symlinks resolved. Every call of the front pays
// for it twice (settings, upstream), so the common case, no symlink on the
// way, costs one lstat per component: walking down from / both resolves
// the path and reads what the StrictModes rule needs (without a symlink,
// lstat is stat). With a symlink, or a component it cannot read, it is
// filepath.EvalSymlinks then WalkTrusted, as before; the error of a path
// that cannot be resolved is EvalSymlinks' own.
func resolveTrusted(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if chain, ok := lstatChain(abs); ok {
		// Leaf first, then up: the first refusal is WalkTrusted's.
		for i := len(chain) - 1; i >= 0; i-- {
			if err := CheckTrustedEntry(chain[i].path, chain[i].fi, i == len(chain)-1, RootOwner); err != nil {
				return "", err
			}
		}
		return abs, nil
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", unresolved{err}
	}
	return real, WalkTrusted(real, "/", RootOwner)
}

// unresolved is EvalSymlinks' error for a path that cannot be resolved.
type unresolved struct{ err error }

func (u unresolved) Error() string { return u.err.Error() }
func (u unresolved) Unwrap() error { return u.err }

type chainEntry struct {
	path string
	fi   fs.FileInfo
}

// lstatChain lstats / and every prefix of the clean absolute path abs, top
// down; ok is false at the first symlink or error.
func lstatChain(abs string) ([]chainEntry, bool) {
	out := make([]chainEntry, 0, 8)
	p := "/"
	rest := strings.TrimPrefix(abs, "/")
	for {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink != 0 {
			return nil, false
		}
		out = append(out, chainEntry{p, fi})
		if rest == "" {
			return out, true
		}
		name, after, _ := strings.Cut(rest, "/")
		p, rest = filepath.Join(p, name), after
	}
}
