package breaker_test

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

func TestOpenDurationFor(t *testing.T) {
	p := testPolicy() // 10s, x2, cap 60s
	tests := []struct {
		opens int
		u     float64
		want  time.Duration
	}{
		{0, 0.5, 10 * time.Second},
		{1, 0.5, 10 * time.Second},
		{2, 0.5, 20 * time.Second},
		{3, 0.5, 40 * time.Second},
		{4, 0.5, 60 * time.Second},
		{5000, 0.5, 60 * time.Second},
	}
	for _, tt := range tests {
		if got := p.OpenDurationFor(tt.opens, tt.u); got != tt.want {
			t.Errorf("OpenDurationFor(%d, %v) = %v, want %v", tt.opens, tt.u, got, tt.want)
		}
	}
	p.Jitter = 0.2
	jittered := []struct {
		opens int
		u     float64
		want  time.Duration
	}{
		{1, 0, 8 * time.Second},
		{1, 0.25, 9 * time.Second},
		{1, 0.75, 11 * time.Second},
		{3, 0, 32 * time.Second},
		{4, 0, 48 * time.Second},    // capped to 60s, then jittered down
		{4, 0.99, 60 * time.Second}, // jitter never passes the cap
	}
	for _, tt := range jittered {
		if got := p.OpenDurationFor(tt.opens, tt.u); got != tt.want {
			t.Errorf("jitter 0.2: OpenDurationFor(%d, %v) = %v, want %v", tt.opens, tt.u, got, tt.want)
		}
	}
	p.MaxOpenDuration = 0 // no cap: huge open counts saturate, never overflow
	if got := p.OpenDurationFor(1000, 0.5); got <= 0 {
		t.Errorf("uncapped OpenDurationFor(1000) = %v, want a huge positive duration", got)
	}
}

// TestBackoffAcrossReopens walks a breaker through repeated failed probes:
// each re-open lasts longer, up to the cap, within the jitter bounds, from a
// seeded (deterministic) source; every transition increments the generation.
func TestBackoffAcrossReopens(t *testing.T) {
	p := testPolicy()
	p.Jitter = 0.25
	rng := rand.New(rand.NewPCG(1, 2))
	run := func() []time.Duration {
		b, err := breaker.New(p, t0, breaker.WithRand(rand.New(rand.NewPCG(1, 2)).Float64))
		must(t, err)
		now := t0
		must(t, b.Report(now, "a", fail(10)))
		must(t, b.Report(now, "b", fail(10)))
		var durs []time.Duration
		gen := uint64(0)
		for i := 1; i <= 8; i++ {
			tr, ok := b.Evaluate(now)
			if !ok || tr.To != breaker.Open || tr.OpenCount != i {
				t.Fatalf("open %d: %v, %v", i, tr, ok)
			}
			gen++
			if tr.Generation != gen {
				t.Fatalf("generation %d, want %d", tr.Generation, gen)
			}
			d := tr.OpenUntil.Sub(now)
			base := min(10*time.Second<<(i-1), 60*time.Second)
			lo, hi := time.Duration(float64(base)*0.75), min(time.Duration(float64(base)*1.25), 60*time.Second)
			if d < lo || d > hi {
				t.Errorf("open %d lasts %v, want within [%v, %v]", i, d, lo, hi)
			}
			durs = append(durs, d)
			if tr, ok := b.Evaluate(tr.OpenUntil.Add(-time.Nanosecond)); ok {
				t.Fatalf("left OPEN early: %v", tr)
			}
			now = tr.OpenUntil
			if tr, ok := b.Evaluate(now); !ok || tr.To != breaker.HalfOpen {
				t.Fatalf("want HALF_OPEN at the deadline, got %v, %v", tr, ok)
			}
			gen++
			b.AssignProbes(now, []string{"a", "b"})
			must(t, b.ProbeResult(now, "a", 0, 1))
		}
		return durs
	}
	first := run()
	if again := run(); !reflect.DeepEqual(first, again) {
		t.Errorf("same seed, different open durations:\n%v\n%v", first, again)
	}
	// The bound holds over many draws too.
	for range 10000 {
		u := rng.Float64()
		for opens := 1; opens <= 5; opens++ {
			base := min(10*time.Second<<(opens-1), 60*time.Second)
			d := p.OpenDurationFor(opens, u)
			if d < time.Duration(float64(base)*0.75) || d > min(time.Duration(float64(base)*1.25), 60*time.Second) {
				t.Fatalf("OpenDurationFor(%d, %v) = %v out of bounds", opens, u, d)
			}
		}
	}
}

// TestFullCycle: trip, wait, probe, close, and trip again from the base
// open duration (the open count resets on close).
func TestFullCycle(t *testing.T) {
	p := testPolicy()
	b, err := breaker.New(p, t0)
	must(t, err)
	var log []string
	step := func(now time.Time) {
		if tr, ok := b.Evaluate(now); ok {
			log = append(log, tr.String())
			if tr.To == breaker.HalfOpen {
				b.AssignProbes(now, []string{"a", "b", "c"})
			}
		}
	}
	must(t, b.Report(t0, "a", fail(6)))
	must(t, b.Report(t0, "b", fail(6)))
	step(t0.Add(time.Second))
	step(t0.Add(11 * time.Second))
	must(t, b.Report(t0.Add(12*time.Second), "a", ok(1)))
	must(t, b.Report(t0.Add(12*time.Second), "b", ok(1)))
	step(t0.Add(12 * time.Second))
	// Old failures do not carry over the fresh window: this alone does not trip.
	must(t, b.Report(t0.Add(13*time.Second), "a", fail(9)))
	step(t0.Add(13 * time.Second))
	must(t, b.Report(t0.Add(13*time.Second), "b", fail(1)))
	step(t0.Add(13 * time.Second))
	want := []string{
		"CLOSED->OPEN gen=1 opens=1 for=10s (failureRate: calls=12 failures=12 slow=0 consecutive=12 failing=2 slowInstances=0 reporting=2)",
		"OPEN->HALF_OPEN gen=2 (openElapsed)",
		"HALF_OPEN->CLOSED gen=3 (probesSucceeded: successes=2 failures=0)",
		"CLOSED->OPEN gen=4 opens=1 for=10s (failureRate: calls=10 failures=10 slow=0 consecutive=10 failing=2 slowInstances=0 reporting=2)",
	}
	if !reflect.DeepEqual(log, want) {
		t.Errorf("transitions:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	p := testPolicy()
	p.Jitter = 0.1
	b, err := breaker.New(p, t0, breaker.WithRand(func() float64 { return 0.9 }))
	must(t, err)
	must(t, b.Report(t0, "a", fail(6)))
	must(t, b.Report(t0, "b", fail(6)))
	tr, _ := b.Evaluate(t0.Add(time.Second))

	check := func(name string, b *breaker.Breaker, at time.Time) *breaker.Breaker {
		t.Helper()
		rec := b.Snapshot()
		data, err := json.Marshal(rec)
		must(t, err)
		var back breaker.Record
		must(t, json.Unmarshal(data, &back))
		r, err := breaker.Restore(p, back, at)
		must(t, err)
		got := r.Snapshot()
		if !reflect.DeepEqual(normalize(got), normalize(rec)) {
			t.Fatalf("%s: restored %+v\n want %+v\n json %s", name, got, rec, data)
		}
		return r
	}

	// OPEN: the deadline (jitter included) survives; not before, then on time.
	r := check("open", b, t0.Add(2*time.Second))
	if !strings.Contains(string(mustJSON(t, r.Snapshot())), `"state":"OPEN"`) {
		t.Errorf("state not encoded by name: %s", mustJSON(t, r.Snapshot()))
	}
	if _, ok := r.Evaluate(tr.OpenUntil.Add(-time.Millisecond)); ok {
		t.Fatal("restored breaker left OPEN early")
	}
	if tr2, ok := r.Evaluate(tr.OpenUntil); !ok || tr2.To != breaker.HalfOpen || tr2.Generation != tr.Generation+1 {
		t.Fatalf("restored breaker at its deadline: %v, %v", tr2, ok)
	}

	// HALF_OPEN with an assignment: kept; holders get a fresh probe timeout.
	assigned := r.AssignProbes(tr.OpenUntil, []string{"a", "b", "c", "d"})
	restoredAt := tr.OpenUntil.Add(time.Second)
	h := check("half-open", r, restoredAt)
	if d, ok := h.Deadline(); !ok || !d.Equal(restoredAt.Add(p.ProbeTimeout)) {
		t.Errorf("restored HALF_OPEN deadline %v, want %v", d, restoredAt.Add(p.ProbeTimeout))
	}
	for id := range assigned {
		must(t, h.Report(restoredAt, id, ok(1)))
	}
	if tr3, ok := h.Evaluate(restoredAt); !ok || tr3.To != breaker.Closed {
		t.Fatalf("restored HALF_OPEN did not close on probe successes: %v, %v", tr3, ok)
	}
	check("closed", h, restoredAt.Add(time.Second))
}

// normalize drops monotonic clock readings and zones for comparison.
func normalize(r breaker.Record) breaker.Record {
	r.Since = r.Since.UTC()
	r.OpenUntil = r.OpenUntil.UTC()
	r.Evidence.At = r.Evidence.At.UTC()
	r.Evidence.WindowStart = r.Evidence.WindowStart.UTC()
	return r
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err)
	return b
}

func TestRestoreRejectsBadRecords(t *testing.T) {
	tests := []struct {
		name string
		rec  breaker.Record
		want string
	}{
		{"unknown state", breaker.Record{State: 7}, "state: unknown state 7"},
		{"negative open count", breaker.Record{OpenCount: -1}, "openCount: -1 is negative"},
		{"open without deadline", breaker.Record{State: breaker.Open, OpenCount: 1}, "needs openUntil"},
		{"probes when closed", breaker.Record{Probes: map[string]int{"a": 1}}, "only a HALF_OPEN record"},
		{"negative permits", breaker.Record{State: breaker.HalfOpen, Probes: map[string]int{"a": -1}}, "-1 permits is negative"},
		{"empty holder", breaker.Record{State: breaker.HalfOpen, Probes: map[string]int{"": 1}}, "invalid instance id"},
	}
	for _, tt := range tests {
		_, err := breaker.Restore(testPolicy(), tt.rec, t0)
		if !errors.Is(err, breaker.ErrInvalidRecord) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Restore error %v, want ErrInvalidRecord with %q", tt.name, err, tt.want)
		}
	}
	// A policy whose budget shrank cuts the assignment down, in instance order.
	p := testPolicy()
	p.ProbeBudget, p.SuccessesToClose = 2, 1
	b, err := breaker.Restore(p, breaker.Record{State: breaker.HalfOpen, Probes: map[string]int{"a": 1, "b": 1, "c": 1}}, t0)
	must(t, err)
	if got := b.Snapshot().Probes; !reflect.DeepEqual(got, map[string]int{"a": 1, "b": 1}) {
		t.Errorf("probes over budget restored as %v, want a and b", got)
	}
}

func TestReportRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		inst string
		c    breaker.Counts
		is   error
		want string
	}{
		{"negative failures", "a", breaker.Counts{Failures: -3}, breaker.ErrInvalidCounts, "failures: -3 is negative"},
		{"negative successes", "a", breaker.Counts{Successes: -1}, breaker.ErrInvalidCounts, "successes: -1 is negative"},
		{"negative rejected", "a", breaker.Counts{Rejected: -1}, breaker.ErrInvalidCounts, "rejected: -1 is negative"},
		{"absurd size", "a", breaker.Counts{Successes: breaker.MaxCount + 1}, breaker.ErrInvalidCounts, "above the limit"},
		{"slow above calls", "a", breaker.Counts{Successes: 1, Slow: 2}, breaker.ErrInvalidCounts, "slow: 2 exceeds successes+failures 1"},
		{"trailing above failures", "a", breaker.Counts{Failures: 1, TrailingFailures: 2}, breaker.ErrInvalidCounts, "trailingFailures: 2 exceeds failures 1"},
		{"empty instance", "", ok(1), breaker.ErrInvalidInstance, "empty"},
		{"oversized instance", strings.Repeat("x", breaker.MaxInstanceIDLen+1), ok(1), breaker.ErrInvalidInstance, "above the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := breaker.New(testPolicy(), t0)
			must(t, b.Report(t0, "z", mix(3, 3)))
			before := b.Evidence(t0)
			err := b.Report(t0, tt.inst, tt.c)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Report error %v, want %v with %q", err, tt.is, tt.want)
			}
			if after := b.Evidence(t0); !reflect.DeepEqual(before, after) {
				t.Errorf("a rejected report changed the window:\n%+v\n%+v", before, after)
			}
		})
	}
	b := halfOpenBreaker(t, testPolicy(), 0)
	b.AssignProbes(t0, []string{"a"})
	if err := b.ProbeResult(t0, "a", -1, 0); !errors.Is(err, breaker.ErrInvalidCounts) {
		t.Errorf("ProbeResult(-1): %v, want ErrInvalidCounts", err)
	}
}

// TestTimeNeverGoesBack: a report stamped before one already seen lands in
// the newest bucket instead of corrupting the ring.
func TestTimeNeverGoesBack(t *testing.T) {
	b, _ := breaker.New(testPolicy(), t0)
	must(t, b.Report(t0.Add(5*time.Second), "a", fail(5)))
	must(t, b.Report(t0.Add(-time.Hour), "b", fail(5)))
	tr, ok := b.Evaluate(t0.Add(time.Second)) // also earlier: read as t0+5s
	if !ok || tr.Evidence.Calls != 10 || !tr.At.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("Evaluate = %v, %v at %v; want OPEN on 10 calls at t0+5s", tr, ok, tr.At)
	}
}

func TestSetPolicy(t *testing.T) {
	b, _ := breaker.New(testPolicy(), t0)
	must(t, b.Report(t0, "a", fail(5)))
	must(t, b.Report(t0, "b", fail(4)))
	p := testPolicy()
	p.MinimumCalls = 9 // same window: counts are kept
	must(t, b.SetPolicy(p, t0))
	if tr, ok := b.Evaluate(t0); !ok || tr.To != breaker.Open {
		t.Fatalf("after lowering minimumCalls: %v, %v; want OPEN", tr, ok)
	}

	b, _ = breaker.New(testPolicy(), t0)
	must(t, b.Report(t0, "a", fail(5)))
	must(t, b.Report(t0, "b", fail(5)))
	p = testPolicy()
	p.Window = 20 * time.Second // new geometry: a fresh window
	must(t, b.SetPolicy(p, t0.Add(time.Second)))
	if tr, ok := b.Evaluate(t0.Add(time.Second)); ok {
		t.Fatalf("counts survived a window change: %v", tr)
	}
	p.ProbeBudget = 0
	if err := b.SetPolicy(p, t0); !errors.Is(err, breaker.ErrInvalidPolicy) {
		t.Errorf("SetPolicy(invalid) = %v, want ErrInvalidPolicy", err)
	}
	if b.Policy().Window != 20*time.Second {
		t.Errorf("a rejected policy replaced the current one")
	}

	// A HALF_OPEN budget cut takes back unused permits, last instances first.
	h := halfOpenBreaker(t, testPolicy(), 0)
	h.AssignProbes(t0, []string{"a", "b", "c"})
	p = testPolicy()
	p.ProbeBudget, p.SuccessesToClose = 1, 1
	must(t, h.SetPolicy(p, t0))
	if got := h.Snapshot().Probes; !reflect.DeepEqual(got, map[string]int{"a": 1}) {
		t.Errorf("probes after budget cut %v, want a:1", got)
	}
}
