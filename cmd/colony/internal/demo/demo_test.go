package demo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/cmd/colony/internal/demo"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

// startMesh starts a coordinator, the demo mesh on it and a client, and
// waits until every pair of the mesh has had calls get through.
func startMesh(t *testing.T) (*demo.Mesh, *client.Client) {
	t.Helper()
	srv := coordinatortest.StartNode(t)
	m, err := demo.Start(demo.Config{Coordinator: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	c, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if len(m.Callers) != 5 {
		t.Fatalf("%d pairs in the demo mesh, want 5", len(m.Callers))
	}
	for _, p := range m.Callers {
		waitFor(t, 20*time.Second, fmt.Sprintf("calls from %s to %s get through", p.Service, p.Callee), func() bool { return p.OK.Load() > 5 })
	}
	return m, c
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func state(t *testing.T, c *client.Client, caller, callee string) breaker.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.GetBreaker(ctx, caller, callee, 1)
	if err != nil {
		t.Fatalf("%s->%s: %v", caller, callee, err)
	}
	return info.Record.State
}

func set(t *testing.T, c *client.Client, service, value string) {
	t.Helper()
	if _, err := c.Set(context.Background(), demo.ControlRoot+"/"+service, []byte(value), client.AnyVersion); err != nil {
		t.Fatal(err)
	}
}

// TestDemoContainsThenCascades tells the demo's story. payments fails
// (slowly): with the breakers on, checkout->payments trips, checkout's
// calls to payments are rejected at once and its fallback answers
// frontend in time, so frontend->checkout stays CLOSED and its calls get
// through. With checkout->payments disabled, checkout waits on payments
// past frontend's deadline and the failure climbs: frontend->checkout
// trips. frontend->search, which needs neither, stays CLOSED throughout.
func TestDemoContainsThenCascades(t *testing.T) {
	m, c := startMesh(t)
	fc, cp, fs := m.Caller("frontend", "checkout"), m.Caller("checkout", "payments"), m.Caller("frontend", "search")

	failAt := time.Now()
	set(t, c, "payments", "fail")
	waitFor(t, 30*time.Second, "checkout->payments OPEN", func() bool { return state(t, c, "checkout", "payments") == breaker.Open })
	t.Logf("contained: checkout->payments OPEN %v after payments failed", time.Since(failAt).Round(100*time.Millisecond))
	ok := fc.OK.Load()
	waitFor(t, 10*time.Second, "frontend's calls to checkout get through again (checkout's fallback)", func() bool {
		return fc.OK.Load() > ok+8 && cp.Rejected.Load() > 0
	})
	if st := state(t, c, "frontend", "checkout"); st != breaker.Closed {
		t.Fatalf("contained: frontend->checkout is %v, want CLOSED (payments' failure climbed past checkout)", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.SetOverride(ctx, "checkout", "payments", breaker.Disabled, "demo: no breaker", "test", 0); err != nil {
		t.Fatal(err)
	}
	failed := fc.Failed.Load()
	disabledAt := time.Now()
	waitFor(t, 60*time.Second, "cascade: frontend->checkout OPEN", func() bool { return state(t, c, "frontend", "checkout") == breaker.Open })
	t.Logf("cascade: frontend->checkout OPEN %v after checkout->payments was disabled", time.Since(disabledAt).Round(100*time.Millisecond))
	if fc.Failed.Load() == failed {
		t.Fatal("frontend->checkout opened without failed calls")
	}
	// Its breaker is the judge: a busy machine (-race slows calls past the
	// users' 500ms deadline) times out some of its calls, but not enough to
	// trip it, which a cascade through it would.
	if st := state(t, c, "frontend", "search"); st != breaker.Closed {
		t.Fatalf("frontend->search is %v with %d failed calls of %d: want CLOSED (it needs neither checkout nor payments)", st, fs.Failed.Load(), fs.Failed.Load()+fs.OK.Load())
	}
}

// TestDemoLeavesHandReportsTheirWeight follows README's "Shared breakers
// from the CLI" with the demo running: the README's payments policy (a
// quorum of 2 failing instances), then 30 failures reported by hand for
// each of two checkout instances. The demo's own checkout->payments
// traffic must not keep the pair under its threshold.
func TestDemoLeavesHandReportsTheirWeight(t *testing.T) {
	_, c := startMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	readme := `{"window":"10s","buckets":10,"minimumCalls":20,"failureRateThreshold":0.5,"minFailingInstances":2,"minFailingShare":0.25}`
	if _, err := c.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(readme)}}, "test", false); err != nil {
		t.Fatal(err)
	}
	// A full window of the demo's traffic: 4 calls/s over 10s.
	waitFor(t, 20*time.Second, "a full window of demo traffic on checkout->payments", func() bool {
		rows, err := c.ListBreakers(ctx, "checkout", "payments")
		return err == nil && len(rows) == 1 && rows[0].GetWindowCalls() >= 36
	})
	report := func(instance string) {
		t.Helper()
		if err := c.Report(ctx, &colonyv1.OutcomeReport{Caller: "checkout", Callee: "payments", Instance: instance,
			Counts: &colonyv1.OutcomeCounts{Failures: 30, TrailingFailures: 30}}); err != nil {
			t.Fatal(err)
		}
	}
	report("c1")
	if st := state(t, c, "checkout", "payments"); st != breaker.Closed {
		t.Fatalf("after one instance's failures: %v, want CLOSED (below the quorum of 2)", st)
	}
	report("c2")
	waitFor(t, 5*time.Second, "checkout->payments OPEN after the second hand report", func() bool {
		return state(t, c, "checkout", "payments") == breaker.Open
	})
}
