package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
)

// compare is a profiling aid (-compare a,b,... [-compare-verb ADD]): the
// VERSION call, or ADD then DEL on fresh identical namespaces, of several
// binaries interleaved in random order; prints p50/p90/p99, CPU and peak
// RSS, e.g. to weigh what an import or a change costs at exec time. Every
// binary gets ours' configuration (sbr ignores the keys it does not know);
// ADD-IMDS is ADD with imds.enabled against the in-process fake.
func (b *bench) compare(ctx context.Context, bins []string, verb string) error {
	res := make([]outcomes, len(bins))
	del := make([]outcomes, len(bins))
	// Run copies made alike (see stage); the table names the originals.
	exe, err := b.stageAll(bins)
	if err != nil {
		return err
	}
	for i := 0; i < *flagN && ctx.Err() == nil; i++ {
		if verb == "VERSION" {
			for _, k := range b.rng.Perm(len(bins)) {
				s, err := run(ctx, cniEnv("VERSION", "", ""), versionStdin, exe[k])
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
			conf := make([][]byte, len(bins))
			var fake *servedFake
			for k := range f {
				f[k] = newFixture(sc, true, true)
				c := b.oursConf("")
				if verb == "ADD-IMDS" {
					fake = compareFake(sc, fake, f[k].eni.MAC.String())
					c["imds"] = map[string]any{"enabled": true, "endpoint": fake.URL}
				}
				conf[k] = f[k].conf(names[ours], c)
			}
			for _, v := range []string{"ADD", "DEL"} {
				for _, k := range b.rng.Perm(len(bins)) {
					s, err := run(ctx, cniEnv(v, f[k].ns.Path, ifName), conf[k], exe[k])
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

// servedFake is the in-process IMDS fake of a compare round and its URL.
type servedFake struct {
	*imdsfake.Fake
	URL string
}

// compareFake adds mac (device 1, the fixture's address and subnet) to the
// round's fake, starting it on first use.
func compareFake(sc *scope, f *servedFake, mac string) *servedFake {
	if f == nil {
		fake := imdsFakeFor(mac)
		return &servedFake{fake, imdsfake.Start(sc, fake)}
	}
	f.AddENI(imdsFixtureENI(mac))
	return f
}
