package ecsinstall

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ECS config lines are read the way ecs-init reads /etc/ecs/ecs.config
// (ecs-init/docker/docker.go getEnvVars): each line trimmed, split at the
// first "=", the key taken verbatim, no quoting, the last occurrence wins.

// lineKey returns a line's key and value as ecs-init sees them.
func lineKey(line string) (key, value string, ok bool) {
	k, v, found := strings.Cut(strings.TrimSpace(line), "=")
	return k, v, found
}

// ConfigValue returns the value ecs-init would use for key in data.
func ConfigValue(data []byte, key string) (string, bool) {
	val, found := "", false
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := lineKey(line); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

// ReadConfigValue reads key from the ECS config file at path; a missing
// file is "not set", not an error.
func ReadConfigValue(path, key string) (string, bool, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, ok := ConfigValue(data, key)
	return v, ok, nil
}

// setConfigLine returns data with exactly one "key=value" line: the first
// line for key replaced in place, later ones dropped (ecs-init would take
// the last; one line leaves no doubt), or the line appended. Every other
// line is kept byte for byte.
func setConfigLine(data []byte, key, value string) []byte {
	want := key + "=" + value
	lines := splitLines(data)
	var out []string
	done := false
	for _, line := range lines {
		if k, _, ok := lineKey(line); ok && k == key {
			if !done {
				out = append(out, want)
				done = true
			}
			continue
		}
		out = append(out, line)
	}
	if !done {
		out = append(out, want)
	}
	return joinLines(out)
}

// dropConfigLine removes the key lines whose value is value; lines for
// key with another value are kept (they are not ours) and reported.
func dropConfigLine(data []byte, key, value string) (out []byte, removed int, others []string) {
	var kept []string
	for _, line := range splitLines(data) {
		if k, v, ok := lineKey(line); ok && k == key {
			if filepath.Clean(v) == filepath.Clean(value) {
				removed++
				continue
			}
			others = append(others, line)
		}
		kept = append(kept, line)
	}
	return joinLines(kept), removed, others
}

func splitLines(data []byte) []string {
	s := strings.TrimSuffix(string(data), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func joinLines(lines []string) []byte {
	if len(lines) == 0 {
		return nil
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// rewriteConfig atomically replaces the ECS config file with data, keeping
// its mode and owner (a new file: 0644, this process's owner, its
// directory created 0755). A symlinked config is written at its target.
func rewriteConfig(path string, data []byte) error {
	real, err := filepath.EvalSymlinks(path)
	switch {
	case err == nil:
		path = real
	case os.IsNotExist(err):
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
	default:
		return err
	}
	mode, uid, gid := os.FileMode(0o644), -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	return atomicWrite(path, data, mode, uid, gid)
}

// configChange applies edit to the ECS config file, writing only when the
// content changes. It reports whether it wrote.
func configChange(path string, edit func([]byte) []byte) (bool, error) {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	data := edit(old)
	if string(data) == string(old) {
		return false, nil
	}
	if err := rewriteConfig(path, data); err != nil {
		return false, err
	}
	return true, nil
}
