package main

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// series is a set of durations.
type series []time.Duration

// pct is the nearest-rank percentile (p in 0..100).
func (s series) pct(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append(series(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	i := int(math.Ceil(p/100*float64(len(c)))) - 1
	if i < 0 {
		i = 0
	}
	return c[i]
}

func (s series) max() time.Duration { return s.pct(100) }

// ms renders a duration in milliseconds with a precision suited to its size.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// triple renders p50 / p90 / p99 in ms.
func (s series) triple() string {
	if len(s) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s / %s", ms(s.pct(50)), ms(s.pct(90)), ms(s.pct(99)))
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// outcomes counts exits of one kind of call: latencies of successful
// calls, and failures by exit code and CNI error code with the first
// message seen.
type outcomes struct {
	ok       series
	all      series  // every call, failed or not
	rss      []int64 // KiB, every call
	cpu      series  // user+system CPU, every call
	vcsw     []int64 // voluntary context switches, every call
	ivcsw    []int64
	failures map[string]int
	firstErr map[string]string
}

func (o *outcomes) add(s sample) {
	o.rss = append(o.rss, s.MaxRSS)
	o.cpu = append(o.cpu, s.CPU)
	o.vcsw = append(o.vcsw, s.VCSW)
	o.ivcsw = append(o.ivcsw, s.IVCSW)
	o.all = append(o.all, s.Dur)
	if s.Exit == 0 {
		o.ok = append(o.ok, s.Dur)
		return
	}
	if o.failures == nil {
		o.failures, o.firstErr = map[string]int{}, map[string]string{}
	}
	key, msg := fmt.Sprintf("exit %d", s.Exit), lastLine(string(s.Stderr))
	var te struct {
		Code uint   `json:"code"`
		Msg  string `json:"msg"`
	}
	if json.Unmarshal(s.Stdout, &te) == nil && te.Code != 0 {
		key, msg = fmt.Sprintf("exit %d code %d", s.Exit, te.Code), te.Msg
	}
	o.failures[key]++
	if _, seen := o.firstErr[key]; !seen {
		o.firstErr[key] = msg
	}
}

func (o *outcomes) calls() int { return len(o.all) }

// failText renders "none" or "exit 1 code 11 ×3 (msg)".
func (o *outcomes) failText() string {
	if len(o.failures) == 0 {
		return "none"
	}
	var keys []string
	for k := range o.failures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d (%s)", k, o.failures[k], truncate(o.firstErr[k], 90)))
	}
	return strings.Join(parts, "; ")
}

// rssText renders p50 / max peak RSS in MiB.
func rssText(rss []int64) string {
	if len(rss) == 0 {
		return "–"
	}
	c := append([]int64(nil), rss...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	p50 := c[int(math.Ceil(0.5*float64(len(c))))-1]
	return fmt.Sprintf("%.1f / %.1f", float64(p50)/1024, float64(c[len(c)-1])/1024)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func mib(bytes int64) string { return fmt.Sprintf("%.2f MiB", float64(bytes)/(1<<20)) }

func passFail(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**MISSED**"
}

// median of counts.
func median(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	c := append([]int64(nil), v...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[(len(c)-1)/2]
}
