package ecsfront

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plugin"
)

// frontMarkerVar is set in the upstream's environment: a front that finds it
// was started by a front, i.e. its settings' upstream names a front again
// (UP pointing at an install directory), and refuses instead of recursing.
const frontMarkerVar = "EC2_POLICY_ROUTES_FRONT"

// maxStdin bounds the network configuration read (the agent's is ~500 B).
const maxStdin = 1 << 20

// front is one invocation of the front.
type front struct {
	name     string // vpc-eni or vpc-branch-eni
	ctx      context.Context
	start    time.Time
	settings *Settings
	log      *slog.Logger
	rec      *callRecord
	stdout   io.Writer
	stderr   io.Writer
}

// Main runs the front for the fronted plugin name the binary was invoked
// as and returns the process exit status. It logs one line per call.
func Main(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signalContext()
	defer stop()
	fr := &front{name: name, ctx: ctx, start: time.Now(), stdout: stdout, stderr: stderr}
	fr.rec = &callRecord{name: name, start: fr.start}
	s, serr := loadOwnSettings(fr.rec)
	fr.settings = s
	log, release := newLogger(s)
	defer release()
	fr.log = log
	code := fr.dispatch(args, stdin, serr)
	fr.rec.exit = code
	fr.rec.write(log)
	return code
}

// signalContext is cancelled on SIGTERM/SIGINT with the plugin's signal
// cause, so that every wait (upstream ADD, link wait, IMDS) ends and says
// so; the cleanup that follows a failed ADD runs on its own budget.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		if _, ok := <-sigs; ok {
			cancel(plugin.ErrSignal())
		}
	}()
	return ctx, func() { signal.Stop(sigs); close(sigs); cancel(nil) }
}

// loadOwnSettings reads the settings file beside the front's executable.
// With no file the defaults apply (upstream /amazon-ecs-cni-plugins).
func loadOwnSettings(rec *callRecord) (*Settings, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find own executable to locate %s: %w", SettingsFile, err)
	}
	path := filepath.Join(filepath.Dir(exe), SettingsFile)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		rec.addNote("no " + path + ": default settings")
		return &Settings{Upstream: DefaultUpstreamDir}, nil
	}
	s, err := LoadSettings(path)
	if err != nil {
		return nil, fmt.Errorf("refusing to run: %w", err)
	}
	return s, nil
}

func (fr *front) dispatch(args []string, stdin io.Reader, serr error) int {
	verb := os.Getenv("CNI_COMMAND")
	if os.Getenv(frontMarkerVar) != "" {
		serr = fmt.Errorf("started by an ec2-policy-routes front: its upstream directory holds a front, not the real %s", fr.name)
	}
	if verb == "" {
		fr.rec.verb, fr.rec.probe = "probe", args
		return fr.probe(args, serr)
	}
	fr.rec.verb = verb
	if serr != nil {
		return fr.fail(types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("%s front: %v", fr.name, serr), ""))
	}
	data, err := io.ReadAll(io.LimitReader(stdin, maxStdin))
	if err != nil {
		return fr.fail(types.NewError(types.ErrIOFailure, fmt.Sprintf("read network configuration: %v", err), ""))
	}
	switch verb {
	case "ADD":
		return fr.add(data)
	case "DEL":
		return fr.del(data)
	case "CHECK":
		return fr.check(data)
	}
	return fr.passThrough(verb, data)
}

// upstreamPath is the real plugin, checked as StrictModes would before the
// front executes it as root.
func (fr *front) upstreamPath() (string, error) {
	path := filepath.Join(fr.settings.Upstream, fr.name)
	if err := CheckTrusted(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("upstream plugin %s does not exist (settings upstream %q; re-run `ec2-policy-routes ecs install`): %w", path, fr.settings.Upstream, err)
		}
		return "", fmt.Errorf("refusing to run upstream plugin %s: %w", path, err)
	}
	return path, nil
}

// probe answers --capabilities, --version (any call without CNI_COMMAND)
// with the upstream's own output, byte for byte, and its exit status: the
// agent exits if capabilities are wrong and drops task-ENI attributes if
// --version fails.
func (fr *front) probe(args []string, serr error) int {
	if serr != nil {
		fmt.Fprintf(fr.stderr, "%s (ec2-policy-routes front): %v\n", fr.name, serr)
		fr.rec.addNote(serr.Error())
		return 1
	}
	path, err := fr.upstreamPath()
	if err != nil {
		fmt.Fprintf(fr.stderr, "%s (ec2-policy-routes front): %v\n", fr.name, err)
		fr.rec.addNote(err.Error())
		return 1
	}
	ctx, cancel := context.WithTimeout(fr.ctx, probeTimeout)
	defer cancel()
	r := fr.run(ctx, path, "", args, nil)
	_, _ = fr.stdout.Write(r.Stdout)
	_, _ = fr.stderr.Write(r.Stderr)
	if r.Err != nil {
		fmt.Fprintf(fr.stderr, "%s (ec2-policy-routes front): upstream %s: %v\n", fr.name, path, r.Err)
		return 1
	}
	return r.Exit
}

// run executes the upstream and records the run for the log line.
func (fr *front) run(ctx context.Context, path, verb string, args []string, stdin []byte) *upstreamRun {
	r := runUpstream(ctx, path, verb, args, stdin)
	fr.rec.upstream = append(fr.rec.upstream, r)
	return r
}

// fail prints a CNI error as skel does (JSON on stdout, exit 1).
func (fr *front) fail(err error) int {
	te := asCNIError(err)
	fr.rec.err = te
	b, _ := json.MarshalIndent(te, "", "    ")
	_, _ = fr.stdout.Write(append(b, '\n'))
	return 1
}

// asCNIError keeps a *types.Error, else wraps err as an I/O failure (never
// skel's 999).
func asCNIError(err error) *types.Error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return types.NewError(types.ErrIOFailure, err.Error(), "")
}
