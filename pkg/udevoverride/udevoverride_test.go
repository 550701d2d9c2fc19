package udevoverride

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func setup(t *testing.T, root string, kind string) {
	t.Helper()
	p := filepath.Join(root, Path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	switch kind {
	case "absent":
	case "ours":
		err = os.WriteFile(p, Rule(), 0o644)
	case "outdated":
		err = os.WriteFile(p, []byte("# ec2-policy-routes: old release\nSUBSYSTEM==\"net\"\n"), 0o644)
	case "foreign":
		err = os.WriteFile(p, []byte("SUBSYSTEM==\"net\", RUN+=\"/bin/true\"\n"), 0o644)
	case "empty-mask":
		err = os.WriteFile(p, nil, 0o644)
	case "devnull-link":
		err = os.Symlink("/dev/null", p)
	case "link-to-ours":
		q := filepath.Join(root, "ours.rules")
		if err = os.WriteFile(q, Rule(), 0o644); err == nil {
			err = os.Symlink(q, p)
		}
	case "fifo":
		err = syscall.Mkfifo(p, 0o644)
	case "dir":
		err = os.Mkdir(p, 0o755)
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestInspectPlaceRemove(t *testing.T) {
	cases := []struct {
		kind        string
		state       State
		placed      bool
		placeErr    error
		removed     bool
		afterRemove State
	}{
		{"absent", Absent, true, nil, true, Absent},
		{"ours", Ours, false, nil, true, Absent},
		{"outdated", OursOutdated, true, nil, true, Absent},
		{"foreign", Foreign, false, ErrForeign, false, Foreign},
		{"empty-mask", Foreign, false, ErrForeign, false, Foreign},
		{"devnull-link", Foreign, false, ErrForeign, false, Foreign},
		{"link-to-ours", Foreign, false, ErrForeign, false, Foreign},
		{"fifo", Foreign, false, ErrForeign, false, Foreign},
		{"dir", Foreign, false, ErrForeign, false, Foreign},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			root := t.TempDir()
			setup(t, root, tc.kind)
			done := make(chan struct{})
			var st State
			var err error
			go func() { st, err = Inspect(root); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Inspect blocked")
			}
			if err != nil || st != tc.state {
				t.Fatalf("Inspect = %v, %v; want %v", st, err, tc.state)
			}
			changed, err := Place(root)
			if changed != tc.placed || !errors.Is(err, tc.placeErr) {
				t.Fatalf("Place = %v, %v; want %v, %v", changed, err, tc.placed, tc.placeErr)
			}
			if err != nil && !strings.Contains(err.Error(), filepath.Join(root, Path)) {
				t.Errorf("error does not name the file: %v", err)
			}
			if tc.placeErr == nil {
				assertOurs(t, root)
			}
			removed, err := Remove(root)
			if err != nil || removed != tc.removed {
				t.Fatalf("Remove = %v, %v; want %v", removed, err, tc.removed)
			}
			if st, _ := Inspect(root); st != tc.afterRemove {
				t.Fatalf("after Remove: %v, want %v", st, tc.afterRemove)
			}
		})
	}
}

func assertOurs(t *testing.T, root string) {
	t.Helper()
	p := filepath.Join(root, Path)
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 || !fi.Mode().IsRegular() {
		t.Errorf("mode %v, want regular 0644", fi.Mode())
	}
	if st, _ := Inspect(root); st != Ours {
		t.Errorf("after Place: %v, want ours", st)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestRuleIsCopy(t *testing.T) {
	r := Rule()
	if !strings.Contains(string(r), Marker) {
		t.Fatal("embedded rule lacks the marker")
	}
	r[0] ^= 0xff
	if Rule()[0] == r[0] {
		t.Fatal("Rule returned the embedded slice itself")
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Absent: "absent", Ours: "ours", OursOutdated: "ours-outdated", Foreign: "foreign", State(9): "State(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", int(s), s.String(), want)
		}
	}
}
