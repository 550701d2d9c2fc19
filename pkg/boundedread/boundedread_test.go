package boundedread

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("1234\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sparse := filepath.Join(dir, "sparse")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(3 << 30); err != nil { // 3 GiB, no blocks
		t.Fatal(err)
	}
	_ = f.Close()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		path    string
		max     int64
		want    string
		wantErr error
	}{
		{"regular", small, 64, "1234\n", nil},
		{"exactly max", small, 5, "1234\n", nil},
		{"one over max", small, 4, "", ErrTooLarge},
		{"sparse 3 GiB", sparse, 4096, "", ErrTooLarge},
		{"fifo without writer", fifo, 64, "", ErrNotRegular},
		{"directory", dir, 64, "", ErrNotRegular},
		{"missing", filepath.Join(dir, "nope"), 64, "", fs.ErrNotExist},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			var got []byte
			var err error
			go func() { got, err = File(tc.path, tc.max); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("File blocked")
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
