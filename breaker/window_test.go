package breaker_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

// TestWindowAgainstModel feeds random reports from a churning fleet and
// checks the window's sums, distinct-instance counts and fleet-wide run
// against a brute-force recount of every report, at many points in time.
func TestWindowAgainstModel(t *testing.T) {
	for _, buckets := range []int{1, 4, 10} {
		t.Run(fmt.Sprintf("%d buckets", buckets), func(t *testing.T) {
			p := testPolicy()
			p.Window, p.Buckets = 4*time.Second, buckets
			p.FailureRateThreshold, p.MinimumCalls = 1, breaker.MaxCount // never trips
			b, err := breaker.New(p, t0)
			must(t, err)
			width := int64(p.Window) / int64(buckets)
			epoch := func(at time.Time) int64 { return at.UnixNano() / width }

			type rep struct {
				at time.Time
				id string
				c  breaker.Counts
			}
			var reps []rep
			rng := rand.New(rand.NewPCG(7, uint64(buckets)))
			now := t0
			for i := range 3000 {
				now = now.Add(time.Duration(rng.IntN(300)) * time.Millisecond)
				// A fleet of 40 that drifts through 400 ids: old ones go quiet.
				id := fmt.Sprintf("i%d", i/10+rng.IntN(40))
				var c breaker.Counts
				switch rng.IntN(6) {
				case 0:
					c = breaker.Counts{Rejected: int64(rng.IntN(3)), Excluded: int64(rng.IntN(3))}
				case 1, 2:
					c.Failures = int64(1 + rng.IntN(3))
					c.TrailingFailures = c.Failures
				default:
					c.Successes = int64(rng.IntN(5))
					c.Failures = int64(rng.IntN(3))
					c.TrailingFailures = int64(rng.IntN(int(c.Failures) + 1))
				}
				c.Slow = int64(rng.IntN(int(c.Calls()) + 1))
				must(t, b.Report(now, id, c))
				reps = append(reps, rep{now, id, c})

				if i%7 != 0 {
					continue
				}
				if tr, ok := b.Evaluate(now); ok { // prunes quiet instances
					t.Fatalf("tripped: %v", tr)
				}
				got := b.Evidence(now)

				e := epoch(now)
				lo := e - int64(buckets) + 1
				var want breaker.Evidence
				calls, fails, slows := map[string]bool{}, map[string]bool{}, map[string]bool{}
				type part struct{ epoch, n int64 }
				var run []part
				for _, r := range reps {
					re := epoch(r.at)
					if r.c.Successes > 0 {
						run = []part{{re, r.c.TrailingFailures}}
					} else {
						run = append(run, part{re, r.c.Failures})
					}
					if re < lo {
						continue
					}
					want.Successes += r.c.Successes
					want.Failures += r.c.Failures
					want.Slow += r.c.Slow
					want.Rejected += r.c.Rejected
					want.Excluded += r.c.Excluded
					if r.c.Calls() > 0 {
						calls[r.id] = true
					}
					if r.c.Failures > 0 {
						fails[r.id] = true
					}
					if r.c.Slow > 0 {
						slows[r.id] = true
					}
				}
				for _, pt := range run {
					if pt.epoch >= lo {
						want.ConsecutiveFailures += pt.n
					}
				}
				want.ReportingInstances, want.FailingInstances, want.SlowInstances = len(calls), len(fails), len(slows)
				if got.Successes != want.Successes || got.Failures != want.Failures || got.Slow != want.Slow ||
					got.Rejected != want.Rejected || got.Excluded != want.Excluded ||
					got.ConsecutiveFailures != want.ConsecutiveFailures ||
					got.ReportingInstances != want.ReportingInstances || got.FailingInstances != want.FailingInstances ||
					got.SlowInstances != want.SlowInstances {
					t.Fatalf("report %d at %v:\n got %s\nwant %s", i, now.Sub(t0), summary(got), summary(want))
				}
			}
		})
	}
}
