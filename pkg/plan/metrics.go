package plan

import (
	"fmt"
	"net/netip"
	"strings"
)

// Metrics are the per-route metrics (RTA_METRICS) a table's routes carry
// over from the route they stand for: path MTU (locked: kept from path MTU
// discovery), TCP's advertised MSS, hop limit, initial congestion and
// receive windows. 0 (false) is unset. A policy table that dropped them
// would undo, for ENI-sourced traffic, the clamping main gives it (e.g.
// "mtu 1300" on a route into a tunnel). Other metrics (window, rtt,
// ssthresh, congctl, ...) are not carried.
type Metrics struct {
	MTU      int
	MTULock  bool
	AdvMSS   int
	HopLimit int
	InitCwnd int
	InitRwnd int
}

// Kernel bounds on the metrics a route may be given (net/ipv4/metrics.c
// caps larger values, so a larger one would read back changed).
const (
	MaxRouteMTU    = 65535 - 15
	MaxRouteAdvMSS = 65535 - 40
)

type metricField struct{ name, val string }

// fields lists the metrics in ip-route's order and spelling ("" unset).
func (m Metrics) fields() []metricField {
	num := func(v int) string {
		if v == 0 {
			return ""
		}
		return fmt.Sprint(v)
	}
	mtu := num(m.MTU)
	if m.MTULock {
		mtu = strings.TrimSpace("lock " + mtu)
	}
	return []metricField{
		{"mtu", mtu}, {"advmss", num(m.AdvMSS)}, {"hoplimit", num(m.HopLimit)},
		{"initcwnd", num(m.InitCwnd)}, {"initrwnd", num(m.InitRwnd)},
	}
}

// String renders the set metrics as ip-route does ("mtu lock 1300 advmss
// 1260"); "" when none is set.
func (m Metrics) String() string {
	var parts []string
	for _, f := range m.fields() {
		if f.val != "" {
			parts = append(parts, f.name+" "+f.val)
		}
	}
	return strings.Join(parts, " ")
}

// metricsDrift says how an installed route's metrics differ from the
// wanted route's, for CHECK: "route ... with mtu 1300 (installed: no mtu)".
func metricsDrift(want, have Route) string {
	var w, h []string
	hf := have.Metrics.fields()
	for i, f := range want.Metrics.fields() {
		if f.val == hf[i].val {
			continue
		}
		w, h = append(w, f.show()), append(h, hf[i].show())
	}
	bare := want
	bare.Metrics = Metrics{}
	return fmt.Sprintf("%s with %s (installed: %s)", bare, strings.Join(w, ", "), strings.Join(h, ", "))
}

func (f metricField) show() string {
	if f.val == "" {
		return "no " + f.name
	}
	return f.name + " " + f.val
}

// sameButMetrics finds the route of have that is r but for its metrics.
func sameButMetrics(have []Route, r Route) (Route, bool) {
	r.Metrics = Metrics{}
	for _, h := range have {
		m := h.Metrics
		h.Metrics = Metrics{}
		if h == r {
			h.Metrics = m
			return h, true
		}
	}
	return Route{}, false
}

// defaultMetrics picks the metrics of a table's default route via gw from
// the default routes through the link (prevResult's first, then main's):
// the one via gw, else the first of its family; none without.
func defaultMetrics(defaults []Route, gw netip.Addr) Metrics {
	fam := FamilyOf(gw)
	var first *Route
	for i, d := range defaults {
		if d.Dst.Bits() != 0 || d.Family() != fam {
			continue
		}
		if d.Gateway == gw {
			return d.Metrics
		}
		if first == nil {
			first = &defaults[i]
		}
	}
	if first == nil {
		return Metrics{}
	}
	return first.Metrics
}
