package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/imdsfake"
)

// imdsResult: ours with IMDS enabled against the in-process fake
// (pkg/imdsfake on 127.0.0.1), interleaved with ours with IMDS disabled and
// sbr on identical fresh inputs.
type imdsResult struct {
	note     string // why it was not measured, when it was not
	on, off  outcomes
	sbr      outcomes
	requests []int // per successful ADD with IMDS
	tokens   []int
}

func (r *imdsResult) oursText() string {
	if r.note != "" {
		return r.note
	}
	return fmt.Sprintf("%s; %s requests (%s tokens)", r.on.ok.triple(), countText(r.requests), countText(r.tokens))
}

func (r *imdsResult) ratioText() string {
	if r.note != "" || len(r.on.ok) == 0 {
		return "–"
	}
	return ratioText(r.on.ok, r.sbr.ok)
}

// countText renders a per-call count: "9" when constant, else "min–max".
func countText(v []int) string {
	if len(v) == 0 {
		return "–"
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d–%d", lo, hi)
}

func (b *bench) imds(ctx context.Context) error {
	r := &b.res.imds
	var tol tolerate
	for i := 0; i < *flagIMDSN && ctx.Err() == nil; i++ {
		var runErr error
		err := trial(fmt.Sprintf("imds round %d", i), func(sc *scope) {
			var f [3]*fixture
			for k := range f {
				f[k] = newFixture(sc, true, true)
			}
			// The fake knows the ENI by its MAC as device 1 on a
			// single-card instance; the primary ENI is elsewhere.
			fake := imdsfake.New("02:00:00:00:00:01", imdsfake.ENI{
				MAC:          f[0].eni.MAC.String(),
				DeviceNumber: 1,
				InterfaceID:  "eni-0123456789abcdef0",
				LocalIPv4s:   []string{strings.Split(eniAddr, "/")[0]},
				SubnetIPv4:   "10.1.2.0/24",
			})
			url := imdsfake.Start(sc, fake)
			on := b.oursConf("")
			on["imds"] = map[string]any{"enabled": true, "endpoint": url}
			conf := [3][]byte{
				f[0].conf(names[ours], on),
				f[1].conf(names[ours], b.oursConf("")),
				f[2].conf(names[sbr], nil),
			}
			bins := [3]string{b.bin[ours], b.bin[ours], b.bin[sbr]}
			for _, k := range b.rng.Perm(3) {
				if k == 0 {
					fake.ResetLog()
				}
				s, err := run(ctx, cniEnv("ADD", f[k].ns.Path, ifName), conf[k], bins[k])
				if err != nil {
					runErr = err
					return
				}
				switch k {
				case 0:
					r.on.add(s)
					if s.Exit == 0 {
						r.requests = append(r.requests, fake.Count())
						r.tokens = append(r.tokens, fake.TokensIssued())
					}
				case 1:
					r.off.add(s)
				case 2:
					r.sbr.add(s)
				}
			}
			// Untimed DEL, as a runtime always sends one: it removes the
			// altnames and their ownership record under /run, which would
			// otherwise outlive the benchmark.
			if _, err := run(ctx, cniEnv("DEL", f[0].ns.Path, ifName), conf[0], bins[0]); err != nil {
				runErr = err
			}
		})
		if runErr != nil {
			return runErr
		}
		if err := tol.note(err); err != nil {
			return err
		}
		progress("imds round", i, *flagIMDSN)
	}
	switch {
	case len(r.on.ok) == 0:
		r.note = "not measured: every IMDS-enabled ADD failed (" + r.on.failText() + ")"
	case countText(r.requests) == "0":
		r.note = "not measured: the plugin binary made no IMDS requests (IMDS client not wired into the command yet)"
	}
	return ctx.Err()
}

func (b *bench) renderIMDS(w *strings.Builder) {
	r := &b.res.imds
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## IMDS enabled\n\n")
	p("Ours with `imds.enabled` against pkg/imdsfake serving IMDSv2 on 127.0.0.1 (in the benchmark process), interleaved with ours without IMDS and sbr, each on a fresh namespace. ")
	p("The fake knows the ENI's MAC as device 1, one IPv4, subnet 10.1.2.0/24.\n\n")
	if r.note != "" {
		p("%s.\n\n", r.note)
	}
	p("| Call | p50 / p90 / p99 (ms) | failures | requests per ADD | tokens per ADD |\n|---|---|---|---|---|\n")
	p("| ec2-policy-routes ADD, IMDS on | %s | %s | %s | %s |\n", r.on.ok.triple(), r.on.failText(), countText(r.requests), countText(r.tokens))
	p("| ec2-policy-routes ADD, IMDS off | %s | %s | 0 | 0 |\n", r.off.ok.triple(), r.off.failText())
	p("| sbr ADD | %s | %s | – | – |\n\n", r.sbr.ok.triple(), r.sbr.failText())
}
