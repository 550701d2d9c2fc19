package plugin

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// Ownership marks (see plan.OwnLinks): ADD sets them, DEL and CHECK resolve
// the attachment's links with them, DEL clears them. Like altnames, a mark
// the kernel refuses never fails a verb: DEL and CHECK then fall back to the
// link's name, and the log line's note says so.

func attachmentOf(args *skel.CmdArgs) plan.Attachment {
	return plan.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}
}

// claims lists the interfaces DEL or CHECK is about: delNames' choice, with
// each one's MAC when prevResult gives it.
func claims(cfg *config.Config, args *skel.CmdArgs) []plan.Claim {
	if sel, err := selectInterfaces(cfg, args); err == nil {
		out := make([]plan.Claim, 0, len(sel))
		for _, s := range sel {
			out = append(out, plan.Claim{Name: s.name, MAC: prevResultMAC(cfg, s).String()})
		}
		return out
	}
	names := delNames(cfg, args)
	out := make([]plan.Claim, 0, len(names))
	for _, n := range names {
		out = append(out, plan.Claim{Name: n})
	}
	return out
}

// ownedLinks resolves claims to the attachment's own links in t.
func ownedLinks(t *target, att plan.Attachment, cs []plan.Claim) ([]plan.Owned, []plan.Link, error) {
	links, err := t.h.Links()
	if err != nil {
		return nil, nil, err
	}
	return plan.OwnLinks(att, cs, links), links, nil
}

// markLinks records on each link ADD configured that it is this
// attachment's.
func markLinks(args *skel.CmdArgs, t *target, sel []selected, links []plan.Link, out *Outcome) {
	observed, err := t.h.Links()
	if err != nil {
		addNote(out, "ownership marks not set: %v", err)
		return
	}
	configured := make(map[string]int, len(sel))
	for i, s := range sel {
		configured[s.name] = links[i].Index
	}
	changes, skipped := plan.Marking(attachmentOf(args), configured, observed)
	for _, s := range skipped {
		addNote(out, "%s", s)
	}
	for _, c := range changes {
		if err := t.h.SetAlias(c.Index, c.Alias); err != nil {
			addNote(out, "ownership mark on link #%d: %v", c.Index, err)
		}
	}
}

// unmarkLinks clears the marks of the links DEL released.
func unmarkLinks(t *target, indexes []int, out *Outcome) {
	for _, idx := range indexes {
		if err := t.h.SetAlias(idx, ""); err != nil {
			addNote(out, "ownership mark on link #%d: %v", idx, err)
		}
	}
}

// noteOwnership says in the log line why DEL left a link alone, and when
// it matched a link holding routing of ours by name only (the ambiguous
// case: configured by a version without marks).
func noteOwnership(owned []plan.Owned, tableByLink map[int]int, out *Outcome) {
	for _, o := range owned {
		switch {
		case o.Foreign:
			addNote(out, "%s: left alone", o.Why)
		case o.Ambiguous && tableByLink[o.Index] != 0:
			addNote(out, "interface %s: no ownership mark on its link, matched by name", o.Claim.Name)
		}
	}
}

// checkedLink is the link CHECK verifies for a claim, or why there is none.
func checkedLink(t *target, o plan.Owned) (plan.Link, error) {
	if o.Index == 0 {
		return plan.Link{}, errors.New(o.Why)
	}
	link, err := t.h.LinkByIndex(o.Index)
	if err != nil {
		return plan.Link{}, fmt.Errorf("interface %s is missing", o.Claim.Name)
	}
	return link, nil
}
