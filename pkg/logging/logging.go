// Package logging builds the plugin's structured (JSON lines) logger.
//
// A CNI plugin is a short-lived process, and on a busy host many of them run
// at once and append to the same file. The writer here is built for that:
//
//   - each record is formatted in memory and written with ONE write(2) of a
//     complete line to an O_APPEND descriptor, so lines from concurrent
//     processes never interleave;
//   - the size check, the rotation (rename to .1, .2, ...) and the write all
//     happen under flock(2) on a sidecar lock file (<file>.lock), and a
//     writer whose descriptor no longer names the live file (someone else
//     rotated) reopens it first, so rotation loses no line and never leaves
//     a process appending to a file that has been shifted away;
//   - the file is opened lazily on the first record, so an invocation whose
//     records are all below the level costs nothing;
//   - if the file cannot be opened the logger says so once on stderr and
//     discards records: logging never makes an invocation fail.
//
// The lock is flock on an open descriptor, released by the kernel when the
// holder exits or is killed, so a crashed plugin cannot wedge the log.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Environment overrides. They win over the network configuration so an
// operator can raise the level or move the file on a host without touching
// the runtime's configs (libcni passes the runtime's environment through).
const (
	EnvFile       = "EC2_POLICY_ROUTES_LOG_FILE"
	EnvLevel      = "EC2_POLICY_ROUTES_LOG_LEVEL"
	EnvMaxSize    = "EC2_POLICY_ROUTES_LOG_MAX_SIZE"    // bytes, or with a K/M/G suffix
	EnvMaxBackups = "EC2_POLICY_ROUTES_LOG_MAX_BACKUPS" // rotated files kept
)

// Rotation defaults: at one line (~300-600 bytes) per invocation, 10 MiB
// holds tens of thousands of invocations; five backups bound the total to
// 60 MiB.
const (
	DefaultMaxSize    = 10 << 20
	DefaultMaxBackups = 5
)

// Special values of the file setting.
const (
	FileOff    = "off"    // no log at all
	FileStderr = "stderr" // JSON lines on stderr (debugging by hand)
)

// File and directory modes: the log names containers and addresses, which is
// not secret but is not for every local user either.
const (
	fileMode = 0o640
	dirMode  = 0o750
)

// Options configures New. Zero values mean the defaults.
type Options struct {
	File       string // path, FileOff or FileStderr; "" is FileOff
	Level      string // debug, info, warn or error; "" is info
	MaxSize    int64  // rotate before a write would pass this many bytes
	MaxBackups int    // rotated files kept (<file>.1 newest); <0 keeps none
	// Stderr receives the one-line notices (file unavailable, bad override)
	// and, for FileStderr, the records. Default os.Stderr.
	Stderr io.Writer
	// Getenv reads the overrides. Default os.Getenv.
	Getenv func(string) string
}

// New returns a JSON-lines logger configured by o after applying the
// environment overrides, and a function that closes the file.
func New(o Options) (*slog.Logger, func()) {
	l, _, closeFn := NewPrepared(o)
	return l, closeFn
}

// NewPrepared is New plus prepare, which opens the file now instead of at
// the first record (a no-op without a file): for a caller with idle time
// before its first record, such as the ECS front while its upstream
// starts. A failure is reported and handled as the first record's would.
func NewPrepared(o Options) (l *slog.Logger, prepare, closeFn func()) {
	o = o.withEnv()
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	level, err := ParseLevel(o.Level)
	if err != nil {
		notice(o.Stderr, "%v; using info", err)
		level = slog.LevelInfo
	}
	var w io.Writer
	prepare, closeFn = func() {}, func() {}
	switch o.File {
	case "", FileOff:
		return slog.New(slog.DiscardHandler), prepare, closeFn
	case FileStderr:
		w = o.Stderr
	default:
		f := NewFile(o.File, o.MaxSize, o.MaxBackups, o.Stderr)
		w, closeFn = f, func() { _ = f.Close() }
		prepare = func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.ensureOpen()
		}
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: redact})
	return slog.New(h).With("pid", os.Getpid()), prepare, closeFn
}

func (o Options) withEnv() Options {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	stderr := o.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	if v := getenv(EnvFile); v != "" {
		if err := CheckFile(v); err != nil {
			notice(stderr, "%s: %v; ignoring it (logging to %s)", EnvFile, err, fileName(o.File))
		} else {
			o.File = v
		}
	}
	if v := getenv(EnvLevel); v != "" {
		if _, err := ParseLevel(v); err != nil {
			notice(stderr, "%s: %v; ignoring it", EnvLevel, err)
		} else {
			o.Level = v
		}
	}
	if v := getenv(EnvMaxSize); v != "" {
		if n, err := parseSize(v); err != nil {
			notice(stderr, "%s %q: %v; ignoring it", EnvMaxSize, v, err)
		} else {
			o.MaxSize = n
		}
	}
	if v := getenv(EnvMaxBackups); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 0 {
			notice(stderr, "%s %q: not a count >= 0; ignoring it", EnvMaxBackups, v)
		} else if n == 0 {
			o.MaxBackups = -1
		} else {
			o.MaxBackups = n
		}
	}
	return o
}

// CheckFile accepts an absolute path, FileStderr and FileOff. A relative
// path would put the log and its .lock sidecar wherever the runtime happens
// to run the plugin from; the config's logFile, the front's settings and
// the environment override all refuse one.
func CheckFile(path string) error {
	if path == FileStderr || path == FileOff || filepath.IsAbs(path) {
		return nil
	}
	return fmt.Errorf("%q is a relative path: it must be absolute (or %q, %q), or the log and its .lock would land in the runtime's working directory",
		path, FileStderr, FileOff)
}

// fileName names a file setting in a notice.
func fileName(file string) string {
	if file == "" {
		return FileOff
	}
	return file
}

// ParseLevel maps debug|info|warn|error (any case; "warning" too; "" is
// info) to a slog level. It is the one parser of a level: config validation,
// the environment override and the logger all use it, and LevelName is the
// one spelling, so a level that validates is the level that runs.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, fmt.Errorf("log level %q is not debug, info, warn or error", s)
}

// LevelName is the canonical (lower-case) name of one of ParseLevel's
// levels, as configurations spell it.
func LevelName(l slog.Level) string {
	switch {
	case l <= slog.LevelDebug:
		return "debug"
	case l <= slog.LevelInfo:
		return "info"
	case l <= slog.LevelWarn:
		return "warn"
	}
	return "error"
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a positive size (examples: 10485760, 512K, 10M)")
	}
	return n * mult, nil
}

// secretKeys are attribute keys whose values never reach the log, whatever a
// caller passes: defence in depth for IMDS tokens and the like.
var secretKeys = []string{"token", "secret", "password", "passwd", "authorization", "credential", "session"}

// redact also renders the record time in UTC: fleet logs compare across
// hosts, and it spares each short-lived process loading /etc/localtime
// (~50 µs of a cold start).
func redact(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
		return slog.Time(slog.TimeKey, a.Value.Time().UTC())
	}
	k := strings.ToLower(a.Key)
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return slog.String(a.Key, "[redacted]")
		}
	}
	return a
}

func notice(w io.Writer, format string, a ...any) {
	fmt.Fprintf(w, "ec2-policy-routes: "+format+"\n", a...)
}

// File is an io.Writer appending whole lines to a size-rotated file shared
// by many processes. Each Write must be one complete record (slog handlers
// write exactly one line per call).
type File struct {
	path       string
	maxSize    int64
	maxBackups int
	stderr     io.Writer

	mu     sync.Mutex
	fd     int // log file, O_APPEND; -1 until opened
	lockFd int // <path>.lock; -1 until opened
	ino    uint64
	dev    uint64
	failed bool // open failed: notice given, records discarded
}

// NewFile returns a writer for path; nothing is opened until the first
// Write. maxSize <= 0 means DefaultMaxSize; maxBackups 0 means
// DefaultMaxBackups and < 0 keeps no rotated file.
func NewFile(path string, maxSize int64, maxBackups int, stderr io.Writer) *File {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxBackups == 0 {
		maxBackups = DefaultMaxBackups
	}
	if maxBackups < 0 {
		maxBackups = 0
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	return &File{path: path, maxSize: maxSize, maxBackups: maxBackups, stderr: stderr, fd: -1, lockFd: -1}
}

// Write appends p, rotating first if p would take the file past its size.
// It never returns an error to the logger and never blocks for long: the
// plugin must work without its log. The first failure is explained on
// stderr, later records are dropped.
func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ensureOpen() {
		return len(p), nil
	}
	if err := f.writeLocked(p); err != nil {
		f.failed = true
		notice(f.stderr, "cannot write log file %s: %v; continuing without a log file", f.path, err)
	}
	return len(p), nil
}

// ensureOpen opens the file unless it is open or failed before, and
// reports whether it is usable. f.mu is held.
func (f *File) ensureOpen() bool {
	if f.failed {
		return false
	}
	if f.fd < 0 {
		if err := f.open(); err != nil {
			f.failed = true
			notice(f.stderr, "cannot open log file %s: %v; continuing without a log file", f.path, err)
			return false
		}
	}
	return true
}

// lockWait bounds the wait for another process's rotation or write: they
// take microseconds, so a lock held this long is held by something stuck.
var lockWait = 2 * time.Second

// writeLocked does the size check, rotation and write under the lock.
func (f *File) writeLocked(p []byte) error {
	if err := flockBounded(f.lockFd, lockWait); err != nil {
		return fmt.Errorf("lock %s.lock: %w", f.path, err)
	}
	defer func() { _ = flock(f.lockFd, unix.LOCK_UN) }()

	if err := f.ensureCurrent(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", f.path, err)
	}
	if st.Size > 0 && st.Size+int64(len(p)) > f.maxSize {
		if err := f.rotate(); err != nil {
			return err
		}
	}
	_, err := writeAll(f.fd, p)
	return err
}

// flockBounded takes an exclusive flock, giving up after limit. The
// uncontended case is one non-blocking call; otherwise a blocking flock
// runs on its own goroutine and is abandoned at the deadline (it cannot be
// interrupted; the process is about to exit and its fds with it).
func flockBounded(fd int, limit time.Duration) error {
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return nil
	} else if err != unix.EWOULDBLOCK && err != unix.EINTR {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- flock(fd, unix.LOCK_EX) }()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return fmt.Errorf("held by another process for more than %s", limit)
	}
}

// open creates the directory, opens the log and then, only for a regular
// file, the lock file beside it: a device, FIFO or socket at the log path
// (logFile "/dev/stderr", a FIFO nobody reads) never gets a stray
// "<path>.lock" next to it.
func (f *File) open() error {
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	if err := f.openLog(); err != nil {
		return err
	}
	// O_NOFOLLOW here and in openLog: a root process must not append to,
	// or fchmod, whatever a symlink planted at the log path points to.
	lfd, err := unix.Open(f.path+".lock", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, fileMode)
	if err != nil {
		_ = unix.Close(f.fd)
		f.fd = -1
		return fmt.Errorf("open lock file: %w", err)
	}
	f.lockFd = lfd
	return nil
}

// openLog opens the log path for appending, regular files only. O_NONBLOCK:
// opening a FIFO for writing without a reader would otherwise block the
// plugin until the runtime kills it; it is harmless on a regular file.
func (f *File) openLog() error {
	fd, err := unix.Open(f.path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, fileMode)
	if err != nil {
		return explainOpen(f.path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = unix.Close(fd)
		return fmt.Errorf("%s, not a regular file", fileKind(st.Mode))
	}
	// A file created earlier with a wider mode (or by another tool) is
	// brought down to 0640; never widen a stricter one.
	if perm := st.Mode & 0o777; perm&^fileMode != 0 {
		_ = unix.Fchmod(fd, perm&fileMode)
	}
	if f.fd >= 0 {
		_ = unix.Close(f.fd)
	}
	f.fd, f.ino, f.dev = fd, st.Ino, uint64(st.Dev)
	return nil
}

// explainOpen turns the errors of opening something that is not a regular
// file (ENXIO: a FIFO without a reader; ELOOP: a symlink such as
// /dev/stderr) into the reason an operator needs.
func explainOpen(path string, err error) error {
	var st unix.Stat_t
	if unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s, not a regular file (%w)", fileKind(st.Mode), err)
	}
	return err
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFDIR:
		return "a directory"
	}
	return "not a regular file"
}

// ensureCurrent reopens the log if another process rotated it since this one
// opened it (the path now names a different inode, or nothing).
func (f *File) ensureCurrent() error {
	var st unix.Stat_t
	err := unix.Stat(f.path, &st)
	if err == nil && st.Ino == f.ino && uint64(st.Dev) == f.dev {
		return nil
	}
	if err != nil && err != unix.ENOENT {
		return fmt.Errorf("stat %s: %w", f.path, err)
	}
	return f.openLog()
}

// rotate shifts <path>.N-1 → .N ... <path> → .1 (dropping the oldest) and
// opens a fresh <path>. Called with the lock held.
func (f *File) rotate() error {
	if f.maxBackups == 0 {
		if err := unix.Unlink(f.path); err != nil && err != unix.ENOENT {
			return fmt.Errorf("rotate %s: %w", f.path, err)
		}
		return f.openLog()
	}
	for i := f.maxBackups - 1; i >= 1; i-- {
		if err := unix.Rename(Backup(f.path, i), Backup(f.path, i+1)); err != nil && err != unix.ENOENT {
			return fmt.Errorf("rotate %s: %w", f.path, err)
		}
	}
	if err := unix.Rename(f.path, Backup(f.path, 1)); err != nil && err != unix.ENOENT {
		return fmt.Errorf("rotate %s: %w", f.path, err)
	}
	return f.openLog()
}

// Backup names the i-th rotated file of path (1 is the newest).
func Backup(path string, i int) string { return path + "." + strconv.Itoa(i) }

// Close releases the descriptors (and with them any lock).
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd >= 0 {
		_ = unix.Close(f.fd)
		f.fd = -1
	}
	if f.lockFd >= 0 {
		_ = unix.Close(f.lockFd)
		f.lockFd = -1
	}
	return nil
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// writeAll issues one write(2) for the whole record; only a short write
// (disk full) or EINTR leads to a second one.
func writeAll(fd int, p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(fd, p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrShortWrite
		}
		done += n
	}
	return done, nil
}
