package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
)

// Ownership: which link is an attachment's own.
//
// ADD records, on each link it configures, a mark naming the attachment
// (container ID, CNI_IFNAME) and the interface name it was configured as:
// the link's alias (IFLA_IFALIAS). The kernel keeps it with the link, so it
// survives a restart of whatever runs the plugin (the ECS agent's /run does
// not), follows the link through a rename and dies with it. DEL and CHECK
// then act only on the attachment's own links, whatever they are called now
// and whatever another task's namespace happens to call eth0.

// MarkPrefix starts every ownership mark; an alias without it is someone
// else's and is never overwritten or cleared.
const MarkPrefix = "ec2-policy-routes:"

// Attachment names one CNI attachment.
type Attachment struct {
	ContainerID string
	IfName      string // CNI_IFNAME
}

// Mark is the alias ADD sets on the link it configured as interface name
// for this attachment: a hash, so its length is fixed whatever the IDs.
func (a Attachment) Mark(name string) string {
	h := sha256.Sum256([]byte(a.ContainerID + "\x00" + a.IfName + "\x00" + name))
	return MarkPrefix + hex.EncodeToString(h[:12])
}

// IsMark reports whether an alias is an ownership mark of this plugin.
func IsMark(alias string) bool { return strings.HasPrefix(alias, MarkPrefix) }

// Link is what the plugin observes of one link in the namespace: plain data,
// read by package kernel.
type Link struct {
	Index    int
	Name     string
	MAC      string // lower-case, colon separated; "" when the link has none
	Alias    string
	AltNames []string
	Up       bool   // administratively up (IFF_UP)
	Kind     string // the kernel's link kind: "device" for a physical NIC, else veth, vlan, ...
}

// HardwareAddr is the link's MAC as bytes (nil when it has none).
func (l Link) HardwareAddr() net.HardwareAddr {
	mac, err := net.ParseMAC(l.MAC)
	if err != nil {
		return nil
	}
	return mac
}

// HasAltName reports whether the link carries name as an altname.
func (l Link) HasAltName(name string) bool { return slices.Contains(l.AltNames, name) }

// Claim is one interface a verb was asked about: its name as the runtime
// calls it and, when prevResult gives one, its MAC.
type Claim struct {
	Name string
	MAC  string
}

// Owned is the link a claim resolves to. Index 0: the attachment has no link
// here, Why says why not; Foreign: because the link there is another
// attachment's. Ambiguous: no MAC and no mark decided it, only the name (a
// link configured by a version without marks).
type Owned struct {
	Claim     Claim
	Index     int
	Ambiguous bool
	Foreign   bool
	Why       string
}

// OwnLinks resolves each claim to the attachment's own link:
//  1. a MAC given by prevResult names the link (any name: it may have been
//     renamed), unless another attachment's mark says ADD gave it to them;
//     when no link has that MAC, the link with this attachment's mark;
//  2. else the link carrying this attachment's mark for the name;
//  3. else the link with that name, unless it carries another attachment's
//     mark; without any mark it is taken as ours (ambiguous: an ADD by an
//     older version, or a kernel that refused the alias).
func OwnLinks(att Attachment, claims []Claim, links []Link) []Owned {
	out := make([]Owned, 0, len(claims))
	for _, c := range claims {
		out = append(out, ownLink(att, c, links))
	}
	return out
}

func ownLink(att Attachment, c Claim, links []Link) Owned {
	mark := att.Mark(c.Name)
	if c.MAC != "" {
		l, ok := linkByMAC(links, c, mark)
		switch {
		case !ok:
			// prevResult's MAC is on no link, but ADD marked one as this
			// attachment's (it configures the link it finds by name, and a
			// later plugin may have changed the MAC): that one is ours.
			if l, ok := findLink(links, func(l Link) bool { return l.Alias == mark }); ok {
				return Owned{Claim: c, Index: l.Index}
			}
			return Owned{Claim: c, Why: fmt.Sprintf("interface %s is missing (no link with MAC %s)", c.Name, c.MAC)}
		case IsMark(l.Alias) && l.Alias != mark:
			return Owned{Claim: c, Foreign: true, Why: fmt.Sprintf("interface %s: link %s (MAC %s) is marked as another attachment's (%s)", c.Name, l.Name, c.MAC, l.Alias)}
		}
		return Owned{Claim: c, Index: l.Index}
	}
	if l, ok := findLink(links, func(l Link) bool { return l.Alias == mark }); ok {
		return Owned{Claim: c, Index: l.Index}
	}
	l, ok := findLink(links, func(l Link) bool { return l.Name == c.Name })
	switch {
	case !ok:
		return Owned{Claim: c, Why: fmt.Sprintf("interface %s is missing", c.Name)}
	case IsMark(l.Alias):
		return Owned{Claim: c, Foreign: true, Why: fmt.Sprintf("interface %s belongs to another attachment (its link is marked %s)", c.Name, l.Alias)}
	}
	return Owned{Claim: c, Index: l.Index, Ambiguous: true}
}

// linkByMAC finds the link with the claim's MAC. Links can share one (ipvlan
// children have their parent's): prefer the one marked for this claim, then
// the one with the claim's name.
func linkByMAC(links []Link, c Claim, mark string) (Link, bool) {
	var same []Link
	for _, l := range links {
		if strings.EqualFold(l.MAC, c.MAC) {
			same = append(same, l)
		}
	}
	if l, ok := findLink(same, func(l Link) bool { return l.Alias == mark }); ok {
		return l, true
	}
	if l, ok := findLink(same, func(l Link) bool { return l.Name == c.Name }); ok {
		return l, true
	}
	return findLink(same, func(Link) bool { return true })
}

func findLink(links []Link, match func(Link) bool) (Link, bool) {
	for _, l := range links {
		if match(l) {
			return l, true
		}
	}
	return Link{}, false
}

// Release is what DEL removes: the tables of ours through the owned links,
// plus the orphan tables (ours, no longer routed through any link: their
// link left the namespace), and the links whose mark it clears.
type Release struct {
	Tables map[int]bool
	Unmark []int // link indexes
}

// Released decides DEL's release set from the owned links, the table of
// ours each link index has routes in, and the orphan tables.
func Released(att Attachment, owned []Owned, links []Link, tableByLink map[int]int, orphans map[int]bool) Release {
	r := Release{Tables: map[int]bool{}}
	for t := range orphans {
		r.Tables[t] = true
	}
	for _, o := range owned {
		if o.Index == 0 {
			continue
		}
		if t := tableByLink[o.Index]; t != 0 {
			r.Tables[t] = true
		}
		if l, ok := findLink(links, func(l Link) bool { return l.Index == o.Index }); ok && l.Alias == att.Mark(o.Claim.Name) {
			r.Unmark = append(r.Unmark, o.Index)
		}
	}
	sort.Ints(r.Unmark)
	return r
}

// AliasChange sets (Alias != "") or clears (Alias == "") one link's alias.
type AliasChange struct {
	Index int
	Alias string
}

// Marking decides the alias changes after a successful ADD: each configured
// link (by claim name → link index) gets this attachment's mark, taking it
// over from another attachment's mark but never overwriting a foreign alias
// (reported in skipped); the same mark on any other link (the link was
// renamed and a new one took its name) is cleared.
func Marking(att Attachment, configured map[string]int, links []Link) (changes []AliasChange, skipped []string) {
	names := make([]string, 0, len(configured))
	for n := range configured {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		idx, mark := configured[name], att.Mark(name)
		for _, l := range links {
			switch {
			case l.Index == idx && l.Alias == mark:
			case l.Index == idx && l.Alias != "" && !IsMark(l.Alias):
				skipped = append(skipped, fmt.Sprintf("interface %s keeps its alias %q: no ownership mark, DEL and CHECK match it by name", name, l.Alias))
			case l.Index == idx:
				changes = append(changes, AliasChange{Index: idx, Alias: mark})
			case l.Alias == mark:
				changes = append(changes, AliasChange{Index: l.Index})
			}
		}
	}
	return changes, skipped
}
