package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/kernel"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/nslock"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// Outcome summarises one invocation for the log.
type Outcome struct {
	Added   []string
	Removed []string
	Tables  []int
	Note    string // why nothing was done, when that is the outcome
	// IMDS requests and round trips the verb made (log line).
	IMDSRequests, IMDSRoundTrips int
}

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

func (p *Plugin) add(args *skel.CmdArgs) (*Outcome, error) {
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeoutCause(p.ctx(), cfg.LinkTimeout, context.DeadlineExceeded)
	defer cancel()

	sel, err := selectInterfaces(cfg, args)
	if err != nil {
		return nil, err
	}
	// IMDS runs alongside the namespace work below (see lookups).
	lk := p.startLookups(ctx, cfg, sel, "nothing was installed")
	defer lk.stop()
	t, err := openTarget(args.Netns)
	if err != nil {
		return nil, err
	}
	defer t.Close()

	// Wait outside the lock: a slow link must not hold up invocations for
	// the namespace's other interfaces.
	links := make([]plan.Link, len(sel))
	for i, s := range sel {
		link, err := t.h.WaitLink(ctx, s.name)
		if err != nil {
			return nil, linkTimeoutError(ctx, cfg, s.name, args.Netns, err)
		}
		links[i] = link
		lk.linkFound(i, link)
	}

	// Facts (addresses, gateways, IMDS) need no lock; gather them first so
	// a slow metadata service never holds up the namespace.
	ifaces := make([]plan.Interface, len(sel))
	metas := make([]*ENIMetadata, len(sel))
	for i := range sel {
		ifaces[i], metas[i], err = p.interfaceFacts(cfg, t, &sel[i], links[i], lk, i)
		if err != nil {
			return nil, err
		}
	}

	unlock, err := nslock.Lock(ctx, t.fd())
	if err != nil {
		return nil, types.NewError(types.ErrTryAgainLater, err.Error(), "")
	}
	defer unlock()

	st, err := t.h.ReadState()
	if err != nil {
		return nil, errCode(types.ErrIOFailure, err)
	}
	cands := make([]plan.Candidate, len(ifaces))
	for i := range ifaces {
		cands[i].Interface = ifaces[i]
		if metas[i] != nil {
			cands[i].IMDSTable = metas[i].Table
		}
	}
	res, err := plan.Resolve(cfg.Settings(), cands, st.Observed())
	if err != nil {
		return nil, resolveError(err)
	}
	want := res.Plan
	haveRules, haveRoutes := st.InTables(res.Managed)
	diff := plan.Compute(want, haveRules, haveRoutes)
	changes, err := t.h.Apply(diff)
	if err != nil {
		// A link that left after the wait (ENI detached, or moved out)
		// makes the next route add fail with ENODEV: that is code 11 like
		// every other "the ENI went away", not an I/O fault (code 5).
		// Apply has already undone its additions.
		if lerr := linkLeft(t, sel, links, args.Netns); lerr != nil {
			return nil, lerr
		}
		return nil, applyError(err)
	}
	// A link that left while we applied took its routes with it; what
	// remains (rules) must go too, or a retried ADD could not converge.
	if lerr := linkLeft(t, sel, links, args.Netns); lerr != nil {
		t.h.Undo(changes)
		return nil, lerr
	}
	out := &Outcome{Tables: want.Tables(), Note: strings.Join(res.Notes, "; ")}
	p.imdsUsage(cfg, out)
	for _, c := range changes {
		if c.Added {
			out.Added = append(out.Added, c.Summary)
		} else {
			out.Removed = append(out.Removed, c.Summary)
		}
	}
	p.applyAltNames(cfg, args, t, sel, links, metas, out)
	markLinks(args, t, sel, links, out)
	if quiet(p.ctx()) {
		return out, nil // Run: the caller reports the result
	}
	return out, printResult(cfg, args, sel, links)
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
func linkLeft(t *target, sel []selected, links []plan.Link, netnsPath string) error {
	for i, s := range sel {
		if _, err := t.h.LinkByIndex(links[i].Index); err != nil {
			return types.NewError(types.ErrTryAgainLater,
				fmt.Sprintf("interface %s left network namespace %s during configuration; rolled back", s.name, netnsPath), "")
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

// Del removes every rule and route of ours for the selected interfaces, and
// whatever of ours was orphaned by links that already left. It never waits
// for a link and succeeds when there is nothing to do.
func (p *Plugin) Del(args *skel.CmdArgs) error { return p.invoke("DEL", args, p.del) }

func (p *Plugin) del(args *skel.CmdArgs, out *Outcome) error {
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return err
	}
	if args.Netns == "" {
		out.Note = "no netns: nothing to do"
		p.releaseAltNames(args, nil, out)
		return nil
	}
	t, err := openTarget(args.Netns)
	if errors.Is(err, errNoNetns) {
		// After a successful DEL, skel opens CNI_NETNS again (plain open)
		// to compare it with the plugin's namespace: on a FIFO that blocks
		// forever, ignoring SIGTERM. openTarget already did that check and
		// found no namespace at the path; tell skel to skip its own.
		args.NetnsOverride = "1"
		out.Note = "netns gone: nothing to do"
		p.releaseAltNames(args, nil, out)
		return nil
	}
	if err != nil {
		return err
	}
	defer t.Close()
	ctx, cancel := context.WithTimeout(p.ctx(), delBudget)
	defer cancel()
	unlock, err := nslock.Lock(ctx, t.fd())
	if err != nil {
		return types.NewError(types.ErrTryAgainLater, err.Error(), "")
	}
	defer unlock()

	st, err := t.h.ReadState()
	if err != nil {
		return errCode(types.ErrIOFailure, err)
	}
	if err := release(t, st, cfg, args, out); err != nil {
		return err
	}
	p.releaseAltNames(args, t, out)
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

// Check verifies that every rule and route ADD would install for the
// prevResult is present; later plugins' additions are tolerated.
func (p *Plugin) Check(args *skel.CmdArgs) error { return p.invoke("CHECK", args, p.check) }

func (p *Plugin) check(args *skel.CmdArgs, out *Outcome) error {
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return err
	}
	defer p.imdsUsage(cfg, out)
	sel, err := selectInterfaces(cfg, args)
	if err != nil {
		return err
	}
	t, err := openTarget(args.Netns)
	if err != nil {
		return err
	}
	defer t.Close()
	st, err := t.h.ReadState()
	if err != nil {
		return errCode(types.ErrIOFailure, err)
	}
	// With IMDS, CHECK verifies what ADD derived from it too (source rules
	// of secondary IPs and prefixes, subnet routes, table, altnames),
	// asking IMDS within the same bounds as ADD.
	lk := p.startLookups(p.ctx(), cfg, sel, "CHECK cannot verify the IMDS-derived rules, routes and altnames")
	defer lk.stop()
	// Only the attachment's own links are checked (MAC, ownership mark).
	owned, _, err := ownedLinks(t, attachmentOf(args), claims(cfg, args))
	if err != nil {
		return errCode(types.ErrIOFailure, err)
	}
	var problems []string
	links := make([]plan.Link, len(sel))
	for i := range sel {
		link, err := checkedLink(t, owned[i])
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		links[i] = link
		lk.linkFound(i, link)
	}
	var ifaces []plan.Interface
	for i := range sel {
		if links[i].Index == 0 {
			continue
		}
		if _, err := lk.result(i); err != nil {
			return err // IMDS down, or does not know the ENI: not verified
		}
		ifc, missing := p.checkFacts(cfg, args, t, st, &sel[i], links[i], lk, i)
		problems = append(problems, missing...)
		if ifc != nil {
			ifaces = append(ifaces, *ifc)
		}
	}
	// The main table's reject routes (vpc-eni's IMDS blackhole) are checked
	// too: without their copy in our table, traffic sourced from the ENI
	// bypasses them through the table's default route.
	want, err := plan.Build(ifaces, st.MainRejects)
	if err != nil {
		return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	problems = append(problems, plan.Missing(want, st.OurRules, st.OurRoutes)...)
	if len(problems) > 0 {
		return types.NewError(types.ErrTryAgainLater,
			"ec2-policy-routes CHECK failed: missing "+strings.Join(problems, "; "), "")
	}
	return nil
}

// checkFacts is CHECK's plan input for one present interface, in the table
// ADD chose for its link (nil when it has none), and what is already
// missing: that table, the IMDS numbering, altnames ADD added.
func (p *Plugin) checkFacts(cfg *config.Config, args *skel.CmdArgs, t *target, st *kernel.State, s *selected, link plan.Link, lk *lookups, i int) (*plan.Interface, []string) {
	ifc, md, err := p.interfaceFacts(cfg, t, s, link, lk, i)
	if err != nil {
		return nil, []string{err.Error()}
	}
	ifc.Table = st.OurTableByLink[ifc.Index]
	if ifc.Table == 0 {
		return nil, []string{fmt.Sprintf("interface %s has no routing table of ours (no route with protocol %d through it)", s.name, plan.Protocol)}
	}
	var missing []string
	if md != nil && md.Table != ifc.Table {
		missing = append(missing, fmt.Sprintf("interface %s: routes in table %d, IMDS numbering gives table %d", s.name, ifc.Table, md.Table))
	}
	ifc.Priority = cfg.Settings().RulePriority(ifc.Table)
	ifc.MainRoutes = plan.MainRoutesVia(st.MainRoutes, ifc.Index)
	if md == nil && cfg.IMDS.Enabled {
		// IMDS not asked for this link: take the on-link routes as ADD
		// installed them; rules and the default route are still verified.
		ifc.Subnets = plan.InstalledSubnets(st.OurRoutes, ifc.Table, ifc.Index)
	}
	return &ifc, append(missing, p.missingAltNames(args, s.name, link)...)
}

// Status reports readiness: the plugin needs the kernel and, when
// imds.enabled, a reachable IMDS (code 50 otherwise).
func (p *Plugin) Status(args *skel.CmdArgs) error { return p.invoke("STATUS", args, p.status) }

func (p *Plugin) status(args *skel.CmdArgs, _ *Outcome) error {
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return err
	}
	// With IMDS enabled, ADD needs it: not reachable is code 50.
	if pinger, ok := p.Metadata.(MetadataPinger); ok && cfg.IMDS.Enabled {
		return pinger.Ping(p.ctx(), cfg)
	}
	return nil
}

// GC validates its input and drops the altname ownership records of
// attachments that are no longer valid. Rules and routes need no GC: they
// live and die with each task's network namespace, and the lock is flock on
// the namespace fd.
func (p *Plugin) GC(args *skel.CmdArgs) error { return p.invoke("GC", args, p.gc) }

func (p *Plugin) gc(args *skel.CmdArgs, out *Outcome) error {
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return err
	}
	var gc struct {
		Valid []types.GCAttachment `json:"cni.dev/valid-attachments"`
		Old   []types.GCAttachment `json:"cni.dev/attachments"`
	}
	if err := json.Unmarshal(args.StdinData, &gc); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("cni.dev/valid-attachments: %v", err), "")
	}
	out.Note = fmt.Sprintf("%d valid attachments", len(gc.Valid)+len(gc.Old))
	p.collectState(cfg, gc.Valid, gc.Old, out)
	return nil
}

func sortedKeys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
