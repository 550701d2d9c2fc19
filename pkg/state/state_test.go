package state

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

func TestNameNeverEscapes(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{64}\.json$`)
	for _, c := range [][2]string{{"../../etc/passwd", "eth0"}, {"a", "/"}, {"", ""}, {"x\x00y", "..\n"}} {
		n := Name(c[0], c[1])
		if !re.MatchString(n) {
			t.Errorf("Name(%q, %q) = %q", c[0], c[1], n)
		}
	}
	if Name("ab", "c") == Name("a", "bc") {
		t.Error("attachment fields are not separated")
	}
}

func TestSaveLoadRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := Store{Dir: dir}
	if a, err := s.Load("c", "eth0"); a != nil || err != nil {
		t.Fatalf("empty store: %v %v", a, err)
	}
	in := &Attachment{Network: "n", ContainerID: "c", IfName: "eth0", Netns: "/var/run/netns/x",
		Links: []Link{{IfName: "eth1", Index: 7, MAC: "0a:00:00:00:00:02", AltNames: []string{"device-number-1.0", "eni-0abc"}}}}
	if err := s.Save(in); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v %v", fi.Mode(), err)
	}
	fi, err = os.Stat(filepath.Join(dir, Name("c", "eth0")))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v %v", fi.Mode(), err)
	}
	out, err := s.Load("c", "eth0")
	if err != nil || out == nil || out.Links[0].AltNames[1] != "eni-0abc" || out.Network != "n" {
		t.Fatalf("load: %+v %v", out, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}
	recs, bad, err := s.List()
	if err != nil || len(recs) != 1 || len(bad) != 0 {
		t.Fatalf("list %v %v %v", recs, bad, err)
	}
	// Saving no links removes the record.
	in.Links = nil
	if err := s.Save(in); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Load("c", "eth0"); a != nil {
		t.Fatal("empty record kept")
	}
	if err := s.Remove("c", "eth0"); err != nil {
		t.Fatal("second remove:", err)
	}
}

func TestCorruptAndStrayFiles(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir}
	bad := Name("c", "eth0")
	if err := os.WriteFile(filepath.Join(dir, bad), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".tmp-123")
	if err := os.WriteFile(tmp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	_ = os.Chtimes(tmp, old, old)
	if _, err := s.Load("c", "eth0"); err == nil {
		t.Fatal("corrupt record loaded")
	}
	recs, badNames, err := s.List()
	if err != nil || len(recs) != 0 || len(badNames) != 1 || badNames[0] != bad {
		t.Fatalf("list %v %v %v", recs, badNames, err)
	}
	if err := s.RemoveName("../x.json"); err == nil {
		t.Fatal("RemoveName accepted a path")
	}
	s.SweepTemp(time.Minute)
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatal("stale temp file kept")
	}
}
