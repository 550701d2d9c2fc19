// Package ecsfront is the ECS front: this plugin's binary installed under
// the names the stock ECS agent runs (vpc-eni, vpc-branch-eni) in a
// directory named by ECS_CNI_PLUGINS_PATH. It runs the upstream plugin of
// the same name, verifies what it claims, and adds (ADD) or removes (DEL)
// the policy routing for the task ENI.
//
// This file is the contract shared by the front (which reads the settings)
// and `ec2-policy-routes ecs install` (which writes them).
package ecsfront

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/boundedread"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
)

const (
	// DefaultInstallDir is where `ecs install` lays out the plugin
	// directory: under /var/lib/ecs, which ecs-init bind-mounts into the
	// agent's container at the same path, so ECS_CNI_PLUGINS_PATH names
	// the same directory on the host and in the container.
	DefaultInstallDir = "/var/lib/ecs/ec2-policy-routes/cni-plugins"
	// DefaultUpstreamDir holds the real plugins inside the agent image.
	DefaultUpstreamDir = "/amazon-ecs-cni-plugins"
	// SettingsFile is the front's settings, beside the front binaries in
	// the install directory: the front finds it from its own executable
	// path, without any help from the agent.
	SettingsFile = "ec2-policy-routes-front.json"
	// ECSConfig is the agent's environment file (read by ecs-init).
	ECSConfig = "/etc/ecs/ecs.config"
	// PluginsPathVar is the agent setting that names the plugin directory.
	PluginsPathVar = "ECS_CNI_PLUGINS_PATH"
)

// FrontedPlugins are the names under which this binary acts as a front.
var FrontedPlugins = []string{"vpc-eni", "vpc-branch-eni"}

// KnownPlugins are the plugins the stock agent probes (--capabilities at
// startup) or runs for awsvpc tasks (agent/app/agent_unix.go,
// agent/api/task/task_linux.go). Every one must resolve in the install
// directory or the agent exits at startup / fails the task.
var KnownPlugins = []string{"vpc-eni", "vpc-branch-eni", "ecs-bridge", "ecs-ipam", "aws-appmesh", "ecs-serviceconnect"}

// IsFronted reports whether a plugin name is one this binary fronts.
func IsFronted(name string) bool {
	for _, n := range FrontedPlugins {
		if n == name {
			return true
		}
	}
	return false
}

// Settings are the front's plugin settings: the upstream directory plus the
// plugin's own configuration fields (same names and meaning as in the
// plugin's network configuration; see config.NetConf).
type Settings struct {
	// Upstream is the directory holding the real vpc-eni/vpc-branch-eni,
	// as the agent's container sees it.
	Upstream string `json:"upstream"`
	// UpstreamTimeout bounds the upstream ADD (default
	// DefaultUpstreamTimeout, at most MaxUpstreamTimeout; see budget.go).
	UpstreamTimeout string `json:"upstreamTimeout,omitempty"`
	LinkTimeout     string `json:"linkTimeout,omitempty"`
	TableBase       *int64 `json:"tableBase,omitempty"`
	Priority        *int64 `json:"priority,omitempty"`
	LogFile         string `json:"logFile,omitempty"`
	LogLevel        string `json:"logLevel,omitempty"`
	// IMDS nil: off, the task ENI's facts come from the agent's config
	// alone (PluginConfig); a section that does not disable it: on.
	IMDS *config.IMDSConf `json:"imds,omitempty"`
	// Install is `ecs install`'s record of what it made (its manifest,
	// ecsinstall.Manifest); the front does not read it.
	Install json.RawMessage `json:"install,omitempty"`
}

// ParseSettings decodes settings JSON, rejecting unknown fields (a typo in
// a file an operator wrote must not be silently ignored).
func ParseSettings(data []byte) (*Settings, error) {
	var s Settings
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("front settings: %w", err)
	}
	if s.Upstream == "" {
		s.Upstream = DefaultUpstreamDir
	}
	if !filepath.IsAbs(s.Upstream) {
		return nil, fmt.Errorf("front settings: upstream %q must be an absolute path", s.Upstream)
	}
	if _, err := s.upstreamTimeout(); err != nil {
		return nil, fmt.Errorf("front settings: %w", err)
	}
	return &s, nil
}

// Marshal renders settings as the file `ecs install` writes.
func (s *Settings) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// MaxSettingsSize bounds a read of the settings file (a few KiB at most):
// a FIFO or a huge file there must not hang or balloon the front.
const MaxSettingsSize = 1 << 20

// LoadSettings reads the settings file at path after checking that it and
// every directory above it are trusted (CheckTrusted).
func LoadSettings(path string) (*Settings, error) {
	if err := CheckTrusted(path); err != nil {
		return nil, err
	}
	data, err := boundedread.File(path, MaxSettingsSize)
	if err != nil {
		return nil, fmt.Errorf("front settings: %w", err)
	}
	s, err := ParseSettings(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ErrUntrusted marks a path the front refuses to read or execute.
var ErrUntrusted = errors.New("untrusted path")

// CheckTrusted applies sshd's StrictModes rule to a file the front reads or
// executes as root: the file and every directory above it must be owned by
// root and not writable by group or others. A sticky directory (e.g. /tmp)
// may be world-writable: its other users cannot replace a root-owned entry.
// Symlinks are followed (the check is on what would be opened).
func CheckTrusted(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return WalkTrusted(real, "/", RootOwner)
}

// RootOwner is the front's owner rule: root only.
func RootOwner(uid uint32) bool { return uid == 0 }

// WalkTrusted checks path (already resolved: no symlink is followed on the
// way up) and every directory above it, up to and including stop or the
// filesystem root, with the StrictModes rule and owner deciding which
// owners are trusted.
func WalkTrusted(path, stop string, owner func(uid uint32) bool) error {
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if err := CheckTrustedEntry(p, fi, p == path, owner); err != nil {
			return err
		}
		if p == stop || p == filepath.Dir(p) {
			return nil
		}
	}
}

// CheckTrustedEntry judges one file or directory; leaf is the entry a walk
// started from (a sticky directory protects the entries below it, not
// itself).
func CheckTrustedEntry(p string, fi fs.FileInfo, leaf bool, owner func(uid uint32) bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot read owner", p)
	}
	if !owner(st.Uid) {
		return fmt.Errorf("%w: %s is owned by uid %d, not root", ErrUntrusted, p, st.Uid)
	}
	mode := fi.Mode()
	writable := mode.Perm()&0o022 != 0
	sticky := mode.IsDir() && mode&fs.ModeSticky != 0
	if writable && (!sticky || leaf) {
		return fmt.Errorf("%w: %s is writable by group or others (mode %v)", ErrUntrusted, p, mode.Perm())
	}
	return nil
}
