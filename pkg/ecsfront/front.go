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

// How the front runs (one process per call; nothing kept between calls):
//
//   - Probes (no CNI_COMMAND: --capabilities, --version, anything else):
//     UP/<name> with the same arguments; its stdout byte for byte and its
//     exit status.
//   - ADD: a preflight that rejects what ours would (config, CNI_NETNS
//     the host's or the front's own namespace) before anything runs; the
//     upstream ADD (same stdin and environment, CNI_PATH=UP, bounded by
//     upstreamTimeout); then verification in CNI_NETNS (the link
//     CNI_IFNAME, its MAC, every configured address); then the plugin's own
//     ADD in-process (plugin.Run) on a synthesized prevResult (PluginConfig).
//     The output is the upstream's. When anything after the upstream ADD
//     fails (or the upstream failed or was killed), ours is undone and the
//     upstream DEL runs (vpc-eni's returns the ENI to the host,
//     vpc-branch-eni's deletes the link named CNI_IFNAME); the error says
//     which, and names any link still carrying the ENI's MAC in CNI_NETNS.
//     It is ours (or the upstream's own, passed through).
//   - DEL: ours first, never failing the DEL, derived from the kernel
//     (routes and rules stamped with protocol 236, tables found by link),
//     so it holds after an agent restart lost the container's /run; then
//     the upstream DEL, whose outcome is returned.
//   - CHECK: the upstream's, then ours when cniVersion >= 0.4.0. Other
//     verbs (VERSION, STATUS, GC) go to the upstream only.
//
// Table numbering: a vpc-eni ENI with IMDS enabled gets the IMDS number
// (10000 + 100*network-card + device-number, as ec2-net-utils); with IMDS
// disabled, and always for a vpc-branch-eni (IMDS does not list branch
// ENIs, so it is never asked), the first table free in the task namespace
// from tableBase (default 10000: device 0 is the primary ENI, never a task
// ENI, so that number cannot collide with an IMDS-numbered one on card 0).
// The rule priority is the table number unless `priority` is set.
//
// Log: one JSON line per call (probes included) with each upstream run's
// verb, exit status and duration, to the settings' logFile, else
// /log/ec2-policy-routes.log inside the agent's container (the host's
// /var/log/ecs), else /var/log/ecs/ec2-policy-routes.log.

// front is one invocation of the front.
type front struct {
	name     string // vpc-eni or vpc-branch-eni
	ctx      context.Context
	cancel   context.CancelCauseFunc
	sigs     chan os.Signal // nil until watchSignals
	logOpen  func()         // opens the log file ahead of the call's line
	pre      *preConf       // ADD: our configuration, built while the upstream starts
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
	ctx, cancel := context.WithCancelCause(context.Background())
	fr := &front{name: name, ctx: ctx, cancel: cancel, start: time.Now(), stdout: stdout, stderr: stderr}
	defer fr.stopSignals()
	fr.rec = &callRecord{name: name, start: fr.start}
	s, serr := loadOwnSettings(fr.rec)
	fr.settings = s
	log, prepare, release := newLogger(s)
	defer release()
	fr.log, fr.logOpen = log, prepare
	code := fr.dispatch(args, stdin, serr)
	fr.rec.exit = code
	fr.rec.write(log)
	return code
}

// watchSignals makes SIGTERM/SIGINT cancel the front's context with the
// plugin's signal cause, so that every wait (upstream ADD, link wait,
// IMDS) ends and says so; the cleanup that follows a failed ADD runs on
// its own budget. It is installed once an upstream has been started, off
// the path to it (until then the default action, exit, leaves nothing
// behind: the front has changed nothing), and before anything of ours
// changes the namespace.
func (fr *front) watchSignals() {
	if fr.sigs != nil {
		return
	}
	fr.sigs = make(chan os.Signal, 1)
	signal.Notify(fr.sigs, syscall.SIGTERM, syscall.SIGINT)
	go func(sigs <-chan os.Signal) {
		if _, ok := <-sigs; ok {
			fr.cancel(plugin.ErrSignal())
		}
	}(fr.sigs)
}

// prepareLog opens the log file while the upstream starts, off the path
// of the call's one line at the end (which would open it otherwise), when
// that line is at a level the log keeps.
func (fr *front) prepareLog() {
	if fr.log.Enabled(fr.ctx, slog.LevelInfo) {
		fr.logOpen()
	}
}

func (fr *front) stopSignals() {
	if fr.sigs != nil {
		signal.Stop(fr.sigs)
		close(fr.sigs)
	}
	fr.cancel(nil)
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

// upstreamBin is the upstream plugin: Path as the settings name it (its
// argv[0]; its directory becomes CNI_PATH) and File, what it resolves to.
type upstreamBin struct{ Path, File string }

// upstreamPath resolves the real plugin and checks it as StrictModes would
// before the front executes it as root. The resolved file is executed, so
// a symlink swapped after the check (in a directory the check did not
// cover) cannot change what runs.
func (fr *front) upstreamPath() (upstreamBin, error) {
	path := filepath.Join(fr.settings.Upstream, fr.name)
	file, err := resolveTrusted(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return upstreamBin{}, fmt.Errorf("upstream plugin %s does not exist (settings upstream %q; re-run `ec2-policy-routes ecs install`): %w", path, fr.settings.Upstream, err)
		}
		return upstreamBin{}, fmt.Errorf("refusing to run upstream plugin %s: %w", path, err)
	}
	return upstreamBin{Path: path, File: file}, nil
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
		fmt.Fprintf(fr.stderr, "%s (ec2-policy-routes front): upstream %s: %v\n", fr.name, path.Path, r.Err)
		return 1
	}
	return r.Exit
}

// run executes the upstream and records the run for the log line.
func (fr *front) run(ctx context.Context, path upstreamBin, verb string, args []string, stdin []byte) *upstreamRun {
	p, r := fr.spawn(path, verb, args)
	if p == nil {
		return r
	}
	return fr.finish(ctx, p, stdin)
}

// spawn starts the upstream with its stdin held back (upstreamProc); the
// caller's own work until finish overlaps the upstream's exec and runtime
// start. When it cannot start, the run that says why is returned instead.
func (fr *front) spawn(path upstreamBin, verb string, args []string) (*upstreamProc, *upstreamRun) {
	p, err := startUpstream(path, verb, args)
	if err != nil {
		r := notStarted(verb, args, err)
		fr.rec.upstream = append(fr.rec.upstream, r)
		return nil, r
	}
	fr.watchSignals()
	return p, nil
}

// finish releases a spawned upstream's stdin and waits for it, bounded by
// ctx, and records the run for the log line.
func (fr *front) finish(ctx context.Context, p *upstreamProc, stdin []byte) *upstreamRun {
	r := p.release(ctx, stdin)
	fr.rec.upstream = append(fr.rec.upstream, r)
	return r
}

// fail prints a CNI error as skel does (JSON on stdout, exit 1).
func (fr *front) fail(err error) int {
	te := plugin.CNIError(types.ErrIOFailure, err)
	fr.rec.err = te
	b, _ := json.MarshalIndent(te, "", "    ")
	_, _ = fr.stdout.Write(append(b, '\n'))
	return 1
}
