package plugin

import (
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/logging"
)

// LoggerFactory builds an invocation's logger from the configured logFile
// and logLevel (defaults applied; environment overrides are the factory's
// business). The returned func releases it.
type LoggerFactory func(file, level string) (*slog.Logger, func())

// invoke runs one verb and writes exactly one structured line about it,
// whatever the outcome: time, container, netns, ifname, verb, outcome (ok,
// or error with CNI code and message), duration, tables and the rules and
// routes added or removed.
func (p *Plugin) invoke(verb string, args *skel.CmdArgs, run func(*skel.CmdArgs, *Outcome) error) error {
	start := time.Now()
	if p.NewLogger != nil {
		file, level := logSettings(args.StdinData)
		log, release := p.NewLogger(file, level)
		defer release()
		p.Log = log
	}
	out := &Outcome{}
	err := run(args, out)
	p.logOutcome(verb, args, out, time.Since(start), err)
	return err
}

// logSettings reads logFile and logLevel leniently, so that a configuration
// the verb will reject (and the line saying so) still reaches the configured
// log. An unknown level falls back to the default; config.Parse reports it.
func logSettings(stdin []byte) (file, level string) {
	var c struct {
		LogFile  string `json:"logFile"`
		LogLevel string `json:"logLevel"`
	}
	_ = json.Unmarshal(stdin, &c)
	file, level = config.DefaultLogFile, config.DefaultLogLevel
	if c.LogFile != "" && config.CheckLogFile(c.LogFile) == nil {
		file = c.LogFile // a relative one is refused by Parse, logged to the default
	}
	if c.LogLevel != "" {
		if lvl, err := logging.ParseLevel(c.LogLevel); err == nil {
			level = logging.LevelName(lvl)
		}
	}
	return file, level
}

func (p *Plugin) logOutcome(verb string, args *skel.CmdArgs, out *Outcome, d time.Duration, err error) {
	attrs := []slog.Attr{
		slog.String("verb", verb),
		slog.String("container", args.ContainerID),
		slog.String("netns", args.Netns),
		slog.String("ifname", args.IfName),
	}
	level := slog.LevelInfo
	if err == nil {
		attrs = append(attrs, slog.String("outcome", "ok"))
	} else {
		level = slog.LevelError
		code, msg := uint(types.ErrInternal), err.Error() // skel's mapping of a plain error
		var te *types.Error
		if errors.As(err, &te) {
			code, msg = te.Code, te.Msg
		}
		attrs = append(attrs, slog.String("outcome", "error"), slog.Uint64("code", uint64(code)), slog.String("error", msg))
	}
	attrs = append(attrs, slog.Float64("duration_ms", float64(d.Microseconds())/1000))
	if out.Note != "" {
		attrs = append(attrs, slog.String("note", out.Note))
	}
	if out.IMDSRequests > 0 {
		attrs = append(attrs, slog.Int("imds_requests", out.IMDSRequests), slog.Int("imds_round_trips", out.IMDSRoundTrips))
	}
	attrs = append(attrs, out.ChangeAttrs()...)
	p.log().LogAttrs(p.ctx(), level, verb, attrs...)
}

// ChangeAttrs renders what the verb changed for a log line: the tables it
// managed and the rules and routes it added or removed (each only when
// non-empty). The plugin's line and the ECS front's share it.
func (o *Outcome) ChangeAttrs() []slog.Attr {
	var attrs []slog.Attr
	if len(o.Tables) > 0 {
		attrs = append(attrs, slog.Any("tables", o.Tables))
	}
	if len(o.Added) > 0 {
		attrs = append(attrs, slog.Any("added", o.Added))
	}
	if len(o.Removed) > 0 {
		attrs = append(attrs, slog.Any("removed", o.Removed))
	}
	return attrs
}
