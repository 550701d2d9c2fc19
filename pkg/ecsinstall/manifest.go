package ecsinstall

import (
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/boundedread"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

// modulePath is this project's Go module: a front whose build info names
// it is a build of this binary, whatever its version.
const modulePath = "github.com/ec2-policy-routes/ec2-policy-routes"

// Entry kinds an install makes.
const (
	KindFront    = "front"    // a copy of this binary (vpc-eni, vpc-branch-eni)
	KindLink     = "link"     // a symlink to UP/<name>
	KindSettings = "settings" // ecsfront.SettingsFile
)

// Made is one entry an install made.
type Made struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Target string `json:"target,omitempty"` // link
}

// ConfigRecord is what `--write` changed in the ECS config file.
type ConfigRecord struct {
	Path string `json:"path"`
	// Replaced are the ECS_CNI_PLUGINS_PATH lines naming another directory
	// that --write replaced, verbatim; uninstall --write puts them back.
	Replaced []string `json:"replaced,omitempty"`
}

// Manifest is what an install owns, recorded in the settings file's
// "install" field (ecsfront.Settings.Install): exactly these entries of DIR (and
// only while they are still what it made), the directories it created,
// whether it placed the udev override, and what it changed in ecs.config.
type Manifest struct {
	Version      int           `json:"version"`
	Dir          string        `json:"dir"`
	Entries      []Made        `json:"entries"`
	CreatedDirs  []string      `json:"createdDirs,omitempty"`
	UdevOverride bool          `json:"udevOverridePlaced,omitempty"`
	ECSConfig    *ConfigRecord `json:"ecsConfig,omitempty"`
}

// Found is one entry of DIR as it is now: plain data for Owned.
type Found struct {
	Name   string
	Kind   string // KindFront for a regular file, KindLink for a symlink, "dir", "other"
	Target string // symlink target
	Ours   bool   // regular file: a build of this module, or this binary
}

// Judged is Owned's verdict on DIR's entries.
type Judged struct {
	Ours    []Made  // install may rewrite them, uninstall removes them
	Foreign []Found // never touched
	Hidden  []Found // dot entries other than ours: left alone, not refused
}

// Owned decides which entries of DIR an install owns. With a manifest:
// the recorded ones that are still of the kind recorded. Without one (an install from before manifests, recognised by
// its settings file): what that layout created — fronts that are builds of
// this binary, symlinks into upstream, the settings file. Temporary files
// of an interrupted write of ours are ours.
func Owned(found []Found, m *Manifest, upstream string) Judged {
	var j Judged
	rec := map[string]Made{}
	if m != nil {
		for _, e := range m.Entries {
			rec[e.Name] = e
		}
	}
	for _, f := range found {
		if made, ok := judgeOne(f, m, rec, upstream); ok {
			j.Ours = append(j.Ours, made)
		} else if strings.HasPrefix(f.Name, ".") {
			j.Hidden = append(j.Hidden, f)
		} else {
			j.Foreign = append(j.Foreign, f)
		}
	}
	return j
}

func judgeOne(f Found, m *Manifest, rec map[string]Made, upstream string) (Made, bool) {
	switch {
	case isTempOfOurs(f.Name):
		return Made{Name: f.Name, Kind: "temp"}, true
	case f.Name == ecsfront.SettingsFile:
		return Made{Name: f.Name, Kind: KindSettings}, f.Kind == KindFront
	}
	if m != nil {
		r, ok := rec[f.Name]
		if !ok || r.Kind != f.Kind {
			return Made{}, false
		}
		return r, true // a front rewritten by `ecs refresh` is still ours
	}
	switch {
	case f.Kind == KindFront && ecsfront.IsFronted(f.Name) && f.Ours:
		return Made{Name: f.Name, Kind: KindFront}, true
	case f.Kind == KindLink && strings.HasPrefix(f.Target, filepath.Clean(upstream)+"/") && !ecsfront.IsFronted(f.Name):
		return Made{Name: f.Name, Kind: KindLink, Target: f.Target}, true
	}
	return Made{}, false
}

// isTempOfOurs matches atomicfile.Write's and atomicSymlink's temporary names.
func isTempOfOurs(name string) bool {
	return strings.HasPrefix(name, ".") && (strings.Contains(name, ".tmp-") || strings.Contains(name, ".tmp-link-"))
}

// Names lists entries' names, sorted, for messages.
func Names(fs []Found) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.Name)
	}
	sort.Strings(out)
	return out
}

// ScanDir lists dir's entries as Found. A missing dir is empty.
func ScanDir(dir string, self []byte) ([]Found, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil // nothing there yet; creating it says what is in the way
	}
	if err != nil {
		return nil, err
	}
	var selfSum string
	if self != nil {
		selfSum = sha(self)
	}
	var out []Found
	for _, e := range ents {
		out = append(out, scanOne(filepath.Join(dir, e.Name()), e.Name(), selfSum))
	}
	return out, nil
}

func scanOne(p, name, selfSum string) Found {
	f := Found{Name: name, Kind: "other"}
	fi, err := os.Lstat(p)
	switch {
	case err != nil:
		return f
	case fi.Mode()&os.ModeSymlink != 0:
		f.Kind = KindLink
		f.Target, _ = os.Readlink(p)
	case fi.IsDir():
		f.Kind = "dir"
	case fi.Mode().IsRegular():
		f.Kind = KindFront
		if !ecsfront.IsFronted(name) {
			return f // only a front's content matters
		}
		sum, err := FileSum(p)
		f.Ours = (err == nil && selfSum != "" && fmt.Sprintf("%x", sum) == selfSum) || isOurBuild(p)
	}
	return f
}

func isOurBuild(p string) bool {
	bi, err := buildinfo.ReadFile(p)
	return err == nil && (bi.Main.Path == modulePath || strings.HasPrefix(bi.Path, modulePath+"/"))
}

func sha(b []byte) string {
	return fmt.Sprintf("%x", FileSumBytes(b))
}

// ReadManifest reads the install record from the settings file in dir:
// nil, nil when dir holds no settings or they carry no record (an install
// from before manifests). It also returns the settings' upstream.
func ReadManifest(dir string) (*Manifest, string, error) {
	p := filepath.Join(dir, ecsfront.SettingsFile)
	b, err := boundedread.File(p, ecsfront.MaxSettingsSize)
	if os.IsNotExist(err) || errors.Is(err, syscall.ENOTDIR) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	s, err := ecsfront.ParseSettings(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", p, err)
	}
	if len(s.Install) == 0 {
		return nil, s.Upstream, nil
	}
	var m Manifest
	if err := json.Unmarshal(s.Install, &m); err != nil {
		return nil, s.Upstream, fmt.Errorf("%s: install record: %w", p, err)
	}
	return &m, s.Upstream, nil
}

// record puts m into the settings as their "install" field.
func record(s *ecsfront.Settings, m *Manifest) {
	sort.Slice(m.Entries, func(i, k int) bool { return m.Entries[i].Name < m.Entries[k].Name })
	s.Install, _ = json.Marshal(m) // plain strings and bools: cannot fail
}
