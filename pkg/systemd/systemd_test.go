package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	godbus "github.com/godbus/dbus/v5"
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

func TestNoSuchUnit(t *testing.T) {
	e := godbus.Error{Name: noSuchUnit, Body: []any{"Unit x.service not loaded."}}
	if !NoSuchUnit(fmt.Errorf("stopping x: %w", e)) || !NoSuchUnit(&e) {
		t.Error("NoSuchUnit does not recognise systemd's error")
	}
	if NoSuchUnit(errors.New("Unit x.service not loaded.")) || NoSuchUnit(nil) {
		t.Error("NoSuchUnit matched a plain error")
	}
}
