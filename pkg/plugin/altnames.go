package plugin

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/kernel"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/state"
)

// Link altnames (eni-..., device-number-N[.C]) are cosmetic: failing to add
// or remove one never fails a verb; it is reported in the log line's note.
// Ownership — DEL removes only the names this plugin added — is the one
// thing the plugin keeps on the host: a state record per attachment
// (package state), removed by DEL and by GC once the attachment is gone.

func (p *Plugin) store() state.Store {
	if p.StateDir != "" {
		return state.Store{Dir: p.StateDir}
	}
	return state.Store{Dir: state.DefaultDir}
}

func addNote(out *Outcome, format string, a ...any) {
	n := fmt.Sprintf(format, a...)
	if out.Note != "" {
		out.Note += "; "
	}
	out.Note += n
}

// applyAltNames adds each selected link's IMDS altnames and records which
// ones this invocation (or an earlier ADD of the same attachment) added.
func (p *Plugin) applyAltNames(cfg *config.Config, args *skel.CmdArgs, t *target, sel []selected, links []plan.Link, metas []*ENIMetadata, out *Outcome) {
	st := p.store()
	prev, err := st.Load(args.ContainerID, args.IfName)
	if err != nil {
		addNote(out, "altname ownership record unreadable, starting afresh: %v", err)
		prev = nil
	}
	if !wantsAltNames(metas) && prev == nil {
		return
	}
	rec := &state.Attachment{Network: cfg.Name, ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns}
	done := map[int]bool{}
	var fresh []addedAltName
	for i, s := range sel {
		done[links[i].Index] = true
		var names []string
		if metas[i] != nil {
			names = metas[i].AltNames
		}
		mine, added := addAltNames(t, s.name, links[i], names, recordedBy(prev, links[i]), out)
		fresh = append(fresh, added...)
		if len(mine) > 0 {
			rec.Links = append(rec.Links, state.Link{IfName: s.name, Index: links[i].Index, MAC: links[i].MAC, AltNames: mine})
		}
	}
	if prev != nil {
		for _, l := range prev.Links {
			if !done[l.Index] {
				rec.Links = append(rec.Links, l) // not in this ADD's selection: keep
			}
		}
	}
	if err := st.Save(rec); err != nil {
		// Without the record DEL could not tell these names are ours: take
		// back what this call added rather than leave them unowned.
		for _, a := range fresh {
			if l, err := t.h.LinkByIndex(a.index); err == nil {
				_, _ = t.h.DelAltName(l, a.name)
			}
		}
		out.Added = slices.DeleteFunc(out.Added, func(s string) bool { return strings.HasPrefix(s, "+altname ") })
		addNote(out, "altnames not added: cannot record ownership: %v", err)
	}
}

func wantsAltNames(metas []*ENIMetadata) bool {
	for _, md := range metas {
		if md != nil && len(md.AltNames) > 0 {
			return true
		}
	}
	return false
}

// recordedBy is the set of altnames prev records adding to link (same
// index and MAC).
func recordedBy(prev *state.Attachment, link plan.Link) map[string]bool {
	owned := map[string]bool{}
	if prev == nil {
		return owned
	}
	for _, l := range prev.Links {
		if l.Index == link.Index && l.MAC == link.MAC {
			for _, n := range l.AltNames {
				owned[n] = true
			}
		}
	}
	return owned
}

type addedAltName struct {
	index int
	name  string
}

// addAltNames adds names to link and returns the altnames of the link that
// are ours (added now, or by an earlier ADD: owned) and those added now.
func addAltNames(t *target, ifname string, link plan.Link, names []string, owned map[string]bool, out *Outcome) (mine []string, fresh []addedAltName) {
	for _, name := range names {
		res, err := t.h.AddAltName(link, name)
		switch {
		case err != nil:
			addNote(out, "altname %s on %s: %v", name, ifname, err)
		case res == kernel.AltNameAdded:
			mine = append(mine, name)
			fresh = append(fresh, addedAltName{link.Index, name})
			out.Added = append(out.Added, fmt.Sprintf("+altname %s dev %s", name, ifname))
		case res == kernel.AltNamePresent && owned[name]:
			mine = append(mine, name) // ours from an earlier ADD
		case res == kernel.AltNameTaken:
			addNote(out, "altname %s is another link's; not added to %s", name, ifname)
		}
	}
	// Names we added earlier that IMDS no longer lists stay ours, so that
	// DEL still removes them.
	for n := range owned {
		if !slices.Contains(mine, n) && linkHasAltName(t, link.Index, n) {
			mine = append(mine, n)
		}
	}
	slices.Sort(mine)
	return mine, fresh
}

func linkHasAltName(t *target, index int, name string) bool {
	l, err := t.h.LinkByIndex(index)
	return err == nil && l.HasAltName(name)
}

// releaseAltNames removes the altnames this plugin added for the
// attachment, then its record. t is nil when the namespace is gone: the
// links left with it, so only the record remains to drop.
func (p *Plugin) releaseAltNames(args *skel.CmdArgs, t *target, out *Outcome) {
	st := p.store()
	rec, err := st.Load(args.ContainerID, args.IfName)
	if err != nil {
		addNote(out, "altname ownership record unreadable; removing it: %v", err)
		_ = st.Remove(args.ContainerID, args.IfName)
		return
	}
	if rec == nil {
		return
	}
	keep := false
	if t != nil {
		for _, l := range rec.Links {
			link, err := t.h.LinkByIndex(l.Index)
			if err != nil || link.MAC != l.MAC {
				continue // the link left (or the index is another link's now)
			}
			for _, n := range l.AltNames {
				removed, err := t.h.DelAltName(link, n)
				if err != nil {
					keep = true
					addNote(out, "altname %s on %s: %v", n, link.Name, err)
					continue
				}
				if removed {
					out.Removed = append(out.Removed, fmt.Sprintf("-altname %s dev %s", n, link.Name))
				}
			}
		}
	}
	if keep {
		return // a retried DEL tries again; GC drops the record eventually
	}
	if err := st.Remove(args.ContainerID, args.IfName); err != nil {
		addNote(out, "remove altname ownership record: %v", err)
	}
}

// collectState drops the records of attachments the runtime no longer
// knows, for this network only (GC is per network). Without either
// attachment list (cnitool gc sends none) nothing is dropped.
func (p *Plugin) collectState(cfg *config.Config, valid, legacy []types.GCAttachment, out *Outcome) {
	if valid == nil && legacy == nil {
		return
	}
	st := p.store()
	st.SweepTemp(time.Minute)
	live := map[[2]string]bool{}
	for _, a := range append(slices.Clone(valid), legacy...) {
		live[[2]string{a.ContainerID, a.IfName}] = true
	}
	recs, bad, err := st.List()
	if err != nil {
		addNote(out, "list state: %v", err)
		return
	}
	n := 0
	for name, r := range recs {
		if r.Network != cfg.Name || live[[2]string{r.ContainerID, r.IfName}] {
			continue
		}
		if err := st.RemoveName(name); err != nil {
			addNote(out, "remove state %s: %v", name, err)
			continue
		}
		n++
	}
	for _, name := range bad {
		if err := st.RemoveName(name); err == nil {
			n++
		}
	}
	if n > 0 {
		addNote(out, "dropped %d stale altname ownership record(s)", n)
	}
}

// recordedAltNames lists the altnames ADD recorded adding to link (the
// same index and MAC): what CHECK demands. Names ADD could not add (taken,
// or no kernel support) are not its doing and not demanded.
func (p *Plugin) recordedAltNames(args *skel.CmdArgs, link plan.Link) []string {
	rec, err := p.store().Load(args.ContainerID, args.IfName)
	if err != nil || rec == nil {
		return nil
	}
	var out []string
	for _, l := range rec.Links {
		if l.Index == link.Index && l.MAC == link.MAC {
			out = append(out, l.AltNames...)
		}
	}
	return out
}
