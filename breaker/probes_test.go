package breaker_test

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

// halfOpenBreaker returns a HALF_OPEN breaker (generation gen) with no
// permits assigned yet.
func halfOpenBreaker(t *testing.T, p breaker.Policy, gen uint64) *breaker.Breaker {
	t.Helper()
	b, err := breaker.Restore(p, breaker.Record{State: breaker.HalfOpen, Generation: gen, Since: t0, OpenCount: 1}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func TestAssignProbes(t *testing.T) {
	tests := []struct {
		name      string
		budget    int
		gen       uint64
		instances []string
		want      map[string]int
	}{
		{"fewer permits than instances", 3, 0, []string{"e", "d", "c", "b", "a"}, map[string]int{"a": 1, "b": 1, "c": 1}},
		{"the offset moves with the generation", 3, 2, []string{"a", "b", "c", "d", "e"}, map[string]int{"c": 1, "d": 1, "e": 1}},
		{"the offset wraps", 3, 4, []string{"a", "b", "c", "d", "e"}, map[string]int{"e": 1, "a": 1, "b": 1}},
		{"more permits than instances", 5, 0, []string{"b", "a", "c"}, map[string]int{"a": 2, "b": 2, "c": 1}},
		{"one instance takes the whole budget", 4, 7, []string{"a"}, map[string]int{"a": 4}},
		{"duplicates and invalid ids are dropped", 4, 0, []string{"b", "", "a", "b", "a"}, map[string]int{"a": 2, "b": 2}},
		{"no live instances: nothing assigned", 3, 0, nil, map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			p.ProbeBudget, p.SuccessesToClose = tt.budget, 1
			b := halfOpenBreaker(t, p, tt.gen)
			got := b.AssignProbes(t0, tt.instances)
			if !maps.Equal(got, tt.want) {
				t.Errorf("AssignProbes = %v, want %v", got, tt.want)
			}
			if !maps.Equal(b.Snapshot().Probes, got) && len(got) > 0 {
				t.Errorf("snapshot probes %v, want %v", b.Snapshot().Probes, got)
			}
			if len(tt.instances) > 0 && sum(got) != tt.budget {
				t.Errorf("%d permits assigned, want exactly the budget %d", sum(got), tt.budget)
			}
		})
	}
}

func TestAssignProbesOnlyHalfOpen(t *testing.T) {
	b, _ := breaker.New(testPolicy(), t0)
	if got := b.AssignProbes(t0, []string{"a"}); got != nil {
		t.Errorf("AssignProbes on CLOSED = %v, want nil", got)
	}
	if got, changed := b.ReassignProbes(t0, []string{"a"}); got != nil || changed {
		t.Errorf("ReassignProbes on CLOSED = %v, %v", got, changed)
	}
	if err := b.ProbeResult(t0, "a", 1, 0); !errors.Is(err, breaker.ErrNotHalfOpen) {
		t.Errorf("ProbeResult on CLOSED: %v, want ErrNotHalfOpen", err)
	}
}

// TestProbeBudgetAccounting: the fleet gets exactly ProbeBudget permits, a
// holder's successes count only up to its permits, and no successes beyond
// the budget can close the breaker.
func TestProbeBudgetAccounting(t *testing.T) {
	p := testPolicy()
	p.ProbeBudget, p.SuccessesToClose = 3, 3
	b := halfOpenBreaker(t, p, 0)
	got := b.AssignProbes(t0, []string{"a", "b", "c", "d"})
	if want := map[string]int{"a": 1, "b": 1, "c": 1}; !maps.Equal(got, want) {
		t.Fatalf("assignment %v, want %v", got, want)
	}
	// a uses its permit three times over, d has none: 1 success counts.
	must(t, b.Report(t0.Add(time.Second), "a", ok(3)))
	must(t, b.Report(t0.Add(time.Second), "d", ok(10)))
	if err := b.ProbeResult(t0.Add(time.Second), "d", 1, 0); !errors.Is(err, breaker.ErrNotProbeHolder) {
		t.Errorf("ProbeResult from a non-holder: %v, want ErrNotProbeHolder", err)
	}
	if ev := b.Evidence(t0.Add(time.Second)); ev.ProbeSuccesses != 1 {
		t.Fatalf("probe successes %d, want 1", ev.ProbeSuccesses)
	}
	if tr, ok := b.Evaluate(t0.Add(time.Second)); ok {
		t.Fatalf("closed on one holder's extra successes: %v", tr)
	}
	// Re-assigning takes back only unused permits: a keeps its used one.
	got = b.AssignProbes(t0.Add(2*time.Second), []string{"a", "b", "c", "d"})
	if sum(got) != 3 || got["a"] < 1 {
		t.Fatalf("after re-assign %v: want 3 permits with a's used one kept", got)
	}
	for id, n := range got {
		if id != "a" {
			must(t, b.ProbeResult(t0.Add(3*time.Second), id, int64(n)+5, 0))
		}
	}
	ev := b.Evidence(t0.Add(3 * time.Second))
	if ev.ProbeSuccesses > 3 {
		t.Fatalf("probe successes %d exceed the budget 3", ev.ProbeSuccesses)
	}
	tr, ok := b.Evaluate(t0.Add(3 * time.Second))
	if !ok || tr.To != breaker.Closed {
		t.Fatalf("Evaluate = %v, %v; want CLOSED", tr, ok)
	}
}

func TestReassignProbes(t *testing.T) {
	p := testPolicy() // budget 3, 2 to close, probe timeout 5s
	live := []string{"a", "b", "c", "d", "e"}

	t.Run("a holder that vanished", func(t *testing.T) {
		b := halfOpenBreaker(t, p, 0)
		b.AssignProbes(t0, live) // a, b, c
		got, changed := b.ReassignProbes(t0.Add(time.Second), []string{"a", "c", "d", "e"})
		if want := map[string]int{"a": 1, "c": 1, "d": 1}; !changed || !maps.Equal(got, want) {
			t.Errorf("ReassignProbes = %v, %v; want %v, true", got, changed, want)
		}
	})
	t.Run("a holder that stayed silent past the probe timeout", func(t *testing.T) {
		b := halfOpenBreaker(t, p, 0)
		b.AssignProbes(t0, live)
		must(t, b.ProbeResult(t0.Add(time.Second), "a", 1, 0))                     // a used its permit
		must(t, b.Report(t0.Add(4*time.Second), "b", breaker.Counts{Rejected: 9})) // rejected only: still silent
		if got, changed := b.ReassignProbes(t0.Add(5*time.Second-time.Nanosecond), live); changed {
			t.Fatalf("reassigned before the probe timeout: %v", got)
		}
		got, changed := b.ReassignProbes(t0.Add(5*time.Second), live)
		// b and c lose their unused permits; they go to d and e (sorted, not b or c).
		if want := map[string]int{"a": 1, "d": 1, "e": 1}; !changed || !maps.Equal(got, want) {
			t.Errorf("ReassignProbes = %v, %v; want %v, true", got, changed, want)
		}
		if sum(got) != p.ProbeBudget {
			t.Errorf("%d permits after reassignment, want %d", sum(got), p.ProbeBudget)
		}
	})
	t.Run("a revoked holder's late results are ignored", func(t *testing.T) {
		b := halfOpenBreaker(t, p, 0)
		b.AssignProbes(t0, []string{"a", "b", "c"})
		b.ReassignProbes(t0.Add(time.Second), []string{"b", "c", "d"}) // a vanished
		must(t, b.Report(t0.Add(2*time.Second), "a", fail(1)))
		if tr, ok := b.Evaluate(t0.Add(2 * time.Second)); ok {
			t.Errorf("a revoked holder's failure re-opened: %v", tr)
		}
	})
	t.Run("no other live instance: permits wait unassigned", func(t *testing.T) {
		b := halfOpenBreaker(t, p, 0)
		b.AssignProbes(t0, []string{"a"})
		got, changed := b.ReassignProbes(t0.Add(6*time.Second), []string{"a"})
		if !changed || len(got) != 0 {
			t.Fatalf("ReassignProbes = %v, %v; want a's permits taken back", got, changed)
		}
		// No holder times out, but HALF_OPEN itself is bounded.
		if d, ok := b.Deadline(); !ok || !d.Equal(b.Snapshot().Since.Add(p.HalfOpenBound())) {
			t.Errorf("Deadline() = %v, %v; want the half-open bound %v after %v", d, ok, p.HalfOpenBound(), b.Snapshot().Since)
		}
		// Next round a is not being revoked, so the pool goes back to it.
		got, changed = b.ReassignProbes(t0.Add(7*time.Second), []string{"a"})
		if want := map[string]int{"a": 3}; !changed || !maps.Equal(got, want) {
			t.Errorf("ReassignProbes = %v, %v; want %v", got, changed, want)
		}
	})
	t.Run("nothing to do", func(t *testing.T) {
		b := halfOpenBreaker(t, p, 0)
		want := b.AssignProbes(t0, live)
		got, changed := b.ReassignProbes(t0.Add(time.Second), live)
		if changed || !maps.Equal(got, want) {
			t.Errorf("ReassignProbes = %v, %v; want %v, false", got, changed, want)
		}
	})
}

func TestDeadline(t *testing.T) {
	p := testPolicy()
	b, _ := breaker.New(p, t0)
	if _, ok := b.Deadline(); ok {
		t.Error("CLOSED has a deadline")
	}
	b.SetFleet(1) // a one-instance caller: its failures alone make the quorum
	must(t, b.Report(t0, "a", fail(10)))
	b.Evaluate(t0)
	if d, ok := b.Deadline(); !ok || !d.Equal(t0.Add(10*time.Second)) {
		t.Errorf("OPEN deadline %v, %v; want t0+10s", d, ok)
	}
	b.Evaluate(t0.Add(10 * time.Second))
	b.AssignProbes(t0.Add(10*time.Second), []string{"a", "b", "c"})
	must(t, b.ProbeResult(t0.Add(12*time.Second), "a", 1, 0))
	must(t, b.ProbeResult(t0.Add(13*time.Second), "b", 0, 0)) // nothing: not heard
	if d, ok := b.Deadline(); !ok || !d.Equal(t0.Add(15*time.Second)) {
		t.Errorf("HALF_OPEN deadline %v, %v; want t0+15s (b and c silent since t0+10s)", d, ok)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
