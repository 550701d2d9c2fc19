package ecsfront

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/logging"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plugin"
)

// containerLogDir is where the agent's container sees the host's
// /var/log/ecs (ecs-init bind-mounts it as /log).
const containerLogDir = "/log"

// logFileFor picks the front's log: the settings' logFile; else, inside the
// agent's container (a /log directory exists), /log/ec2-policy-routes.log;
// else the plugin's default /var/log/ecs/ec2-policy-routes.log. Both name
// the same host file, so the front's lines sit beside the plugin's.
// EC2_POLICY_ROUTES_LOG_FILE still overrides (package logging).
func logFileFor(s *Settings) string {
	if s != nil && s.LogFile != "" {
		return s.LogFile
	}
	if fi, err := os.Stat(containerLogDir); err == nil && fi.IsDir() {
		return filepath.Join(containerLogDir, filepath.Base(config.DefaultLogFile))
	}
	return config.DefaultLogFile
}

// callRecord is the one log line a front invocation writes: who called, the
// upstream runs (verb, exit status, duration), what our part did, outcome.
type callRecord struct {
	name     string // vpc-eni or vpc-branch-eni
	verb     string // CNI_COMMAND, or "probe"
	probe    []string
	start    time.Time
	upstream []*upstreamRun
	ours     *plugin.Outcome
	oursErr  error // our part's failure (DEL: logged, not returned)
	note     string
	err      *types.Error // the CNI error returned, if any
	exit     int
}

func (r *callRecord) addNote(n string) {
	if r.note != "" {
		r.note += "; "
	}
	r.note += n
}

func (r *callRecord) write(log *slog.Logger) {
	attrs := []slog.Attr{
		slog.String("front", r.name), slog.String("verb", r.verb),
		slog.String("container", os.Getenv("CNI_CONTAINERID")),
		slog.String("netns", os.Getenv("CNI_NETNS")), slog.String("ifname", os.Getenv("CNI_IFNAME")),
	}
	if r.probe != nil {
		attrs = append(attrs, slog.Any("args", r.probe))
	}
	if len(r.upstream) > 0 {
		runs := make([]map[string]any, 0, len(r.upstream))
		for _, u := range r.upstream {
			m := map[string]any{"verb": u.Verb, "exit": u.Exit, "duration_ms": ms(u.Duration), "held_ms": ms(u.Held)}
			if u.Err != nil {
				m["error"] = u.Err.Error()
			}
			runs = append(runs, m)
		}
		attrs = append(attrs, slog.Any("upstream", runs))
	}
	attrs = append(attrs, r.oursAttrs()...)
	level := slog.LevelInfo
	// outcome is "ok" or "error"; by says whose failure it was: the
	// front's (a CNI error of ours, with code), the upstream's (its exit
	// status and output passed through), or a refusal before any run.
	switch {
	case r.err != nil:
		level = slog.LevelError
		attrs = append(attrs, slog.String("outcome", "error"), slog.String("by", "front"),
			slog.Uint64("code", uint64(r.err.Code)), slog.String("error", r.err.Msg))
	case r.exit != 0 && len(r.upstream) == 0:
		level = slog.LevelError
		attrs = append(attrs, slog.String("outcome", "error"), slog.String("by", "refused"), slog.Int("exit", r.exit))
	case r.exit != 0:
		level = slog.LevelError
		attrs = append(attrs, slog.String("outcome", "error"), slog.String("by", "upstream"), slog.Int("exit", r.exit))
	default:
		attrs = append(attrs, slog.String("outcome", "ok"))
	}
	if r.note != "" {
		attrs = append(attrs, slog.String("note", r.note))
	}
	attrs = append(attrs, slog.Float64("duration_ms", ms(time.Since(r.start))))
	log.LogAttrs(context.Background(), level, "front "+r.verb, attrs...)
}

func (r *callRecord) oursAttrs() []slog.Attr {
	var attrs []slog.Attr
	if o := r.ours; o != nil {
		attrs = append(attrs, o.ChangeAttrs()...)
		if o.Note != "" {
			attrs = append(attrs, slog.String("ours_note", o.Note))
		}
	}
	if r.oursErr != nil {
		attrs = append(attrs, slog.String("ours_error", r.oursErr.Error()))
	}
	return attrs
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// newLogger opens the front's log at the settings' level; prepare opens
// its file ahead of the call's line (see front.prepareLog).
func newLogger(s *Settings) (log *slog.Logger, prepare, release func()) {
	level := ""
	if s != nil {
		level = s.LogLevel
	}
	return logging.NewPrepared(logging.Options{File: logFileFor(s), Level: level})
}
