package main

import (
	"fmt"
	"os"
	"sync"
)

// scope implements harness.TB for one unit of work (a trial) outside `go
// test`: Fatalf and Skipf abort the unit by panicking with a *failure the
// caller recovers, and Cleanup functions run, last first, when the unit ends
// (close) or when the program is interrupted (closeAll).
type scope struct {
	name string
	tmp  string

	mu       sync.Mutex
	cleanups []func()
	closed   bool
}

// failure is what Fatalf/Skipf panic with.
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

var (
	liveMu sync.Mutex
	live   = map[*scope]bool{}
)

func newScope(name string) *scope {
	s := &scope{name: name}
	liveMu.Lock()
	live[s] = true
	liveMu.Unlock()
	return s
}

func (s *scope) Helper() {}

func (s *scope) Fatalf(format string, args ...any) {
	panic(&failure{msg: s.name + ": " + fmt.Sprintf(format, args...)})
}

func (s *scope) Skipf(format string, args ...any) {
	panic(&failure{msg: s.name + ": skipped: " + fmt.Sprintf(format, args...)})
}

func (s *scope) Logf(format string, args ...any) {
	if *verbose {
		fmt.Fprintf(os.Stderr, s.name+": "+format+"\n", args...)
	}
}

func (s *scope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// Registered after an interrupt already cleaned up: run now so
		// nothing is left behind.
		f()
		return
	}
	s.cleanups = append(s.cleanups, f)
}

func (s *scope) TempDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tmp == "" {
		d, err := os.MkdirTemp("", "ec2pr-bench-")
		if err != nil {
			panic(&failure{msg: s.name + ": tempdir: " + err.Error()})
		}
		s.tmp = d
		s.cleanups = append(s.cleanups, func() { _ = os.RemoveAll(d) })
	}
	return s.tmp
}

// close runs the cleanups once, last registered first.
func (s *scope) close() {
	s.mu.Lock()
	fs := s.cleanups
	s.cleanups = nil
	s.closed = true
	s.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	liveMu.Lock()
	delete(live, s)
	liveMu.Unlock()
}

// closeAll cleans up every scope still open (interrupt path).
func closeAll() {
	liveMu.Lock()
	var all []*scope
	for s := range live {
		all = append(all, s)
	}
	liveMu.Unlock()
	for _, s := range all {
		s.close()
	}
}

// try runs f, turning a Fatalf/Skipf panic into an error.
func try(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if fl, ok := r.(*failure); ok {
				err = fl
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}
