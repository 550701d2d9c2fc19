package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// stage copies bin into a fresh file of its own under the run's scratch
// directory, keeping its base name (the plugin acts on the name it runs
// as), and returns the copy's path; every binary the benchmark times runs
// from such a copy.
//
// Why: what an exec costs depends on how the file sits in the page cache,
// not only on its bytes. On this project's 6.18 ext4 VM, a binary the Go
// linker has just written (through mmap), or one paged back in by exec
// after eviction, ran ADD/DEL 10-15% slower than a byte-identical copy
// written with write(2) (most likely 4 KiB folios against the copy's large
// ones: more page-fault and teardown work in the kernel, the same user
// instructions and syscalls). A build the go command took from its cache
// is such a copy, a fresh link is not, so binaries built at different times
// and compared as they lie measured their page cache: "main 1.18x of
// f617f24" was mostly that (f617f24's own source, freshly linked, 1.12x).
// Copied the same way, every binary starts as a freshly installed one.
func (b *bench) stage(bin string) (string, error) {
	dir, err := os.MkdirTemp(b.root.TempDir(), "bin-")
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, filepath.Base(bin))
	if err := copyExec(bin, dst); err != nil {
		return "", fmt.Errorf("stage %s: %w", bin, err)
	}
	return dst, nil
}

// stageAll is stage for each of bins, in order.
func (b *bench) stageAll(bins []string) ([]string, error) {
	out := make([]string, len(bins))
	for i, bin := range bins {
		var err error
		if out[i], err = b.stage(bin); err != nil {
			return nil, err
		}
	}
	return out, nil
}
