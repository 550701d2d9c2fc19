package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostSection: make stress keeps the real-host summary that make
// test-host wrote between the markers of docs/HOST.md (no root needed).
func TestHostSection(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "HOST.md")
	if got := hostSection(p); got != "" {
		t.Errorf("no HOST.md: %q", got)
	}
	md := "# Real host\n\n<!-- host-summary: generated -->\n| a | b |\n<!-- /host-summary -->\n\n## How\n"
	if err := os.WriteFile(p, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	got := hostSection(p)
	for _, want := range []string{"\n## Real host (make test-host)\n\n<!-- host-summary: generated -->\n| a | b |\n<!-- /host-summary -->\n", "[HOST.md](HOST.md)"} {
		if !strings.Contains(got, want) {
			t.Errorf("hostSection = %q, want it to contain %q", got, want)
		}
	}
	if strings.Contains(got, "## How") {
		t.Errorf("hostSection copied past the end marker: %q", got)
	}
}
