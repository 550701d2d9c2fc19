package plugin

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// quietKey marks a context whose ADD prints no result (see Run).
type quietKey struct{}

func quiet(ctx context.Context) bool { return ctx.Value(quietKey{}) != nil }

// Run runs ADD, DEL or CHECK in-process for a caller that prints its own
// result and writes its own log line (the ECS front, which passes the
// upstream plugin's result through): the same code path as the verbs, but
// nothing on stdout and no log line; the Outcome says what was done.
func (p *Plugin) Run(verb string, args *skel.CmdArgs) (*Outcome, error) {
	saved := p.Ctx
	p.Ctx = context.WithValue(p.ctx(), quietKey{}, true)
	defer func() { p.Ctx = saved }()
	out := &Outcome{}
	switch verb {
	case "ADD":
		o, err := p.add(args)
		if o != nil {
			out = o
		}
		return out, err
	case "DEL":
		return out, p.del(args, out)
	case "CHECK":
		return out, p.check(args, out)
	}
	return out, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("verb %q cannot run in-process", verb), "")
}
