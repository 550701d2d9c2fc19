package plugin

import (
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// Check verifies that every rule and route ADD would install for the
// prevResult is present; later plugins' additions are tolerated.
func (p *Plugin) Check(args *skel.CmdArgs) error { return p.invoke("CHECK", args, p.check) }

// check gathers the facts ADD would (IMDS within the same bounds), observes
// the namespace and lets plan.Verify decide what is missing. It takes no
// lock: it changes nothing.
func (p *Plugin) check(args *skel.CmdArgs, out *Outcome) error {
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return err
	}
	f, err := p.gatherCheck(cfg, args)
	defer f.lk.usage(out) // after close: every request counted
	defer f.close()
	if err != nil {
		return err
	}
	st, err := observe(f.t)
	if err != nil {
		return err
	}
	missing, err := plan.Verify(cfg.Settings(), f.checked, st)
	if err != nil {
		return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	if problems := append(f.problems, missing...); len(problems) > 0 {
		return types.NewError(types.ErrTryAgainLater,
			"ec2-policy-routes CHECK failed: missing "+strings.Join(problems, "; "), "")
	}
	return nil
}

// checkFacts is what CHECK gathers: plan.Verify's input, and what is
// already known to be missing (a link, an address).
type checkFacts struct {
	t        *target
	lk       *lookups
	checked  []plan.Checked
	problems []string
}

func (f *checkFacts) close() {
	if f.t != nil {
		f.t.Close()
	}
	f.lk.stop()
}

// gatherCheck opens the namespace, finds the attachment's own links (MAC,
// ownership mark) and reads their facts. With IMDS, CHECK verifies what ADD
// derived from it too (source rules of secondary IPs and prefixes, subnet
// routes, table, altnames): IMDS down is an error (code 11), not a pass.
// The result is never nil and must be closed, also on error.
func (p *Plugin) gatherCheck(cfg *config.Config, args *skel.CmdArgs) (*checkFacts, error) {
	f := &checkFacts{}
	sel, err := selectInterfaces(cfg, args)
	if err != nil {
		return f, err
	}
	if f.t, err = p.openTarget(args.Netns); err != nil {
		return f, err
	}
	f.lk = startLookups(p.ctx(), p.openMetadata(cfg), cfg, sel, "CHECK cannot verify the IMDS-derived rules, routes and altnames")
	owned, _, err := ownedLinks(f.t, attachmentOf(args), claims(cfg, args))
	if err != nil {
		return f, CNIError(types.ErrIOFailure, err)
	}
	links := make([]plan.Link, len(sel))
	for i := range sel {
		if links[i], err = checkedLink(f.t, owned[i]); err != nil {
			f.problems = append(f.problems, err.Error())
			continue
		}
		f.lk.linkFound(i, links[i])
	}
	for i := range sel {
		if links[i].Index == 0 {
			continue
		}
		if _, err := f.lk.result(i); err != nil {
			return f, err // IMDS down, or does not know the ENI: not verified
		}
		ifc, md, err := p.interfaceFacts(cfg, f.t, &sel[i], links[i], f.lk, i)
		if err != nil {
			f.problems = append(f.problems, err.Error())
			continue
		}
		c := plan.Checked{Interface: ifc, Link: links[i], AltNames: p.recordedAltNames(args, links[i])}
		if md != nil {
			c.IMDSTable = md.Table
		}
		c.SubnetsAsInstalled = md == nil && cfg.IMDS.Enabled
		f.checked = append(f.checked, c)
	}
	return f, nil
}
