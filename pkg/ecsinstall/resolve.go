package ecsinstall

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The one rule for symlinks in an install's path (install, uninstall, the
// agent-mount check and the ecs.config match): DIR is resolved once, by
// resolving its deepest existing ancestor, and everything works on that
// real path. A link out of the agent's mounts (/var/lib/ecs/x -> /opt/x) is
// judged where it leads: /opt/x, which the agent's container does not have.

// ResolveDir returns dir with every symlink in its existing part resolved
// (the part not yet created is appended as given). dir must be absolute.
func ResolveDir(dir string) (string, error) {
	dir = filepath.Clean(dir)
	var rest []string
	p := dir
	for {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		// ENOTDIR: a file in the way; install reports it when creating.
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) || p == filepath.Dir(p) {
			return "", err
		}
		// A dangling link is resolved as far as it goes: its target is
		// what would be created.
		if target, lerr := os.Readlink(p); lerr == nil {
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(p), target)
			}
			return ResolveDir(filepath.Join(append([]string{target}, rest...)...))
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = filepath.Dir(p)
	}
}

// agentPath is the path the agent's container uses for a resolved host
// directory: ecs-init bind-mounts each of AgentMounts at its own path, so a
// directory below the real location of a mount (a host whose /var/lib/ecs
// is itself a link) appears below the mount's name. ok is false when no
// mount covers it.
func agentPath(resolved string) (string, bool) {
	for _, m := range AgentMounts {
		if under(resolved, m) {
			return resolved, true
		}
		real, err := filepath.EvalSymlinks(m)
		if err == nil && real != m && under(resolved, real) {
			return filepath.Join(m, strings.TrimPrefix(resolved, real)), true
		}
	}
	return resolved, false
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// sameDir reports whether the ecs.config value v names dir (already
// resolved) under the same rule.
func sameDir(v, dir string) bool {
	if !filepath.IsAbs(v) {
		return false
	}
	if filepath.Clean(v) == dir {
		return true
	}
	r, err := ResolveDir(v)
	if err != nil {
		return false
	}
	if r == dir {
		return true
	}
	a, _ := agentPath(r)
	return a == dir
}
