package coordinator

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/engine"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// BenchmarkReport measures outcome reports accepted per second by one node
// of a 3-node cluster, from 16 concurrent reporters each sending one
// sidecar's report of 10 pairs per call: the leader itself, and a follower
// that forwards to it.
//
//	go test -run '^$' -bench BenchmarkReport -benchtime 20000x ./coordinator/
func BenchmarkReport(b *testing.B) {
	for _, via := range []string{"leader", "follower"} {
		b.Run(via, func(b *testing.B) {
			c := newTestCluster(b, 3)
			n := c.leader()
			if via == "follower" {
				n = c.followers()[0]
			}
			bc := breakersOf(n)
			for i := range 10 {
				if _, err := bc.ApplyPolicies(context.Background(), &colonyv1.ApplyPoliciesRequest{
					Policies: []*colonyv1.PolicySpec{{Callee: fmt.Sprintf("svc%d", i)}},
				}); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Go(func() {
					req := &colonyv1.ReportRequest{}
					for i := range 10 {
						req.Reports = append(req.Reports, &colonyv1.OutcomeReport{
							Caller: "checkout", Callee: fmt.Sprintf("svc%d", i), Instance: fmt.Sprintf("c%d", w),
							Counts: &colonyv1.OutcomeCounts{Successes: 100, Failures: 1},
						})
					}
					for next.Add(1) <= int64(b.N) {
						if _, err := bc.Report(context.Background(), req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reports/s")
			b.ReportMetric(float64(10*b.N)/b.Elapsed().Seconds(), "pair-reports/s")
		})
	}
}

// BenchmarkTripVisible measures, per trip, the time from the Report call
// that completes the quorum (sent to one follower) until another follower's
// tree holds the OPEN record: what a sidecar watching that node waits. Each
// iteration resets the pair with an override clear.
//
//	go test -run '^$' -bench BenchmarkTripVisible -benchtime 50x ./coordinator/
func BenchmarkTripVisible(b *testing.B) {
	c := newTestCluster(b, 3)
	f := c.followers()
	in, out := f[0], f[1]
	bc := breakersOf(in)
	ctx := context.Background()
	if _, err := bc.ApplyPolicies(ctx, &colonyv1.ApplyPoliciesRequest{Policies: []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(testPolicy(time.Minute))}}}); err != nil {
		b.Fatal(err)
	}
	rep := func(inst string) {
		if _, err := bc.Report(ctx, &colonyv1.ReportRequest{Reports: []*colonyv1.OutcomeReport{{
			Caller: "checkout", Callee: "payments", Instance: inst, Counts: &colonyv1.OutcomeCounts{Failures: 20, TrailingFailures: 20},
		}}}); err != nil {
			b.Fatal(err)
		}
	}
	state := func() breaker.State {
		rec := recordOn(b, out, "checkout", "payments")
		if rec == nil {
			return breaker.Closed
		}
		return rec.State
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		rep("c1")
		time.Sleep(2 * engine.Tick) // c1 alone: held back by the quorum
		b.StartTimer()
		start := time.Now()
		rep("c2")
		for deadline := start.Add(10 * time.Second); state() != breaker.Open; {
			if time.Now().After(deadline) {
				b.Fatal("no trip within 10s")
			}
			time.Sleep(100 * time.Microsecond)
		}
		total += time.Since(start)
		b.StopTimer()
		if _, err := bc.ClearOverride(ctx, &colonyv1.ClearOverrideRequest{Caller: "checkout", Callee: "payments"}); err == nil {
			b.Fatal("cleared an override that was never set")
		}
		if _, err := bc.SetOverride(ctx, &colonyv1.SetOverrideRequest{Caller: "checkout", Callee: "payments", Mode: colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_CLOSED, Reason: "bench reset"}); err != nil {
			b.Fatal(err)
		}
		if _, err := bc.ClearOverride(ctx, &colonyv1.ClearOverrideRequest{Caller: "checkout", Callee: "payments", Reason: "bench reset"}); err != nil {
			b.Fatal(err)
		}
		for state() != breaker.Closed {
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/trip")
}
