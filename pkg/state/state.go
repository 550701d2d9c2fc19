// Package state keeps the little the plugin must remember between ADD and
// DEL on the host: which link altnames it added (so that DEL removes only
// those). One small JSON file per attachment (containerID, ifname) in a
// root-only directory, written atomically (temp file + rename in the same
// directory). The file name is a hash of the attachment, so no input can
// make a path that leaves the directory.
package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultDir is on tmpfs: state does not survive a reboot, and neither do
// the namespaces it describes.
const DefaultDir = "/run/ec2-policy-routes"

const (
	dirMode  = 0o700
	fileMode = 0o600
	suffix   = ".json"
	// maxFile bounds what Load reads: a record is a few hundred bytes.
	maxFile = 64 << 10
)

// Link records the altnames this plugin added to one link.
type Link struct {
	IfName   string   `json:"ifname"`
	Index    int      `json:"index"`
	MAC      string   `json:"mac"`
	AltNames []string `json:"altnames"`
}

// Attachment is the record of one (containerID, ifname).
type Attachment struct {
	Network     string `json:"network"` // CNI network name: GC runs per network
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
	Netns       string `json:"netns"`
	Links       []Link `json:"links"`
}

// Store is a state directory.
type Store struct{ Dir string }

// Name returns the file name for an attachment: sha256 of containerID and
// ifname, hex; only [0-9a-f] plus the suffix.
func Name(containerID, ifname string) string {
	h := sha256.Sum256([]byte(containerID + "\x00" + ifname))
	return hex.EncodeToString(h[:]) + suffix
}

func (s Store) path(containerID, ifname string) string {
	return filepath.Join(s.Dir, Name(containerID, ifname))
}

// Load returns the record, or nil when there is none.
func (s Store) Load(containerID, ifname string) (*Attachment, error) {
	a, err := s.read(s.path(containerID, ifname))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return a, err
}

func (s Store) read(p string) (*Attachment, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var a Attachment
	dec := json.NewDecoder(io.LimitReader(f, maxFile))
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("state file %s: %w", p, err)
	}
	return &a, nil
}

// Save writes the record atomically. A record without links is removed
// instead: there is nothing to remember.
func (s Store) Save(a *Attachment) error {
	if len(a.Links) == 0 {
		return s.Remove(a.ContainerID, a.IfName)
	}
	if err := os.MkdirAll(s.Dir, dirMode); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	// MkdirAll leaves an existing directory's mode alone; tighten it.
	if err := os.Chmod(s.Dir, dirMode); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(fileMode); err != nil {
		tmp.Close()
		return fmt.Errorf("state file: %w", err)
	}
	// No fsync: the rename is what makes the swap atomic for readers, and
	// a crash that could lose the data also ends every namespace the record
	// describes (a record Load cannot read is dropped). Where /run is not
	// tmpfs an fsync is a disk flush on every ADD (1.4-13 ms measured).
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path(a.ContainerID, a.IfName)); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	ok = true
	return nil
}

// Remove deletes the record; a missing one is not an error.
func (s Store) Remove(containerID, ifname string) error {
	err := os.Remove(s.path(containerID, ifname))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// List returns every record in the directory (none when it does not exist)
// with its file name. Unreadable records are returned in bad, by name.
func (s Store) List() (recs map[string]*Attachment, bad []string, err error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	recs = map[string]*Attachment{}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, suffix) || strings.HasPrefix(name, ".") {
			continue
		}
		a, err := s.read(filepath.Join(s.Dir, name))
		if err != nil {
			bad = append(bad, name)
			continue
		}
		recs[name] = a
	}
	return recs, bad, nil
}

// RemoveName deletes a record by file name as List returned it.
func (s Store) RemoveName(name string) error {
	if name != filepath.Base(name) || !strings.HasSuffix(name, suffix) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("not a state file name: %q", name)
	}
	err := os.Remove(filepath.Join(s.Dir, name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// SweepTemp removes temporary files older than age that a writer killed
// between create and rename left behind.
func (s Store) SweepTemp(age time.Duration) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > age {
			_ = os.Remove(filepath.Join(s.Dir, e.Name()))
		}
	}
}
