package ecsinstall

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/atomicfile"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/boundedread"
)

// maxConfigSize bounds a read of ecs.config: it is a few lines of
// KEY=value; a larger one is refused rather than read whole.
const maxConfigSize = 1 << 20

// readConfig reads the ECS config file without blocking on a FIFO or
// reading a huge file whole; a missing file is empty, not an error.
func readConfig(path string) ([]byte, error) {
	b, err := boundedread.File(path, maxConfigSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

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
	data, err := readConfig(path)
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
	out, _ := replaceConfigLine(data, key, value, func(v string) bool { return filepath.Clean(v) == filepath.Clean(value) })
	return out
}

// replaceConfigLine is setConfigLine that also returns, verbatim, the key
// lines it replaced or dropped whose value is not ours (same(v) false):
// what an uninstall puts back.
func replaceConfigLine(data []byte, key, value string, same func(v string) bool) (out []byte, replaced []string) {
	want := key + "=" + value
	var lines []string
	done := false
	for _, line := range splitLines(data) {
		if k, v, ok := lineKey(line); ok && k == key {
			if !same(v) {
				replaced = append(replaced, line)
			}
			if !done {
				lines = append(lines, want)
				done = true
			}
			continue
		}
		lines = append(lines, line)
	}
	if !done {
		lines = append(lines, want)
	}
	return joinLines(lines), replaced
}

// restoreConfigLines undoes replaceConfigLine: the key lines naming ours
// (same(v)) are dropped and the replaced lines put back where the first of
// them was. Without a line of ours nothing is restored (the operator has
// changed the setting since: theirs stands) and restored is false.
func restoreConfigLines(data []byte, key string, same func(v string) bool, replaced []string) (out []byte, restored bool) {
	var lines []string
	for _, line := range splitLines(data) {
		if k, v, ok := lineKey(line); ok && k == key && same(v) {
			if !restored {
				lines = append(lines, replaced...)
				restored = true
			}
			continue
		}
		lines = append(lines, line)
	}
	if !restored {
		return data, false
	}
	return joinLines(lines), true
}

// dropConfigLine removes the key lines whose value is value; lines for
// key with another value are kept (they are not ours) and reported.
func dropConfigLine(data []byte, key, value string) (out []byte, removed int, others []string) {
	return dropConfigLineFunc(data, key, func(v string) bool { return filepath.Clean(v) == filepath.Clean(value) })
}

// dropConfigLineFunc is dropConfigLine with the match as a function (the
// install's symlink rule: sameDir).
func dropConfigLineFunc(data []byte, key string, same func(v string) bool) (out []byte, removed int, others []string) {
	var kept []string
	for _, line := range splitLines(data) {
		if k, v, ok := lineKey(line); ok && k == key {
			if same(v) {
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
	return atomicfile.Write(path, data, mode, uid, gid)
}

// configChange applies edit to the ECS config file, writing only when the
// content changes. It reports whether it wrote.
func configChange(path string, edit func([]byte) []byte) (bool, error) {
	old, err := readConfig(path)
	if err != nil {
		return false, err // names path already
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
