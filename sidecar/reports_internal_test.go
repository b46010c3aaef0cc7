package sidecar

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestReportsGoInChunks: one report period with more callees than a
// coordinator takes in one request goes out in several requests, none
// over the limit, and every pair reaches the coordinator.
func TestReportsGoInChunks(t *testing.T) {
	n := contract.MaxOutcomesPerReport + 10
	srv := coordinatortest.StartNode(t, func(cfg *coordinator.Config) { cfg.MaxBreakerPairsPerCaller = 2 * n })
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The coordinator takes reports for known callees: give each a
	// registered instance.
	callees := make([]string, n)
	var ops []*colonyv1.Op
	for i := range callees {
		callees[i] = fmt.Sprintf("callee-%04d", i)
		ops = append(ops, client.CreateOp(contract.ServiceDir(callees[i]), nil), client.CreateOp(contract.RegistrationPath(callees[i], "x"), []byte("{}")))
	}
	for len(ops) > 0 {
		k := min(len(ops), 1000)
		if _, err := admin.Multi(ctx, ops[:k]...); err != nil {
			t.Fatal(err)
		}
		ops = ops[k:]
	}

	s, err := New(Config{
		Service: "checkout", Instance: "c1", Coordinators: []string{srv.Addr()}, Address: "127.0.0.1:9100",
		// A report call may take two intervals: a second gives the first
		// call, which creates a thousand pairs, room on a loaded machine
		// under -race (100 ms once lost it there).
		APIAddr: "127.0.0.1:0", ReportInterval: time.Second, Callees: []string{"callee-0000"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Every callee in one period: filled under the lock the period swap takes.
	s.mu.Lock()
	for _, callee := range callees {
		s.agg[callee] = &breaker.Counts{Successes: 1}
	}
	s.mu.Unlock()

	for counterValue(t, s.metrics.reportsSent) < float64(n) {
		if ctx.Err() != nil || counterValue(t, s.metrics.reportsLost) > 0 {
			t.Fatalf("%v of %d reports sent, %v dropped", counterValue(t, s.metrics.reportsSent), n, counterValue(t, s.metrics.reportsLost))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sent, lost := counterValue(t, s.metrics.reportsSent), counterValue(t, s.metrics.reportsLost); sent != float64(n) || lost != 0 {
		t.Fatalf("%v reports sent and %v dropped, want %d sent and none dropped", sent, lost, n)
	}
	pairs, err := admin.ListBreakers(ctx, "checkout", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != n {
		t.Fatalf("the coordinator has %d pairs for checkout, want %d", len(pairs), n)
	}
}

// TestReportSumsLatency: a period's latency histograms add up per callee,
// from every source (access logs, apps), and a source without durations
// (a stock client's load report) adds calls but no latency.
func TestReportSumsLatency(t *testing.T) {
	s := &Sidecar{agg: map[string]*breaker.Counts{}}
	timed := breaker.Counts{}
	timed.AddTimed(breaker.Verdict{Outcome: breaker.Success}, 3*time.Millisecond)
	timed.AddTimed(breaker.Verdict{Outcome: breaker.Failure}, 700*time.Millisecond)
	for _, c := range []breaker.Counts{timed, timed, {Successes: 5}} {
		if err := s.report("payments", c, false); err != nil {
			t.Fatal(err)
		}
	}
	got := s.agg["payments"]
	var want breaker.Latency
	want[breaker.LatencyBucket(3*time.Millisecond)] = 2
	want[breaker.LatencyBucket(700*time.Millisecond)] = 2
	if got.Calls() != 9 || got.Latency != want {
		t.Fatalf("period %+v: want 9 calls, 4 of them timed (%v)", *got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("the period's counts do not validate: %v", err)
	}
}
