package systemd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRunning(t *testing.T) {
	root := t.TempDir()
	if Running(root) {
		t.Fatal("Running on an empty root")
	}
	if err := os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	if !Running(root) {
		t.Fatal("not Running with /run/systemd/system present")
	}
}

func TestReloadUdevWithoutSystemd(t *testing.T) {
	if Running("/") {
		t.Skip("systemd runs here")
	}
	if err := ReloadUdev(context.Background()); !errors.Is(err, ErrNoSystemd) {
		t.Fatalf("ReloadUdev without systemd: %v, want ErrNoSystemd", err)
	}
}
