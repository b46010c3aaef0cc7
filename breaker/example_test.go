package breaker_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/colonymesh/colony/breaker"
)

// A pair's breaker trips only when enough caller instances see failures:
// one sick caller is not enough, a second one is.
func ExampleBreaker() {
	p := breaker.DefaultPolicy() // 50% of >= 20 calls over 10s, from >= 2 instances
	p.Jitter = 0
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b, _ := breaker.New(p, now, breaker.WithRand(rand.New(rand.NewPCG(1, 2)).Float64))

	// A sidecar classifies each call and counts it in the current report.
	k, _ := breaker.NewClassifier(p.Classification, p.SlowCallDuration)
	var report breaker.Counts
	for range 30 {
		report.Add(k.Classify(breaker.Call{Kind: breaker.CallHTTP, Code: 503, Duration: 20 * time.Millisecond}))
	}

	_ = b.Report(now, "caller-1", report)
	_ = b.Report(now, "caller-2", breaker.Counts{Successes: 10})
	_, tripped := b.Evaluate(now)
	ev := b.Evidence(now)
	fmt.Printf("one sick caller: tripped=%v failureRate=%.2f failing=%d/%d blocked=%s\n",
		tripped, ev.FailureRate, ev.FailingInstances, ev.ReportingInstances, ev.QuorumBlocked)

	now = now.Add(500 * time.Millisecond)
	_ = b.Report(now, "caller-3", breaker.Counts{Failures: 5, TrailingFailures: 5})
	t, tripped := b.Evaluate(now)
	fmt.Println("two sick callers:", tripped, t)
	fmt.Println("half-open at:", t.OpenUntil.Format(time.TimeOnly))
	// Output:
	// one sick caller: tripped=false failureRate=0.75 failing=1/2 blocked=failureRate
	// two sick callers: true CLOSED->OPEN gen=1 opens=1 for=10s (failureRate: calls=45 failures=35 slow=0 consecutive=5 failing=2 slowInstances=0 reporting=3)
	// half-open at: 12:00:10
}
