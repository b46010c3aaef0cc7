package breaker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

func TestLatencyBucketBounds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{time.Millisecond, 0}, // bounds are inclusive
		{time.Millisecond + 1, 1},
		{3 * time.Millisecond, 2},
		{10 * time.Second, breaker.LatencyBuckets - 2},
		{10*time.Second + 1, breaker.LatencyBuckets - 1},
		{time.Hour, breaker.LatencyBuckets - 1},
	}
	for _, tt := range tests {
		if got := breaker.LatencyBucket(tt.d); got != tt.want {
			t.Errorf("LatencyBucket(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

func TestLatencyQuantileIsTheBucketsUpperBound(t *testing.T) {
	var l breaker.Latency
	for range 90 {
		l.Observe(3 * time.Millisecond) // <= 5ms
	}
	for range 9 {
		l.Observe(150 * time.Millisecond) // <= 200ms
	}
	l.Observe(30 * time.Second) // past the last bound

	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 5 * time.Millisecond},
		{0.9, 5 * time.Millisecond},
		{0.91, 200 * time.Millisecond},
		{0.99, 200 * time.Millisecond},
		{0.999, breaker.LatencyOverflow},
		{1, breaker.LatencyOverflow},
	}
	for _, tt := range tests {
		got, ok := l.Quantile(tt.q)
		if !ok || got != tt.want {
			t.Errorf("Quantile(%v) = %v, %v; want %v", tt.q, got, ok, tt.want)
		}
	}
	if _, ok := (breaker.Latency{}).Quantile(0.5); ok {
		t.Error("an empty histogram has a median")
	}
	if got := breaker.FormatLatency(breaker.LatencyOverflow); got != ">10s" {
		t.Errorf("FormatLatency(overflow) = %q", got)
	}
}

func TestLatencyWireForm(t *testing.T) {
	var l breaker.Latency
	l.Observe(4 * time.Millisecond)
	s := l.Slice()
	if len(s) != 3 || s[2] != 1 {
		t.Fatalf("Slice() = %v, want trailing empty buckets dropped", s)
	}
	back, err := breaker.LatencyFromSlice("latency", s)
	if err != nil || back != l {
		t.Fatalf("LatencyFromSlice(%v) = %v, %v", s, back, err)
	}
	if (breaker.Latency{}).Slice() != nil {
		t.Error("an empty histogram is sent as buckets")
	}
	_, err = breaker.LatencyFromSlice("counts.latency", make([]int64, breaker.LatencyBuckets+1))
	if !errors.Is(err, breaker.ErrInvalidCounts) || err.Error() != "breaker: invalid counts: counts.latency: 15 buckets, the limit is 14" {
		t.Errorf("too long: %v", err)
	}
	if _, err := breaker.LatencyFromSlice("latency", []int64{1, -1}); !errors.Is(err, breaker.ErrInvalidCounts) {
		t.Errorf("negative bucket: %v", err)
	}
}

func TestCountsLatencyAtMostTheCalls(t *testing.T) {
	c := breaker.Counts{Successes: 1}
	c.Latency.Observe(time.Millisecond)
	c.Latency.Observe(time.Millisecond)
	if err := c.Validate(); !errors.Is(err, breaker.ErrInvalidCounts) {
		t.Errorf("2 latencies for 1 call: %v", err)
	}
	c.Latency = c.Latency.Trim(c.Calls())
	if err := c.Validate(); err != nil {
		t.Errorf("trimmed: %v", err)
	}

	var timed breaker.Counts
	timed.AddTimed(breaker.Verdict{Outcome: breaker.Failure}, 40*time.Millisecond)
	timed.AddTimed(breaker.Verdict{Outcome: breaker.Rejected}, time.Millisecond)
	timed.AddTimed(breaker.Verdict{Outcome: breaker.Excluded}, time.Millisecond)
	if got := timed.Latency.Total(); got != 1 {
		t.Errorf("latencies counted = %d, want only the call that counts", got)
	}
}

func TestWindowSumsLatency(t *testing.T) {
	p := breaker.DefaultPolicy()
	now := time.Unix(1000, 0)
	b, err := breaker.New(p, now)
	if err != nil {
		t.Fatal(err)
	}
	for i, inst := range []string{"a", "b"} {
		c := breaker.Counts{Successes: 10}
		for range 10 {
			c.Latency.Observe(time.Duration(i+1) * 30 * time.Millisecond)
		}
		if err := b.Report(now, inst, c); err != nil {
			t.Fatal(err)
		}
	}
	// An older reporter sends no latency: its calls count, its durations do not.
	if err := b.Report(now, "old", breaker.Counts{Successes: 5}); err != nil {
		t.Fatal(err)
	}
	ev := b.Evidence(now)
	if ev.Calls != 25 || ev.Latency.Total() != 20 {
		t.Fatalf("calls %d, latency samples %d; want 25, 20", ev.Calls, ev.Latency.Total())
	}
	if p50, _ := ev.Latency.Quantile(0.5); p50 != 50*time.Millisecond {
		t.Errorf("p50 = %v, want 50ms", p50)
	}
	if p99, _ := ev.Latency.Quantile(0.99); p99 != 100*time.Millisecond {
		t.Errorf("p99 = %v, want 100ms", p99)
	}
}
