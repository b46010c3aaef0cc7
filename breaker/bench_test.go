package breaker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

// instances are 1000 caller instance ids, as a large fleet would report.
var instances = func() []string {
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("caller-%04d.ns.pod", i)
	}
	return ids
}()

// benchBreaker returns a breaker that does not trip (2% failures) with
// every instance reporting into every bucket of its window.
func benchBreaker(b *testing.B) (*breaker.Breaker, time.Time) {
	p := breaker.DefaultPolicy()
	br, err := breaker.New(p, t0)
	if err != nil {
		b.Fatal(err)
	}
	now := t0
	for bucket := range p.Buckets {
		now = t0.Add(time.Duration(bucket) * time.Second)
		for _, id := range instances {
			if err := br.Report(now, id, breaker.Counts{Successes: 49, Failures: 1}); err != nil {
				b.Fatal(err)
			}
		}
	}
	return br, now
}

// BenchmarkReport: one report from one of 1000 instances, time advancing a
// bucket per round of the fleet.
func BenchmarkReport(b *testing.B) {
	br, now := benchBreaker(b)
	c := breaker.Counts{Successes: 49, Failures: 1, Slow: 2}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%len(instances) == 0 {
			now = now.Add(time.Second)
		}
		if err := br.Report(now, instances[i%len(instances)], c); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkReportLatency is BenchmarkReport with a latency histogram in
// every report, as the guard and the access logs send.
func BenchmarkReportLatency(b *testing.B) {
	br, now := benchBreaker(b)
	c := breaker.Counts{Successes: 49, Failures: 1, Slow: 2}
	for k := range c.Calls() {
		c.Latency.Observe(time.Duration(k) * time.Millisecond)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%len(instances) == 0 {
			now = now.Add(time.Second)
		}
		if err := br.Report(now, instances[i%len(instances)], c); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkEvaluate: one evaluation of a window holding reports from 1000
// instances in each of its 10 buckets.
func BenchmarkEvaluate(b *testing.B) {
	br, now := benchBreaker(b)
	b.ReportAllocs()
	for b.Loop() {
		if t, ok := br.Evaluate(now); ok {
			b.Fatalf("tripped: %v", t)
		}
	}
}
