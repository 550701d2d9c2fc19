package nslock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// flock works on any file; a regular temp file stands in for the namespace
// fd so this runs without root. Two opens are two open file descriptions,
// as two plugin processes would have.
func openTwice(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ns")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestLockUncontended(t *testing.T) {
	a, _ := openTwice(t)
	unlock, err := Lock(context.Background(), int(a.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

func TestLockWaitsForRelease(t *testing.T) {
	a, b := openTwice(t)
	unlockA, err := Lock(context.Background(), int(a.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		unlockB, err := Lock(context.Background(), int(b.Fd()))
		if err == nil {
			unlockB()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("second lock acquired while the first is held: %v", err)
	default:
	}
	unlockA()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second lock not acquired after release")
	}
}

func TestLockBoundedByContext(t *testing.T) {
	a, b := openTwice(t)
	unlockA, err := Lock(context.Background(), int(a.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer unlockA()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Lock(ctx, int(b.Fd()))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline error, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("lock wait overran its deadline: %s", d)
	}
}

func TestLockReleasedWhenHolderCloses(t *testing.T) {
	a, b := openTwice(t)
	if _, err := Lock(context.Background(), int(a.Fd())); err != nil {
		t.Fatal(err)
	}
	a.Close() // as the kernel does when a holder process dies
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock, err := Lock(ctx, int(b.Fd()))
	if err != nil {
		t.Fatalf("lock not released by close: %v", err)
	}
	unlock()
}
