package coordinator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Issue 13 item 7: the breaker pair table filled for good. These tests run
// it at small limits.

// applyPolicies gives each callee the test policy, in one request.
func applyPolicies(t *testing.T, n *testNode, callees ...string) {
	t.Helper()
	var specs []*colonyv1.PolicySpec
	for _, c := range callees {
		specs = append(specs, &colonyv1.PolicySpec{Callee: c, Policy: []byte(testPolicy(time.Second))})
	}
	if _, err := breakersOf(n).ApplyPolicies(ctxT(t), &colonyv1.ApplyPoliciesRequest{By: "test", Policies: specs}); err != nil {
		t.Fatal(err)
	}
}

func tryReport(t *testing.T, n *testNode, caller, callee string) error {
	t.Helper()
	_, err := breakersOf(n).Report(ctxT(t), &colonyv1.ReportRequest{Reports: []*colonyv1.OutcomeReport{{
		Caller: caller, Callee: callee, Instance: caller + "-1", Counts: &colonyv1.OutcomeCounts{Successes: 1},
	}}})
	return err
}

func wantCode(t *testing.T, what string, err error, code codes.Code, mention ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Fatalf("%s: %q does not mention %q", what, err, m)
		}
	}
}

// until polls cond (every 10ms) until it holds, or fails after within.
func until(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBreakerPairTableFill: one caller cannot take more than its share;
// fillers together fill the table, after which a real new pair cannot
// report but an operator can still force-open a new pair; once the fillers'
// pairs are idle they expire (record and history gone from the tree) and
// the real pair reports. The force-opened pair does not expire.
func TestBreakerPairTableFill(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.MaxBreakerPairs, cfg.MaxBreakerPairsPerCaller = 6, 3
		cfg.BreakerIdleExpiry = 1500 * time.Millisecond
	})
	n := c.leader()
	callees := []string{"payments", "orders"}
	for i := range 8 {
		callees = append(callees, fmt.Sprintf("e%d", i))
	}
	applyPolicies(t, n, callees...)

	for i := range 3 {
		if err := tryReport(t, n, "filler1", fmt.Sprintf("e%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The share: a fourth pair of filler1, alone or in a batch, is refused.
	wantCode(t, "filler1's fourth pair", tryReport(t, n, "filler1", "e3"), codes.ResourceExhausted,
		`caller "filler1" already has 3 pairs`, "MaxBreakerPairsPerCaller 3")
	for i := range 3 {
		if err := tryReport(t, n, "filler2", fmt.Sprintf("e%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The table is full: a real new pair cannot report...
	wantCode(t, "a real pair in a full table", tryReport(t, n, "checkout", "payments"), codes.ResourceExhausted,
		"limit of 6 pairs (MaxBreakerPairs)")
	// ... but an operator can force-open a new pair.
	if _, err := breakersOf(n).SetOverride(ctxT(t), &colonyv1.SetOverrideRequest{Caller: "checkout", Callee: "orders",
		Mode: colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN, Reason: "orders DB failover"}); err != nil {
		t.Fatalf("force-open of a new pair in a full table: %v", err)
	}
	waitState(t, n, "checkout", "orders", breaker.Open, 5*time.Second)

	// The fillers stop; their pairs expire, through the log.
	until(t, 10*time.Second, "the fillers' pairs expire", func() bool {
		kids1, _, _ := n.srv.fsm.tree.View().Children("/colony/breakers/filler1")
		kids2, _, _ := n.srv.fsm.tree.View().Children("/colony/breakers/filler2")
		return len(kids1)+len(kids2) == 0
	})
	v := n.srv.fsm.tree.View()
	for _, p := range []string{"/colony/breakers/filler1", "/colony/breakers/filler2", "/colony/history/filler1", "/colony/history/filler2"} {
		if _, _, err := v.Get(p); err == nil {
			t.Errorf("%s is still in the tree after its pairs expired", p)
		}
	}
	if err := tryReport(t, n, "checkout", "payments"); err != nil {
		t.Fatalf("a real pair after the idle ones expired: %v", err)
	}
	waitState(t, n, "checkout", "payments", breaker.Closed, 5*time.Second)
	// An override is never idle.
	if rec := recordOn(t, n, "checkout", "orders"); rec == nil || rec.Override == nil {
		t.Fatalf("the force-opened pair expired: %+v", rec)
	}
	resp, err := breakersOf(n).ListBreakers(ctxT(t), &colonyv1.ListBreakersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for _, b := range resp.Breakers {
		pairs = append(pairs, b.Caller+"->"+b.Callee)
	}
	if got := strings.Join(pairs, " "); got != "checkout->orders checkout->payments" {
		t.Fatalf("pairs after expiry: %s", got)
	}

	// Policies, which make callees known, are bounded too: 10 stored, 16
	// allowed (6 plus the reserve of 10).
	var specs []*colonyv1.PolicySpec
	for i := range 7 {
		specs = append(specs, &colonyv1.PolicySpec{Callee: fmt.Sprintf("p%d", i)})
	}
	_, err = breakersOf(n).ApplyPolicies(ctxT(t), &colonyv1.ApplyPoliciesRequest{Policies: specs})
	wantCode(t, "policies beyond the limit", err, codes.ResourceExhausted, "policies: 7 new callees with 10 policies stored would exceed the limit of 16")
	if _, err := breakersOf(n).ApplyPolicies(ctxT(t), &colonyv1.ApplyPoliciesRequest{Policies: specs[:6]}); err != nil {
		t.Fatalf("policies within the limit: %v", err)
	}
}

// TestBreakerIdleExpirySurvivesLeaderChange: an expired pair is gone from
// every member's tree, and neither a new leader nor a restarted member
// brings it back.
func TestBreakerIdleExpirySurvivesLeaderChange(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.BreakerIdleExpiry = time.Second })
	l := c.leader()
	applyPolicies(t, l, "payments", "orders")
	report(t, l, "checkout", "payments", "c1", 5, 0)
	report(t, l, "checkout", "orders", "c1", 5, 0)
	until(t, 10*time.Second, "the pairs' records on the leader", func() bool {
		return recordOn(t, l, "checkout", "payments") != nil && recordOn(t, l, "checkout", "orders") != nil
	})
	until(t, 10*time.Second, "the idle pairs expire on the leader", func() bool {
		return recordOn(t, l, "checkout", "payments") == nil && recordOn(t, l, "checkout", "orders") == nil
	})
	deleted := l.srv.fsm.applied.Load()
	for _, n := range c.followers() {
		until(t, 10*time.Second, n.cfg.NodeID+" applies the deletion", func() bool { return n.srv.fsm.applied.Load() >= deleted })
		if recordOn(t, n, "checkout", "payments") != nil {
			t.Fatalf("the expired pair is still in %s's tree", n.cfg.NodeID)
		}
	}
	restart := c.stop(l.cfg.NodeID)
	nl := c.leader()
	if _, err := breakersOf(nl).GetBreaker(ctxT(t), &colonyv1.GetBreakerRequest{Caller: "checkout", Callee: "payments"}); status.Code(err) != codes.NotFound {
		t.Fatalf("the new leader knows the expired pair: %v", err)
	}
	back := c.start(restart)
	until(t, 20*time.Second, "the restarted member catches up", func() bool {
		return back.srv.fsm.applied.Load() >= nl.srv.fsm.applied.Load()
	})
	for _, n := range []*testNode{back, nl} {
		if recordOn(t, n, "checkout", "payments") != nil {
			t.Fatalf("the expired pair is back in %s's tree", n.cfg.NodeID)
		}
		if _, _, err := n.srv.fsm.tree.View().Get("/colony/history/checkout"); err == nil {
			t.Fatalf("the expired pairs' history is back in %s's tree", n.cfg.NodeID)
		}
	}
}

// TestBreakerDelete: DeleteBreaker deletes a CLOSED pair; an OPEN pair or
// one with an override needs force; an unknown pair is NotFound. Through a
// follower, which forwards to the leader.
func TestBreakerDelete(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.followers()[0]
	bc := breakersOf(f)
	ctx := ctxT(t)
	applyPolicies(t, f, "payments", "orders", "stock")
	report(t, f, "checkout", "payments", "c1", 0, 20)
	report(t, f, "checkout", "payments", "c2", 0, 20)
	report(t, f, "checkout", "orders", "c1", 5, 0)
	waitState(t, f, "checkout", "payments", breaker.Open, 5*time.Second)
	waitState(t, f, "checkout", "orders", breaker.Closed, 5*time.Second)
	if _, err := bc.SetOverride(ctx, &colonyv1.SetOverrideRequest{Caller: "checkout", Callee: "stock", Mode: colonyv1.OverrideMode_OVERRIDE_MODE_DISABLED, Reason: "noisy", By: "alice"}); err != nil {
		t.Fatal(err)
	}

	_, err := bc.DeleteBreaker(ctx, &colonyv1.DeleteBreakerRequest{Caller: "checkout", Callee: "payments"})
	wantCode(t, "deleting an OPEN pair", err, codes.FailedPrecondition, "is OPEN", "force")
	_, err = bc.DeleteBreaker(ctx, &colonyv1.DeleteBreakerRequest{Caller: "checkout", Callee: "stock"})
	wantCode(t, "deleting a pair with an override", err, codes.FailedPrecondition, "disabled override (by alice", "force")
	_, err = bc.DeleteBreaker(ctx, &colonyv1.DeleteBreakerRequest{Caller: "checkout", Callee: "nothing"})
	wantCode(t, "deleting an unknown pair", err, codes.NotFound, "checkout->nothing")
	_, err = bc.DeleteBreaker(ctx, &colonyv1.DeleteBreakerRequest{Caller: "a/b", Callee: "x"})
	wantCode(t, "a bad name", err, codes.InvalidArgument, "caller")
	if rec := recordOn(t, f, "checkout", "payments"); rec == nil || rec.State != breaker.Open {
		t.Fatalf("a refused deletion changed the pair: %+v", rec)
	}

	if _, err := bc.DeleteBreaker(ctx, &colonyv1.DeleteBreakerRequest{Caller: "checkout", Callee: "orders", Reason: "test"}); err != nil {
		t.Fatalf("deleting a CLOSED pair: %v", err)
	}
	// The follower answered after applying the deletion.
	if recordOn(t, f, "checkout", "orders") != nil {
		t.Fatal("the deleted pair's record is still on the follower that answered")
	}
	for _, callee := range []string{"payments", "stock"} {
		if _, err := bc.DeleteBreaker(ctx, &colonyv1.DeleteBreakerRequest{Caller: "checkout", Callee: callee, Force: true, Reason: "test"}); err != nil {
			t.Fatalf("force-deleting checkout->%s: %v", callee, err)
		}
	}
	v := f.srv.fsm.tree.View()
	for _, p := range []string{"/colony/breakers/checkout", "/colony/history/checkout"} {
		if _, _, err := v.Get(p); err == nil {
			t.Errorf("%s is still in the tree after its last pair was deleted", p)
		}
	}
	// The pair comes back CLOSED when reported again.
	report(t, f, "checkout", "payments", "c1", 5, 0)
	if rec := waitState(t, f, "checkout", "payments", breaker.Closed, 5*time.Second); rec.Cause != "created" {
		t.Fatalf("re-created pair %+v", rec)
	}
}

// pairSeries counts the series of reg that carry the pair's labels.
func pairSeries(t *testing.T, reg *prometheus.Registry, caller, callee string) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ca, ce string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "caller":
					ca = l.GetValue()
				case "callee":
					ce = l.GetValue()
				}
			}
			if ca == caller && ce == callee {
				out = append(out, mf.GetName())
			}
		}
	}
	return out
}

// TestBreakerPairSeriesGoWithThePair: per-pair metric series exist only for
// pairs the engine tracks, so their number is bounded by the pair limit.
func TestBreakerPairSeriesGoWithThePair(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.Metrics = reg; cfg.BreakerIdleExpiry = time.Second })
	n := c.leader()
	applyPolicies(t, n, "payments", "orders")
	report(t, n, "checkout", "payments", "c1", 5, 1)
	report(t, n, "checkout", "orders", "c1", 5, 1)
	until(t, 10*time.Second, "the pairs' records", func() bool {
		return recordOn(t, n, "checkout", "payments") != nil && recordOn(t, n, "checkout", "orders") != nil
	})
	if s := pairSeries(t, reg, "checkout", "payments"); len(s) == 0 {
		t.Fatal("no series for checkout->payments")
	}
	if _, err := breakersOf(n).DeleteBreaker(ctxT(t), &colonyv1.DeleteBreakerRequest{Caller: "checkout", Callee: "payments"}); err != nil {
		t.Fatal(err)
	}
	if s := pairSeries(t, reg, "checkout", "payments"); len(s) > 0 {
		t.Fatalf("series of the deleted pair remain: %v", s)
	}
	// The series go once the deletion is applied (the record first).
	until(t, 10*time.Second, "the idle pair and its series go", func() bool {
		return recordOn(t, n, "checkout", "orders") == nil && len(pairSeries(t, reg, "checkout", "orders")) == 0
	})
}
