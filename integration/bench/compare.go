package main

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// compare is a profiling aid (-compare a,b,... [-compare-verb ADD]): the
// VERSION call, or ADD then DEL on fresh identical namespaces, of several
// binaries interleaved in random order; prints p50/p90/p99, CPU and peak
// RSS, e.g. to weigh what an import or a change costs at exec time. Every
// binary gets ours' configuration (sbr ignores the keys it does not know).
func (b *bench) compare(ctx context.Context, bins []string, verb string) error {
	res := make([]outcomes, len(bins))
	del := make([]outcomes, len(bins))
	for i := 0; i < *flagN && ctx.Err() == nil; i++ {
		if verb == "VERSION" {
			for _, k := range b.rng.Perm(len(bins)) {
				s, err := run(ctx, cniEnv("VERSION", "", ""), versionStdin, bins[k])
				if err != nil {
					return err
				}
				res[k].add(s)
			}
			continue
		}
		var runErr error
		err := trial(fmt.Sprintf("compare round %d", i), func(sc *scope) {
			f := make([]*fixture, len(bins))
			for k := range f {
				f[k] = newFixture(sc, true, true)
			}
			for _, v := range []string{"ADD", "DEL"} {
				for _, k := range b.rng.Perm(len(bins)) {
					s, err := run(ctx, cniEnv(v, f[k].ns.Path, ifName), f[k].conf(names[ours], b.oursConf("")), bins[k])
					if err != nil {
						runErr = err
						return
					}
					if v == "ADD" {
						res[k].add(s)
					} else {
						del[k].add(s)
					}
				}
			}
		})
		if runErr != nil {
			return runErr
		}
		if err != nil {
			return err
		}
	}
	print := func(verb string, res []outcomes) {
		fmt.Printf("| binary | %s p50 / p90 / p99 (ms) | vs first (p50) | CPU p50 (ms) | peak RSS p50 / max (MiB) | size | ctx switches vol / invol p50 | failures |\n|---|---|---|---|---|---|---|---|\n", verb)
		for k, bin := range bins {
			fmt.Printf("| %s | %s | %.2f | %s | %s | %s | %d / %d | %s |\n", bin, res[k].ok.triple(),
				ratio(res[k].ok.pct(50), res[0].ok.pct(50)), ms(res[k].cpu.pct(50)), rssText(res[k].rss), mib(size(bin)),
				median(res[k].vcsw), median(res[k].ivcsw), res[k].failText())
		}
	}
	if verb == "VERSION" {
		print("VERSION", res)
	} else {
		print("ADD", res)
		print("DEL", del)
	}
	return ctx.Err()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if _, err := os.Stat(p); err != nil {
				fmt.Fprintf(os.Stderr, "bench: %v\n", err)
				os.Exit(2)
			}
			out = append(out, p)
		}
	}
	return out
}
