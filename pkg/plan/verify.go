package plan

import (
	"fmt"
	"slices"
)

// Checked is one interface CHECK verifies: its facts as ADD would gather
// them now (Table, Priority and MainRoutes are Verify's to decide), what
// IMDS says of it, and its link as observed.
type Checked struct {
	Interface
	// IMDSTable is the table the ENI's IMDS numbering fixes; 0 when IMDS
	// was not asked for this link.
	IMDSTable int
	// SubnetsAsInstalled takes the link's on-link routes as ADD installed
	// them (IMDS enabled but not asked for this link: its subnets are
	// unknown, the rules and default route are still verified).
	SubnetsAsInstalled bool
	Link               Link
	// AltNames are the names ADD recorded adding to Link.
	AltNames []string
}

// Verify lists what ADD would have installed for the checked interfaces
// that the namespace lacks: each interface's table (the one holding our
// routes through its link), the table IMDS numbering gives, the rules and
// routes, the main table's reject routes copied in, and the altnames ADD
// added. Later plugins' additions are tolerated. An error is a *Refusal:
// the facts cannot make a plan at all.
func Verify(s Settings, checked []Checked, obs Observed) ([]string, error) {
	var problems []string
	var ifaces []Interface
	for _, c := range checked {
		ifc := c.Interface
		ifc.Table = obs.OursByLink[ifc.Index]
		if ifc.Table == 0 {
			problems = append(problems, fmt.Sprintf("interface %s has no routing table of ours (no route with protocol %d through it)", ifc.Name, Protocol))
			continue
		}
		if c.IMDSTable != 0 && c.IMDSTable != ifc.Table {
			problems = append(problems, fmt.Sprintf("interface %s: routes in table %d, IMDS numbering gives table %d", ifc.Name, ifc.Table, c.IMDSTable))
		}
		ifc.Priority = s.RulePriority(ifc.Table)
		ifc.MainRoutes = MainRoutesVia(obs.Main, ifc.Index)
		ifc.Defaults = slices.Concat(ifc.Defaults, MainDefaultsVia(obs.Main, ifc.Index))
		if c.SubnetsAsInstalled {
			ifc.Subnets = InstalledSubnets(obs.Routes, ifc.Table, ifc.Index)
		}
		for _, n := range c.AltNames {
			if !c.Link.HasAltName(n) {
				problems = append(problems, fmt.Sprintf("altname %s on interface %s", n, ifc.Name))
			}
		}
		ifaces = append(ifaces, ifc)
	}
	want, err := Build(ifaces, obs.MainRejects)
	if err != nil {
		return nil, &Refusal{Reason: err.Error()}
	}
	return append(problems, Missing(want, obs.Rules, obs.Routes)...), nil
}
