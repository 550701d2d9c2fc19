package ecsinstall

import "testing"

// A relative path is judged from its absolute form: the walk up ends at
// "/" (before, "." was its own parent and the walk never ended).
func TestCheckTrustedRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := CheckTrusted("."); err != nil {
		t.Fatalf("CheckTrusted(\".\") in a fresh temp dir: %v", err)
	}
}
