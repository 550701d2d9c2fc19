package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// results is everything the report shows.
type results struct {
	seed    uint64
	machine machine
	elapsed time.Duration

	empty   outcomes
	version [2]outcomes

	add, del [2]outcomes
	// ours' own measure of each successful ADD/DEL (the log line's
	// duration_ms: from the verb's start to its log line).
	addInproc, delInproc series
	objects              [2][2]int // rules, routes left by ADD in round 0

	arrivalExit  series // ours: link usable -> ADD exit
	arrivalTotal series // ours: ADD total
	arrivalFail  outcomes
	arrivalSbr   outcomes // sbr in the same scenario

	timeoutTotal series   // ours, absent link, linkTimeout 1s: every call
	timeoutExit  outcomes // its exit codes (11 expected)

	idle idleResult

	imds imdsResult

	front frontResult
}

var versionStdin = []byte(`{"cniVersion":"1.0.0"}`)

// floor: an empty Go binary and both plugins' VERSION, interleaved.
func (b *bench) floor(ctx context.Context) error {
	env := cniEnv("VERSION", "", "")
	for i := 0; i < *flagN && ctx.Err() == nil; i++ {
		for _, k := range b.rng.Perm(3) {
			bin := b.empty
			if k < 2 {
				bin = b.bin[k]
			}
			s, err := run(ctx, env, versionStdin, bin)
			if err != nil {
				return err
			}
			if k < 2 {
				b.res.version[k].add(s)
			} else {
				b.res.empty.add(s)
			}
		}
		progress("floor round", i, *flagN)
	}
	return ctx.Err()
}

// addDel: per round, two fresh identical namespaces, one per plugin; both
// ADDs back to back in random order, then both DELs in random order.
func (b *bench) addDel(ctx context.Context) error {
	var tol tolerate
	for i := 0; i < *flagN && ctx.Err() == nil; i++ {
		var runErr error
		err := trial(fmt.Sprintf("add/del round %d", i), func(sc *scope) {
			var f [2]*fixture
			var conf [2][]byte
			for k := range f {
				f[k] = newFixture(sc, true, true)
			}
			conf[ours] = f[ours].conf(names[ours], b.oursConf(""))
			conf[sbr] = f[sbr].conf(names[sbr], nil)
			for _, verb := range []string{"ADD", "DEL"} {
				for _, k := range b.rng.Perm(2) {
					s, err := run(ctx, cniEnv(verb, f[k].ns.Path, ifName), conf[k], b.bin[k])
					if err != nil {
						runErr = err
						return
					}
					var d time.Duration
					if k == ours {
						d = b.loggedDuration()
					}
					if verb == "ADD" {
						b.res.add[k].add(s)
						if s.Exit == 0 && d > 0 {
							b.res.addInproc = append(b.res.addInproc, d)
						}
					} else {
						b.res.del[k].add(s)
						if s.Exit == 0 && d > 0 {
							b.res.delInproc = append(b.res.delInproc, d)
						}
					}
				}
				if verb == "ADD" && i == 0 {
					for k := range f {
						b.res.objects[k][0], b.res.objects[k][1] = policyObjects(sc, f[k])
					}
				}
			}
		})
		if runErr != nil {
			return runErr
		}
		if err := tol.note(err); err != nil {
			return err
		}
		progress("add/del round", i, *flagN)
	}
	return ctx.Err()
}

// arrival: ADD starts with the ENI still in the host namespace; a timer
// moves it in (move, rename, address, up) arrival-delay later. Measured:
// from the link becoming usable to ADD's exit. sbr gets the same scenario,
// interleaved, to show what a non-waiting plugin does.
func (b *bench) arrival(ctx context.Context) error {
	var tol tolerate
	for i := 0; i < *flagArrivalN && ctx.Err() == nil; i++ {
		for _, k := range b.rng.Perm(2) {
			var runErr error
			err := trial(fmt.Sprintf("arrival %s %d", names[k], i), func(sc *scope) {
				f := newFixture(sc, true, false)
				a := prepareArrival(sc, f)
				var conf []byte
				if k == ours {
					conf = f.conf(names[ours], b.oursConf("5s"))
				} else {
					conf = f.conf(names[sbr], nil)
				}
				p, err := startProc(ctx, cniEnv("ADD", f.ns.Path, ifName), conf, b.bin[k])
				if err != nil {
					runErr = err
					return
				}
				timer := time.NewTimer(time.Until(p.start.Add(*flagDelay)))
				select {
				case <-timer.C:
				case <-ctx.Done():
				}
				arrived, ferr := a.fire()
				s, err := p.wait()
				if err != nil {
					runErr = err
					return
				}
				if ferr != nil {
					sc.Fatalf("link arrival: %v", ferr)
				}
				if k == sbr {
					b.res.arrivalSbr.add(s)
					return
				}
				b.res.arrivalFail.add(s)
				if s.Exit == 0 {
					b.res.arrivalExit = append(b.res.arrivalExit, time.Duration(s.MonoEnd-arrived))
					b.res.arrivalTotal = append(b.res.arrivalTotal, s.Dur)
				}
			})
			if runErr != nil {
				return runErr
			}
			if err := tol.note(err); err != nil {
				return err
			}
		}
		progress("arrival trial", i, *flagArrivalN)
	}
	return ctx.Err()
}

// timeoutLinkTimeout is the linkTimeout of the absent-link scenario.
const timeoutLinkTimeout = time.Second

// timeout: the link never arrives; ADD must give up at linkTimeout. Several
// run at once (as a host starting several tasks would), each worker
// starting at a random offset so exits do not line up.
func (b *bench) timeout(ctx context.Context) error {
	jobs := make(chan int)
	var mu sync.Mutex
	var tol tolerate
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < *flagTimeoutP; w++ {
		offset := time.Duration(b.rng.Int64N(int64(timeoutLinkTimeout)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(offset):
			case <-ctx.Done():
			}
			for i := range jobs {
				var runErr error
				err := trial(fmt.Sprintf("absent link %d", i), func(sc *scope) {
					f := newFixture(sc, false, false)
					s, err := run(ctx, cniEnv("ADD", f.ns.Path, ifName), f.conf(names[ours], b.oursConf(timeoutLinkTimeout.String())), b.bin[ours])
					if err != nil {
						runErr = err
						return
					}
					mu.Lock()
					b.res.timeoutTotal = append(b.res.timeoutTotal, s.Dur)
					b.res.timeoutExit.add(s)
					mu.Unlock()
				})
				mu.Lock()
				if runErr != nil && firstErr == nil {
					firstErr = runErr
				}
				if terr := tol.note(err); terr != nil && firstErr == nil {
					firstErr = terr
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < *flagTimeoutN && ctx.Err() == nil; i++ {
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop {
			break
		}
		jobs <- i
		progress("absent-link call", i, *flagTimeoutN)
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// loggedDuration reads what ours appended to its log since the last call
// and returns the last line's duration_ms (0 when there is none).
func (b *bench) loggedDuration() time.Duration {
	return b.loggedLine().duration()
}

// logLine is what the benchmark reads from ours' log line.
type logLine struct {
	DurationMS     float64 `json:"duration_ms"`
	IMDSRequests   int     `json:"imds_requests"`
	IMDSRoundTrips int     `json:"imds_round_trips"`
}

func (l logLine) duration() time.Duration {
	return time.Duration(l.DurationMS * float64(time.Millisecond))
}

// loggedLine reads what ours appended to its log since the last call and
// returns the last line (zero when there is none).
func (b *bench) loggedLine() logLine {
	f, err := os.Open(b.log)
	if err != nil {
		return logLine{}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return logLine{}
	}
	if st.Size() < b.logOff {
		b.logOff = 0 // rotated
	}
	buf := make([]byte, st.Size()-b.logOff)
	n, _ := f.ReadAt(buf, b.logOff)
	b.logOff += int64(n)
	var last logLine
	for _, line := range bytes.Split(buf[:n], []byte("\n")) {
		var l logLine
		if json.Unmarshal(line, &l) == nil && l.DurationMS > 0 {
			last = l
		}
	}
	return last
}
