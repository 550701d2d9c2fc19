package plan

// Diff is what must change to turn the current state into the wanted one.
type Diff struct {
	AddRules  []Rule
	DelRules  []Rule
	AddRoutes []Route
	DelRoutes []Route
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
	d.AddRules, d.DelRules = diffSets(want.Rules, haveRules)
	d.AddRoutes, d.DelRoutes = diffSets(want.Routes, haveRoutes)
	return d
}

// diffSets returns the wanted elements missing from have and the elements
// of have not wanted.
func diffSets[T comparable](want, have []T) (add, del []T) {
	inHave := make(map[T]bool, len(have))
	for _, x := range have {
		inHave[x] = true
	}
	inWant := make(map[T]bool, len(want))
	for _, x := range want {
		inWant[x] = true
		if !inHave[x] {
			add = append(add, x)
		}
	}
	for _, x := range have {
		if !inWant[x] {
			del = append(del, x)
		}
	}
	return add, del
}

// Missing lists the wanted objects absent from have, for CHECK; a route
// present with other metrics is named with the metrics that differ.
// Copies of main routes (want.Mirrored) are not demanded, nor their
// metrics: main may have gained them, or changed, after ADD, which CHECK
// must tolerate.
func Missing(want Plan, haveRules []Rule, haveRoutes []Route) []string {
	d := Compute(want, haveRules, haveRoutes)
	mirrored := map[Route]bool{}
	for _, r := range want.Mirrored {
		mirrored[r] = true
	}
	var out []string
	for _, r := range d.AddRules {
		out = append(out, r.String())
	}
	for _, r := range d.AddRoutes {
		switch h, ok := sameButMetrics(haveRoutes, r); {
		case mirrored[r]:
		case ok:
			out = append(out, metricsDrift(r, h))
		default:
			out = append(out, r.String())
		}
	}
	return out
}
