package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/kernel"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/nslock"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// Add waits for each selected link, then installs its policy routing.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	return p.invoke("ADD", args, func(args *skel.CmdArgs, out *Outcome) error {
		o, err := p.add(args)
		if o != nil {
			*out = *o
		}
		return err
	})
}

// add is ADD in six steps: gather the facts, lock the namespace, observe
// its routing, decide the wanted state, apply the difference, report.
func (p *Plugin) add(args *skel.CmdArgs) (*Outcome, error) {
	f, err := p.gatherAdd(args)
	defer f.close()
	if err != nil {
		return nil, err
	}
	unlock, err := lockNetns(f.ctx, f.t)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := observe(f.t)
	if err != nil {
		return nil, err
	}
	res, err := plan.Resolve(f.cfg.Settings(), f.candidates(), st)
	if err != nil {
		return nil, resolveError(err)
	}
	out, err := p.applyAdd(f, res, st)
	if err != nil {
		return nil, err
	}
	if quiet(p.ctx()) {
		return out, nil // Run: the caller reports the result
	}
	return out, printResult(f.cfg, f.args, f.sel, f.links)
}

// addFacts is what ADD gathers before it takes the namespace lock.
type addFacts struct {
	cfg    *config.Config
	args   *skel.CmdArgs
	ctx    context.Context // bounded by linkTimeout
	cancel context.CancelFunc
	lk     *lookups // IMDS, running alongside the namespace work
	t      *target
	sel    []selected
	links  []plan.Link
	ifaces []plan.Interface
	metas  []*ENIMetadata
}

// gatherAdd reads the config, selects the interfaces, starts their IMDS
// lookups, opens the namespace, waits for each link and reads its facts.
// None of it needs the lock: a slow link or metadata service must not hold
// up invocations for the namespace's other interfaces. The result is never
// nil and must be closed, also on error.
func (p *Plugin) gatherAdd(args *skel.CmdArgs) (*addFacts, error) {
	f := &addFacts{args: args, cancel: func() {}}
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return f, err
	}
	f.cfg = cfg
	f.ctx, f.cancel = context.WithTimeoutCause(p.ctx(), cfg.LinkTimeout, context.DeadlineExceeded)
	if f.sel, err = selectInterfaces(cfg, args); err != nil {
		return f, err
	}
	f.lk = startLookups(f.ctx, p.openMetadata(cfg), cfg, f.sel, "nothing was installed")
	if f.t, err = p.openTarget(args.Netns); err != nil {
		return f, err
	}
	f.links = make([]plan.Link, len(f.sel))
	for i, s := range f.sel {
		link, err := f.t.h.WaitLink(f.ctx, s.name)
		if err != nil {
			return f, linkTimeoutError(f.ctx, cfg, s.name, args.Netns, err)
		}
		f.links[i] = link
		f.lk.linkFound(i, link)
	}
	f.ifaces = make([]plan.Interface, len(f.sel))
	f.metas = make([]*ENIMetadata, len(f.sel))
	for i := range f.sel {
		f.ifaces[i], f.metas[i], err = p.interfaceFacts(cfg, f.t, &f.sel[i], f.links[i], f.lk, i)
		if err != nil {
			return f, err
		}
	}
	return f, nil
}

func (f *addFacts) close() {
	if f.t != nil {
		f.t.Close()
	}
	f.lk.stop()
	f.cancel()
}

// candidates is plan.Resolve's input: each interface's facts and the table
// its IMDS numbering fixes.
func (f *addFacts) candidates() []plan.Candidate {
	cands := make([]plan.Candidate, len(f.ifaces))
	for i := range f.ifaces {
		cands[i].Interface = f.ifaces[i]
		if f.metas[i] != nil {
			cands[i].IMDSTable = f.metas[i].Table
		}
	}
	return cands
}

// lockNetns takes the namespace's lock (flock on its fd), bounded by ctx.
func lockNetns(ctx context.Context, t *target) (unlock func(), err error) {
	unlock, err = nslock.Lock(ctx, t.fd())
	if err != nil {
		return nil, types.NewError(types.ErrTryAgainLater, err.Error(), "")
	}
	return unlock, nil
}

// observe takes the one snapshot of the namespace's routing a verb decides on.
func observe(t *target) (plan.Observed, error) {
	st, err := t.h.ReadState()
	if err != nil {
		return plan.Observed{}, CNIError(types.ErrIOFailure, err)
	}
	return st.Observed(), nil
}

// applyAdd converges the managed tables to the resolution, then adds the
// links' altnames and ownership marks. A link that leaves meanwhile undoes
// the routing.
func (p *Plugin) applyAdd(f *addFacts, res plan.Resolution, st plan.Observed) (*Outcome, error) {
	haveRules, haveRoutes := st.InTables(res.Managed)
	changes, err := f.t.h.Apply(plan.Compute(res.Plan, haveRules, haveRoutes))
	if err != nil {
		// A link that left after the wait (ENI detached, or moved out)
		// makes the next route add fail with ENODEV: that is code 11 like
		// every other "the ENI went away", not an I/O fault (code 5).
		// Apply has already undone its additions.
		if lerr := f.linkLeft(); lerr != nil {
			return nil, lerr
		}
		return nil, applyError(err)
	}
	// A link that left while we applied took its routes with it; what
	// remains (rules) must go too, or a retried ADD could not converge.
	if lerr := f.linkLeft(); lerr != nil {
		f.t.h.Undo(changes)
		return nil, lerr
	}
	out := &Outcome{Tables: res.Plan.Tables(), Note: strings.Join(res.Notes, "; ")}
	f.lk.usage(out)
	out.record(changes)
	p.applyAltNames(f.cfg, f.args, f.t, f.sel, f.links, f.metas, out)
	markLinks(f.args, f.t, f.sel, f.links, out)
	return out, nil
}

// record lists applied changes as added or removed.
func (o *Outcome) record(changes []kernel.Change) {
	for _, c := range changes {
		if c.Added {
			o.Added = append(o.Added, c.Summary)
		} else {
			o.Removed = append(o.Removed, c.Summary)
		}
	}
}

// resolveError maps a refused or failed table decision to its CNI code: a
// refusal is the configuration's (7); no free table may pass (11).
func resolveError(err error) error {
	var r *plan.Refusal
	if errors.As(err, &r) {
		return types.NewError(types.ErrInvalidNetworkConfig, r.Reason, "")
	}
	return types.NewError(types.ErrTryAgainLater, err.Error(), "")
}

// linkLeft returns the code-11 error for the first selected link that is no
// longer in the namespace, or nil when all are still there.
func (f *addFacts) linkLeft() error {
	for i, s := range f.sel {
		if _, err := f.t.h.LinkByIndex(f.links[i].Index); err != nil {
			return types.NewError(types.ErrTryAgainLater,
				fmt.Sprintf("interface %s left network namespace %s during configuration; rolled back", s.name, f.args.Netns), "")
		}
	}
	return nil
}

// printResult passes prevResult through, or in standalone mode reports the
// interfaces with the addresses and gateways interfaceFacts read.
func printResult(cfg *config.Config, args *skel.CmdArgs, sel []selected, links []plan.Link) error {
	if cfg.PrevResult != nil {
		return types.PrintResult(cfg.PrevResult, cfg.CNIVersion)
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	for i, s := range sel {
		idx := len(res.Interfaces)
		res.Interfaces = append(res.Interfaces, &current.Interface{
			Name: s.name, Mac: links[i].MAC, Sandbox: args.Netns,
		})
		for _, a := range s.addrs {
			ipc := &current.IPConfig{Interface: current.Int(idx), Address: *plan.IPNet(a)}
			for _, gw := range s.gateways {
				if plan.FamilyOf(gw) == plan.FamilyOf(a.Addr()) {
					ipc.Gateway = gw.AsSlice()
				}
			}
			res.IPs = append(res.IPs, ipc)
		}
	}
	return types.PrintResult(res, cfg.CNIVersion)
}
