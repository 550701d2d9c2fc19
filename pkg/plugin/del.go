package plugin

import (
	"context"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// Del removes every rule and route of ours for the selected interfaces, and
// whatever of ours was orphaned by links that already left. It never waits
// for a link and succeeds when there is nothing to do.
func (p *Plugin) Del(args *skel.CmdArgs) error { return p.invoke("DEL", args, p.del) }

// del is DEL in the verbs' steps: gather (config, namespace), lock,
// observe, decide what the attachment releases (plan.Released), apply,
// report (the Outcome).
func (p *Plugin) del(args *skel.CmdArgs, out *Outcome) error {
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return err
	}
	t, err := p.openForDel(args, out)
	if t == nil || err != nil {
		return err
	}
	defer t.Close()
	ctx, cancel := context.WithTimeout(p.ctx(), delBudget)
	defer cancel()
	unlock, err := lockNetns(ctx, t)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := observe(t)
	if err != nil {
		return err
	}
	att := attachmentOf(args)
	links, err := t.h.Links()
	if err != nil {
		return CNIError(types.ErrIOFailure, err)
	}
	owned := plan.OwnLinks(att, claims(cfg, args), links)
	rel := plan.Released(att, owned, links, st.OursByLink, st.Orphans)
	if err := applyRelease(t, st, rel, out); err != nil {
		return err
	}
	noteOwnership(owned, st.OursByLink, out)
	p.releaseAltNames(args, t, out)
	return nil
}

// openForDel opens the namespace DEL cleans. Without one (no CNI_NETNS, or
// nothing at the path any more) the links left with it: only the altname
// record remains to drop, and the target is nil.
func (p *Plugin) openForDel(args *skel.CmdArgs, out *Outcome) (*target, error) {
	if args.Netns == "" {
		out.Note = "no netns: nothing to do"
		p.releaseAltNames(args, nil, out)
		return nil, nil
	}
	t, err := p.openTarget(args.Netns)
	if errors.Is(err, errNoNetns) {
		// After a successful DEL, skel opens CNI_NETNS again (plain open)
		// to compare it with the plugin's namespace: on a FIFO that blocks
		// forever, ignoring SIGTERM. openTarget already did that check and
		// found no namespace at the path; tell skel to skip its own.
		args.NetnsOverride = "1"
		out.Note = "netns gone: nothing to do"
		p.releaseAltNames(args, nil, out)
		return nil, nil
	}
	return t, err
}

// applyRelease removes our rules and routes in the released tables (the
// attachment's own links, by MAC or ownership mark whatever their name
// now, and orphans), then clears the links' marks.
func applyRelease(t *target, st plan.Observed, rel plan.Release, out *Outcome) error {
	rules, routes := st.InTables(rel.Tables)
	changes, err := t.h.Apply(plan.Diff{DelRules: rules, DelRoutes: routes})
	if err != nil {
		return CNIError(types.ErrIOFailure, fmt.Errorf("remove policy routing: %w", err))
	}
	out.record(changes)
	out.Tables = sortedKeys(rel.Tables)
	unmarkLinks(t, rel.Unmark, out)
	return nil
}

// delNames lists the interfaces DEL cleans: prevResult's sandbox interfaces
// when present, else config `interfaces`, else CNI_IFNAME.
func delNames(cfg *config.Config, args *skel.CmdArgs) []string {
	if sel, err := selectInterfaces(cfg, args); err == nil {
		names := make([]string, 0, len(sel))
		for _, s := range sel {
			names = append(names, s.name)
		}
		return names
	}
	if len(cfg.Interfaces) > 0 {
		return cfg.Interfaces
	}
	if config.ValidateIfName(args.IfName) == nil {
		return []string{args.IfName}
	}
	return nil
}
