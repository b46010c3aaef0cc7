package sidecar

import (
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

func (s *Sidecar) setRecord(callee string, st breaker.State, gen uint64, probes map[string]int) {
	s.mu.Lock()
	s.records[callee] = &coordRecord{rec: breaker.PairRecord{Caller: "checkout", Callee: callee,
		Record: breaker.Record{State: st, Generation: gen, Probes: probes}}}
	s.mu.Unlock()
	s.publish()
}

func (s *Sidecar) calleeView(t *testing.T, name string) Callee {
	t.Helper()
	for _, c := range s.View().Callees {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no callee %s in the view", name)
	return Callee{}
}

// TestStockProbeShare follows the share of stock clients' calls a
// HALF_OPEN permit holder lets through: computed from the demand observed
// while CLOSED so that about 1/20 of the permits left pass per decision lag,
// lowered as permits are spent, withdrawn at once when the last one is
// spent (by stock calls or by a guard's outcomes), and started afresh for
// the next generation.
func TestStockProbeShare(t *testing.T) {
	s := bareSidecar()
	t0 := time.Unix(1000, 0)
	s.setRecord("payments", breaker.Closed, 1, nil)
	// 100 calls per 250 ms report: 400 calls per second attempted.
	s.stock["payments"] = &stockProbes{since: t0}
	for i := 1; i <= 4; i++ {
		s.stockLoad("payments", 100)
		s.tickStock(t0.Add(time.Duration(i) * 250 * time.Millisecond))
	}
	if got := s.stock["payments"].rate; got < 399 || got > 401 {
		t.Fatalf("demand %v calls/s, want 400", got)
	}

	s.setRecord("payments", breaker.Open, 2, nil)
	s.setRecord("payments", breaker.HalfOpen, 3, map[string]int{"c1": 3, "c2": 2})
	c := s.calleeView(t, "payments")
	// 3 permits / (20 x 0.5 s) = 0.3 probes/s of 400 calls/s: 750 ppm.
	if c.ProbeSecret == "" || c.StockProbeShare != 750 {
		t.Fatalf("HALF_OPEN holder: secret %q, share %d ppm; want a secret and 750 ppm", c.ProbeSecret, c.StockProbeShare)
	}
	// Two stock calls pass and are reported: one permit left.
	s.stockLoad("payments", 2)
	now := t0.Add(2 * time.Second)
	if !s.tickStock(now) {
		t.Fatal("the share did not change after two of three permits were spent")
	}
	s.publish()
	if got := s.calleeView(t, "payments").StockProbeShare; got >= 750 || got == 0 {
		t.Fatalf("share with one permit left: %d ppm, want below 750 and above 0", got)
	}
	// The last permit spent: withdrawn at once, the probe route stays.
	s.stockLoad("payments", 1)
	if c := s.calleeView(t, "payments"); c.StockProbeShare != 0 || c.ProbeSecret == "" {
		t.Fatalf("permits spent: share %d ppm, secret %q; want 0 and the secret kept", c.StockProbeShare, c.ProbeSecret)
	}
	s.tickStock(now.Add(time.Second))
	s.publish()
	if got := s.calleeView(t, "payments").StockProbeShare; got != 0 {
		t.Fatalf("a withdrawn share came back: %d ppm", got)
	}

	// The next HALF_OPEN starts afresh; a guard's outcomes spend permits
	// too.
	s.setRecord("payments", breaker.Open, 4, nil)
	s.setRecord("payments", breaker.HalfOpen, 5, map[string]int{"c1": 2})
	if got := s.calleeView(t, "payments").StockProbeShare; got == 0 {
		t.Fatal("a new HALF_OPEN generation starts withdrawn")
	}
	if err := s.Report("payments", breaker.Counts{Successes: 1, Failures: 1}); err != nil {
		t.Fatal(err)
	}
	if got := s.calleeView(t, "payments").StockProbeShare; got != 0 {
		t.Fatalf("share %d ppm after a guard's two outcomes spent both permits, want 0", got)
	}

	// A non-holder lets no stock call through (the route aborts all).
	s.setRecord("payments", breaker.HalfOpen, 6, map[string]int{"c2": 2})
	if c := s.calleeView(t, "payments"); c.StockProbeShare != 0 || c.ProbeSecret != "" {
		t.Fatalf("non-holder: share %d, secret %q", c.StockProbeShare, c.ProbeSecret)
	}
}

// TestStockProbeShareSearch: with no demand ever observed, a holder starts
// stock clients at a tiny share and doubles it each report tick in which
// none of their calls was issued, until calls show the demand.
func TestStockProbeShareSearch(t *testing.T) {
	s := bareSidecar()
	t0 := time.Unix(1000, 0)
	s.setRecord("orders", breaker.HalfOpen, 9, map[string]int{"c1": 1})
	if got := s.calleeView(t, "orders").StockProbeShare; got != stockStartShare {
		t.Fatalf("unknown demand: share %d ppm, want %d", got, stockStartShare)
	}
	s.stock["orders"].since = t0
	want := uint32(stockStartShare)
	for i := 1; i <= 3; i++ {
		s.tickStock(t0.Add(time.Duration(i) * 250 * time.Millisecond))
		want *= 2
		if got := s.stock["orders"].share; got != want {
			t.Fatalf("tick %d without calls: share %d ppm, want %d", i, got, want)
		}
	}
	// One call issued in 250 ms at 800 ppm, none in the 750 ms before at
	// 100..400 ppm: 1 call / (0.25 s x (800 + .9x400 + .81x200 + .729x100)
	// ppm) is about 2870 calls/s attempted; one permit left: 1 / (20 x
	// 0.5 s) = 0.1 probe/s, about 35 ppm.
	s.stock["orders"].pending = 1
	s.tickStock(t0.Add(time.Second))
	if got := s.stock["orders"].share; got != 34 {
		t.Fatalf("demand found: share %d ppm, want 34", got)
	}
}
