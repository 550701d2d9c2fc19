package plan

// Diff is what must change to turn the current state into the wanted one.
type Diff struct {
	AddRules     []Rule
	DelRules     []Rule
	AddRoutes    []Route
	DelRoutes    []Route
	PresentRules int // wanted rules already in place
	PresentRoute int // wanted routes already in place
}

// Empty reports whether nothing needs to change.
func (d Diff) Empty() bool {
	return len(d.AddRules)+len(d.DelRules)+len(d.AddRoutes)+len(d.DelRoutes) == 0
}

// Compute diffs want against have. have must hold only objects this plugin
// owns in the tables it manages: anything in have that is not wanted is
// removed, which is how a retried ADD converges.
func Compute(want Plan, haveRules []Rule, haveRoutes []Route) Diff {
	var d Diff
	hr := map[Rule]bool{}
	for _, r := range haveRules {
		hr[r] = true
	}
	wr := map[Rule]bool{}
	for _, r := range want.Rules {
		wr[r] = true
		if hr[r] {
			d.PresentRules++
		} else {
			d.AddRules = append(d.AddRules, r)
		}
	}
	for _, r := range haveRules {
		if !wr[r] {
			d.DelRules = append(d.DelRules, r)
		}
	}
	ht := map[Route]bool{}
	for _, r := range haveRoutes {
		ht[r] = true
	}
	wt := map[Route]bool{}
	for _, r := range want.Routes {
		wt[r] = true
		if ht[r] {
			d.PresentRoute++
		} else {
			d.AddRoutes = append(d.AddRoutes, r)
		}
	}
	for _, r := range haveRoutes {
		if !wt[r] {
			d.DelRoutes = append(d.DelRoutes, r)
		}
	}
	return d
}

// Missing lists the wanted objects absent from have, for CHECK.
func Missing(want Plan, haveRules []Rule, haveRoutes []Route) []string {
	d := Compute(want, haveRules, haveRoutes)
	var out []string
	for _, r := range d.AddRules {
		out = append(out, r.String())
	}
	for _, r := range d.AddRoutes {
		out = append(out, r.String())
	}
	return out
}
