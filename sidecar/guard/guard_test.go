package guard_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/sidecar/guard"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestGuardEnforcesExactProbeBudget: a guard beside a real sidecar rejects
// calls while the pair is OPEN, with an error naming the breaker; in
// HALF_OPEN it admits exactly the permits the coordinator gave its instance
// (marked as probes), and rejects calls on an instance without permits.
func TestGuardEnforcesExactProbeBudget(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(
		`{"window":"2s","buckets":4,"minimumCalls":10,"failureRateThreshold":0.5,"openDuration":"1s","jitter":0,"minFailingInstances":2,"probeBudget":3,"successesToClose":3,"probeTimeout":"30s"}`)}}, "test", false); err != nil {
		t.Fatal(err)
	}

	var guards []*guard.Guard
	for i, id := range []string{"c1", "c2"} {
		sc, err := sidecar.New(sidecar.Config{
			Service: "checkout", Instance: id, Coordinators: []string{srv.Addr()},
			Address: "127.0.0.1:" + string(rune('1'+i)) + "000", APIAddr: "127.0.0.1:0",
			ReportInterval: 50 * time.Millisecond, SessionTTL: 2 * time.Second, Logger: quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		g, err := guard.New(guard.Config{Sidecar: sc.Addr(), Instance: id, ReportInterval: 20 * time.Millisecond, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		guards = append(guards, g)
	}
	// Only c1 and c2 exist, so the callee must be known by a policy (it is)
	// and its failures reported through the guards.
	for _, g := range guards {
		<-g.Ready()
		for range 20 {
			p, err := g.Allow("payments")
			if err != nil {
				t.Fatal(err)
			}
			p.Done(true, false)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	var rejected error
	for time.Now().Before(deadline) {
		if _, rejected = guards[0].Allow("payments"); rejected != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var re *guard.RejectedError
	if !errors.As(rejected, &re) || !errors.Is(rejected, guard.ErrOpen) || re.State != breaker.Open || re.Callee != "payments" {
		t.Fatalf("while OPEN: %v, want a RejectedError for payments OPEN", rejected)
	}

	// HALF_OPEN: wait for the assignment, then count admissions.
	var info *client.BreakerInfo
	for time.Now().Before(deadline.Add(10 * time.Second)) {
		info, err = admin.GetBreaker(ctx, "checkout", "payments", 0)
		if err == nil && info.Record.State == breaker.HalfOpen {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if info == nil || info.Record.State != breaker.HalfOpen {
		t.Fatalf("no HALF_OPEN: %+v", info)
	}
	time.Sleep(300 * time.Millisecond) // the sidecars and guards follow
	total := 0
	for i, id := range []string{"c1", "c2"} {
		admitted := 0
		for range 50 {
			p, err := guards[i].Allow("payments")
			if err == nil {
				if !p.Probe {
					t.Fatalf("%s: admitted a non-probe call in HALF_OPEN", id)
				}
				admitted++
			}
		}
		if admitted != info.Record.Probes[id] {
			t.Fatalf("%s admitted %d calls, holds %d permits (%v)", id, admitted, info.Record.Probes[id], info.Record.Probes)
		}
		total += admitted
	}
	if total != 3 {
		t.Fatalf("%d probe calls fleet-wide, want the budget of 3", total)
	}
}

// TestGuardReportsLatency: the durations of the calls an app finishes with
// DoneAfter reach the coordinator as the pair's latency histogram, through
// the sidecar, so the pair's percentiles reflect what the app measured.
func TestGuardReportsLatency(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments"}}, "test", false); err != nil {
		t.Fatal(err)
	}
	sc, err := sidecar.New(sidecar.Config{
		Service: "checkout", Instance: "c1", Coordinators: []string{srv.Addr()},
		Address: "127.0.0.1:1000", APIAddr: "127.0.0.1:0",
		ReportInterval: 50 * time.Millisecond, SessionTTL: 2 * time.Second, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	g, err := guard.New(guard.Config{Sidecar: sc.Addr(), Instance: "c1", ReportInterval: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	<-g.Ready()
	for i := range 10 {
		p, err := g.Allow("payments")
		if err != nil {
			t.Fatal(err)
		}
		took := 3 * time.Millisecond // <= 5 ms
		if i == 9 {
			took = 700 * time.Millisecond // <= 1 s
		}
		p.DoneAfter(false, false, took)
	}
	for {
		info, err := admin.GetBreaker(ctx, "checkout", "payments", 0)
		if err == nil && info.Live.Latency.Total() == 10 {
			p50, _ := info.Live.Latency.Quantile(0.5)
			p99, _ := info.Live.Latency.Quantile(0.99)
			if p50 != 5*time.Millisecond || p99 != time.Second {
				t.Fatalf("p50 %v, p99 %v; want 5ms, 1s (%v)", p50, p99, info.Live.Latency)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the latencies never reached the coordinator: %+v %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
