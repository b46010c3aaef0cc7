package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/engine"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// testPolicy trips at 50% failures over a 2s window (10 calls, 2 failing
// instances), opens for open, and probes with a fleet-wide budget of 3.
func testPolicy(open time.Duration) string {
	return `{"window":"2s","buckets":10,"minimumCalls":10,"failureRateThreshold":0.5,` +
		`"openDuration":"` + open.String() + `","backoffMultiplier":2,"maxOpenDuration":"1m","jitter":0,` +
		`"probeBudget":3,"successesToClose":3,"probeTimeout":"2s","minFailingInstances":2,"minFailingShare":0}`
}

func breakersOf(n *testNode) colonyv1.BreakersClient { return colonyv1.NewBreakersClient(n.conn) }

func report(t *testing.T, n *testNode, caller, callee, instance string, ok, failed int64) {
	t.Helper()
	_, err := breakersOf(n).Report(ctxT(t), &colonyv1.ReportRequest{Reports: []*colonyv1.OutcomeReport{{
		Caller: caller, Callee: callee, Instance: instance,
		Counts: &colonyv1.OutcomeCounts{Successes: ok, Failures: failed, TrailingFailures: failed},
	}}})
	if err != nil {
		t.Fatalf("report %s->%s from %s: %v", caller, callee, instance, err)
	}
}

// recordOn reads a pair's record from n's own tree (what a sidecar watching
// that node sees), nil when it has none.
func recordOn(t testing.TB, n *testNode, caller, callee string) *breaker.PairRecord {
	t.Helper()
	data, _, err := n.srv.fsm.tree.View().Get("/colony/breakers/" + caller + "/" + callee)
	if err != nil {
		return nil
	}
	var rec breaker.PairRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("record of %s->%s: %v", caller, callee, err)
	}
	return &rec
}

// waitState waits for n's copy of the pair's record to reach state.
func waitState(t *testing.T, n *testNode, caller, callee string, want breaker.State, within time.Duration) *breaker.PairRecord {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		rec := recordOn(t, n, caller, callee)
		if rec != nil && rec.State == want {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s->%s on %s: state %v, want %v within %v", caller, callee, n.cfg.NodeID, rec, want, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func applyTestPolicy(t *testing.T, n *testNode, callee, policy string) {
	t.Helper()
	_, err := breakersOf(n).ApplyPolicies(ctxT(t), &colonyv1.ApplyPoliciesRequest{
		By: "test", Policies: []*colonyv1.PolicySpec{{Callee: callee, Policy: []byte(policy)}},
	})
	if err != nil {
		t.Fatalf("applying policy for %s: %v", callee, err)
	}
}

func permits(probes map[string]int) int {
	sum := 0
	for _, n := range probes {
		sum += n
	}
	return sum
}

// TestBreakerTripProbeClose walks one pair through its whole life through
// follower nodes: quorum holds back one failing instance; a second trips it
// with no further report; it moves to HALF_OPEN no earlier than the open
// duration with exactly the probe budget assigned fleet-wide; probe
// successes close it. The history records each step with its evidence.
func TestBreakerTripProbeClose(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.followers()
	a, b := f[0], f[1]
	const open = time.Second
	applyTestPolicy(t, a, "payments", testPolicy(open))

	// One instance alone, however sick, does not trip the pair.
	report(t, a, "checkout", "payments", "c1", 0, 40)
	report(t, b, "checkout", "payments", "c3", 20, 0)
	time.Sleep(3 * engine.Tick)
	get := func() *colonyv1.GetBreakerResponse {
		t.Helper()
		r, err := breakersOf(b).GetBreaker(ctxT(t), &colonyv1.GetBreakerRequest{Caller: "checkout", Callee: "payments", HistoryLimit: 50})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var live breaker.Evidence
	if err := json.Unmarshal(get().Live, &live); err != nil {
		t.Fatal(err)
	}
	if rec := recordOn(t, b, "checkout", "payments"); rec == nil || rec.State != breaker.Closed {
		t.Fatalf("one failing instance tripped the pair: %+v", rec)
	}
	if live.QuorumBlocked != breaker.ConditionFailureRate || live.FailingInstances != 1 || live.ReportingInstances != 2 {
		t.Fatalf("live evidence %+v: want failureRate held back by quorum, 1 of 2 instances failing", live)
	}

	// A second failing instance makes the quorum: the report alone trips it.
	start := time.Now()
	report(t, b, "checkout", "payments", "c2", 0, 40)
	opened := waitState(t, a, "checkout", "payments", breaker.Open, 5*time.Second)
	t.Logf("report -> OPEN visible on a follower: %v", time.Since(start))
	if opened.Cause != string(breaker.ConditionFailureRate) || opened.Evidence.FailingInstances != 2 || opened.OpenCount != 1 {
		t.Fatalf("OPEN record %+v: want cause failureRate, 2 failing instances, open count 1", opened)
	}
	if got := opened.OpenUntil.Sub(opened.Since); got != open {
		t.Fatalf("open for %v, want %v (no jitter)", got, open)
	}

	half := waitState(t, a, "checkout", "payments", breaker.HalfOpen, 5*time.Second)
	if half.Since.Before(opened.OpenUntil) {
		t.Fatalf("HALF_OPEN at %v, before the open deadline %v", half.Since, opened.OpenUntil)
	}
	if permits(half.Probes) != 3 {
		t.Fatalf("probe assignment %v: want exactly the fleet-wide budget of 3 permits", half.Probes)
	}
	for id := range half.Probes {
		if id != "c1" && id != "c2" && id != "c3" {
			t.Fatalf("probe permit for %q, which never reported", id)
		}
	}

	for id, n := range half.Probes {
		report(t, a, "checkout", "payments", id, int64(n), 0)
	}
	closed := waitState(t, b, "checkout", "payments", breaker.Closed, 5*time.Second)
	if closed.Generation != half.Generation+1 || closed.OpenCount != 0 || len(closed.Probes) != 0 {
		t.Fatalf("CLOSED record %+v after HALF_OPEN generation %d", closed, half.Generation)
	}

	var path []string
	for _, h := range get().History {
		var e breaker.HistoryEntry
		if err := json.Unmarshal(h, &e); err != nil {
			t.Fatal(err)
		}
		if e.Kind == breaker.HistoryTransition {
			path = append(path, e.From.String()+">"+e.To.String())
			if e.Evidence == nil {
				t.Fatalf("transition %+v without evidence", e)
			}
		}
	}
	if got := strings.Join(path, " "); got != "CLOSED>OPEN OPEN>HALF_OPEN HALF_OPEN>CLOSED" {
		t.Fatalf("history transitions %q", got)
	}
}

// TestBreakerProbeFailureBacksOff: a probe failure re-opens the pair for
// twice as long.
func TestBreakerProbeFailureBacksOff(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.leader()
	const open = 500 * time.Millisecond
	applyTestPolicy(t, n, "payments", testPolicy(open))
	report(t, n, "checkout", "payments", "c1", 0, 20)
	report(t, n, "checkout", "payments", "c2", 0, 20)
	waitState(t, n, "checkout", "payments", breaker.Open, 5*time.Second)
	half := waitState(t, n, "checkout", "payments", breaker.HalfOpen, 5*time.Second)
	var holder string
	for id := range half.Probes {
		holder = id
	}
	report(t, n, "checkout", "payments", holder, 0, 1)
	again := waitState(t, n, "checkout", "payments", breaker.Open, 5*time.Second)
	if again.OpenCount != 2 || again.OpenUntil.Sub(again.Since) != 2*open || again.Cause != string(breaker.ConditionProbeFailed) {
		t.Fatalf("re-opened %+v: want open count 2 for %v, cause probeFailed", again, 2*open)
	}
}

// TestBreakerSurvivesLeaderKill: a pair OPEN when its leader dies stays OPEN
// on the new leader (same generation and deadline) and still moves to
// HALF_OPEN no earlier than its deadline, with permits for the registered
// caller instances although the new leader has had no report.
func TestBreakerSurvivesLeaderKill(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader()
	f := c.followers()
	ctx := ctxT(t)
	const open = 3 * time.Second
	applyTestPolicy(t, f[0], "payments", testPolicy(open))

	// The callers register as sidecars do: ephemerals under their service.
	sess, err := f[0].sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 10000})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/colony/services/checkout", "/colony/services/checkout/c1", "/colony/services/checkout/c2"} {
		req := &colonyv1.CreateRequest{Path: p}
		if strings.Count(p, "/") == 4 {
			req.Kind, req.SessionId = colonyv1.NodeKind_NODE_KIND_EPHEMERAL, sess.SessionId
		}
		if _, err := f[0].tree.Create(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	keepAlive, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		for keepAlive.Err() == nil {
			for _, n := range f {
				n.sess.KeepAlive(keepAlive, &colonyv1.KeepAliveRequest{SessionId: sess.SessionId})
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()

	report(t, f[0], "checkout", "payments", "c1", 0, 20)
	report(t, f[1], "checkout", "payments", "c2", 0, 20)
	opened := waitState(t, f[0], "checkout", "payments", breaker.Open, 5*time.Second)

	c.stop(l.cfg.NodeID)
	nl := c.leader()
	if rec := recordOn(t, nl, "checkout", "payments"); rec.State != breaker.Open || rec.Generation != opened.Generation || !rec.OpenUntil.Equal(opened.OpenUntil) {
		t.Fatalf("on the new leader: %+v, want the OPEN record %+v", rec, opened)
	}
	half := waitState(t, nl, "checkout", "payments", breaker.HalfOpen, open+5*time.Second)
	if half.Since.Before(opened.OpenUntil) {
		t.Fatalf("HALF_OPEN at %v, before the deadline %v", half.Since, opened.OpenUntil)
	}
	if half.Generation != opened.Generation+1 || permits(half.Probes) != 3 {
		t.Fatalf("HALF_OPEN record %+v: want generation %d and 3 permits", half, opened.Generation+1)
	}
	for id := range half.Probes {
		if id != "c1" && id != "c2" {
			t.Fatalf("permit for unregistered instance %q", id)
		}
	}
}

// TestBreakerOverrides: force-open, shadow and clear, with the audit trail;
// an override with an expiry ends by itself.
func TestBreakerOverrides(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.followers()
	ctx := ctxT(t)
	bc := breakersOf(f[0])
	applyTestPolicy(t, f[0], "payments", testPolicy(time.Second))

	set := func(mode colonyv1.OverrideMode, reason string, ttl time.Duration) breaker.PairRecord {
		t.Helper()
		r, err := bc.SetOverride(ctx, &colonyv1.SetOverrideRequest{Caller: "checkout", Callee: "payments", Mode: mode, Reason: reason, By: "alice", TtlMs: ttl.Milliseconds()})
		if err != nil {
			t.Fatal(err)
		}
		var rec breaker.PairRecord
		if err := json.Unmarshal(r.Record, &rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	rec := set(colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN, "payments maintenance", 0)
	if rec.State != breaker.Open || rec.Override == nil || rec.Override.By != "alice" {
		t.Fatalf("force-open record %+v", rec)
	}
	// The answering follower has applied it: a sidecar there sees it now.
	if got := recordOn(t, f[0], "checkout", "payments"); got.State != breaker.Open || got.Generation != rec.Generation {
		t.Fatalf("follower's record %+v after force-open", got)
	}
	if again := set(colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN, "payments maintenance", 0); again.Generation != rec.Generation {
		t.Fatalf("repeating the override changed the generation: %d -> %d", rec.Generation, again.Generation)
	}

	// Shadow: failures trip the shadow breaker, callers keep CLOSED.
	sh := set(colonyv1.OverrideMode_OVERRIDE_MODE_SHADOW, "trying the policy", 0)
	if sh.State != breaker.Closed || sh.Generation <= rec.Generation {
		t.Fatalf("shadow record %+v", sh)
	}
	report(t, f[1], "checkout", "payments", "c1", 0, 20)
	report(t, f[1], "checkout", "payments", "c2", 0, 20)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := recordOn(t, f[0], "checkout", "payments")
		if got.Shadow != nil && got.Shadow.State == breaker.Open {
			if got.State != breaker.Closed {
				t.Fatalf("shadow mode enforced %v", got.State)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shadow breaker did not trip: %+v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}

	r, err := bc.ClearOverride(ctx, &colonyv1.ClearOverrideRequest{Caller: "checkout", Callee: "payments", By: "bob", Reason: "done"})
	if err != nil {
		t.Fatal(err)
	}
	var cleared breaker.PairRecord
	json.Unmarshal(r.Record, &cleared)
	if cleared.State != breaker.Closed || cleared.Override != nil || cleared.Shadow != nil {
		t.Fatalf("cleared record %+v", cleared)
	}
	if _, err := bc.ClearOverride(ctx, &colonyv1.ClearOverrideRequest{Caller: "checkout", Callee: "payments"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("clearing twice: %v, want FailedPrecondition", err)
	}

	// An expiring override ends by itself, recorded as expired.
	set(colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_CLOSED, "hotfix deploy", 300*time.Millisecond)
	deadline = time.Now().Add(5 * time.Second)
	for recordOn(t, f[0], "checkout", "payments").Override != nil {
		if time.Now().After(deadline) {
			t.Fatal("override did not expire")
		}
		time.Sleep(10 * time.Millisecond)
	}

	got, err := bc.GetBreaker(ctx, &colonyv1.GetBreakerRequest{Caller: "checkout", Callee: "payments", HistoryLimit: 50})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, h := range got.History {
		var e breaker.HistoryEntry
		json.Unmarshal(h, &e)
		k := string(e.Kind)
		if e.Shadow {
			k += "(shadow)"
		}
		if e.Kind == breaker.HistoryOverride {
			k += ":" + e.Cause + ":" + e.By
		}
		kinds = append(kinds, k)
	}
	want := "override:force-open:alice override:shadow:alice transition(shadow) cleared override:force-closed:alice expired"
	if strings.Join(kinds, " ") != want {
		t.Fatalf("history %q, want %q", strings.Join(kinds, " "), want)
	}
}

// TestBreakerBadInput: bad policies, reports and overrides are rejected with
// errors naming the field, and change nothing.
func TestBreakerBadInput(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.leader()
	ctx := ctxT(t)
	bc := breakersOf(n)
	applyTestPolicy(t, n, "payments", testPolicy(time.Second))
	before := engineState(t, n)

	counts := func(c *colonyv1.OutcomeCounts) []*colonyv1.OutcomeReport {
		return []*colonyv1.OutcomeReport{
			{Caller: "checkout", Callee: "payments", Instance: "c1", Counts: &colonyv1.OutcomeCounts{Successes: 1}},
			{Caller: "checkout", Callee: "payments", Instance: "c2", Counts: c},
		}
	}
	big := make([]*colonyv1.OutcomeReport, contract.MaxOutcomesPerReport+1)
	for i := range big {
		big[i] = counts(&colonyv1.OutcomeCounts{})[0]
	}
	for _, tc := range []struct {
		name    string
		call    func() error
		code    codes.Code
		mention string
	}{
		{"negative counts", func() error {
			_, err := bc.Report(ctx, &colonyv1.ReportRequest{Reports: counts(&colonyv1.OutcomeCounts{Failures: -1})})
			return err
		}, codes.InvalidArgument, "reports[1].counts"},
		{"absurd counts", func() error {
			_, err := bc.Report(ctx, &colonyv1.ReportRequest{Reports: counts(&colonyv1.OutcomeCounts{Successes: 1 << 50})})
			return err
		}, codes.InvalidArgument, "reports[1].counts"},
		{"latency histogram too long", func() error {
			_, err := bc.Report(ctx, &colonyv1.ReportRequest{Reports: counts(&colonyv1.OutcomeCounts{Successes: 1, Latency: make([]int64, 15)})})
			return err
		}, codes.InvalidArgument, "reports[1].counts: breaker: invalid counts: latency: 15 buckets, the limit is 14"},
		{"more latencies than calls", func() error {
			_, err := bc.Report(ctx, &colonyv1.ReportRequest{Reports: counts(&colonyv1.OutcomeCounts{Successes: 1, Failures: 1, Latency: []int64{2, 1}})})
			return err
		}, codes.InvalidArgument, "reports[1].counts: breaker: invalid counts: latency: 3 calls exceed successes+failures 2"},
		{"too many reports", func() error {
			_, err := bc.Report(ctx, &colonyv1.ReportRequest{Reports: big})
			return err
		}, codes.InvalidArgument, "limit is 1000"},
		{"unknown callee", func() error {
			_, err := bc.Report(ctx, &colonyv1.ReportRequest{Reports: []*colonyv1.OutcomeReport{{Caller: "checkout", Callee: "paymnts", Instance: "c1", Counts: &colonyv1.OutcomeCounts{Failures: 1}}}})
			return err
		}, codes.NotFound, "unknown callee \"paymnts\""},
		{"bad caller name", func() error {
			_, err := bc.Report(ctx, &colonyv1.ReportRequest{Reports: []*colonyv1.OutcomeReport{{Caller: "a/b", Callee: "payments", Instance: "c1", Counts: &colonyv1.OutcomeCounts{}}}})
			return err
		}, codes.InvalidArgument, "reports[0].caller"},
		{"ratio out of range", func() error {
			_, err := bc.ApplyPolicies(ctx, &colonyv1.ApplyPoliciesRequest{Policies: []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(`{"failureRateThreshold":1.5}`)}}})
			return err
		}, codes.InvalidArgument, "failureRateThreshold: 1.5 is outside 0..1"},
		{"zero probe budget for one caller", func() error {
			_, err := bc.ApplyPolicies(ctx, &colonyv1.ApplyPoliciesRequest{Policies: []*colonyv1.PolicySpec{
				{Callee: "orders", Policy: []byte(`{"window":"5s"}`)},
				{Callee: "payments", Callers: map[string][]byte{"checkout": []byte(`{"probeBudget":0}`)}},
			}})
			return err
		}, codes.InvalidArgument, "callers[checkout]"},
		{"misspelt field", func() error {
			_, err := bc.ApplyPolicies(ctx, &colonyv1.ApplyPoliciesRequest{Policies: []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(`{"failureRateTreshold":0.2}`)}}})
			return err
		}, codes.InvalidArgument, "failureRateTreshold"},
		{"override without reason", func() error {
			_, err := bc.SetOverride(ctx, &colonyv1.SetOverrideRequest{Caller: "checkout", Callee: "payments", Mode: colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN})
			return err
		}, codes.InvalidArgument, "reason: required"},
		{"override negative ttl", func() error {
			_, err := bc.SetOverride(ctx, &colonyv1.SetOverrideRequest{Caller: "checkout", Callee: "payments", Mode: colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN, Reason: "x", TtlMs: -5})
			return err
		}, codes.InvalidArgument, "ttl_ms"},
		// Issue 13 item 6: these wrapped negative (or small) in the
		// ms -> Duration conversion, passed the maximum check and stored an
		// override that never expired.
		{"override ttl that overflowed", func() error {
			_, err := bc.SetOverride(ctx, &colonyv1.SetOverrideRequest{Caller: "checkout", Callee: "payments", Mode: colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN, Reason: "x", TtlMs: 9_223_372_036_855})
			return err
		}, codes.InvalidArgument, "ttl_ms: 9223372036855 is outside 0..31622400000"},
		{"override ttl max int64", func() error {
			_, err := bc.SetOverride(ctx, &colonyv1.SetOverrideRequest{Caller: "checkout", Callee: "payments", Mode: colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN, Reason: "x", TtlMs: math.MaxInt64})
			return err
		}, codes.InvalidArgument, "ttl_ms"},
		{"hand-written record", func() error {
			_, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/colony/breakers/checkout/x", Data: []byte("{}")})
			return err
		}, codes.PermissionDenied, "breaker engine"},
		{"hand-written policy", func() error {
			_, err := n.tree.Set(ctx, &colonyv1.SetRequest{Path: "/colony/policies/payments", Data: []byte("garbage")})
			return err
		}, codes.PermissionDenied, "Breakers API"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.code, tc.mention)
			}
		})
	}
	time.Sleep(2 * engine.Tick)
	if after := engineState(t, n); after != before {
		t.Fatalf("rejected requests changed the engine's subtrees:\n%s\n->\n%s", before, after)
	}
	if _, err := bc.GetBreaker(ctx, &colonyv1.GetBreakerRequest{Caller: "checkout", Callee: "payments"}); status.Code(err) != codes.NotFound {
		t.Fatalf("a rejected report created a pair: %v", err)
	}
	pol, err := bc.GetPolicy(ctx, &colonyv1.GetPolicyRequest{Callee: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	var ps breaker.PolicySet
	json.Unmarshal(pol.PolicySet, &ps)
	if ps.Policy.FailureRateThreshold != 0.5 || ps.Callers != nil {
		t.Fatalf("policy changed by rejected requests: %+v", ps)
	}
}

// engineState lists every node under the engine's roots on n with its
// version and data.
func engineState(t *testing.T, n *testNode) string {
	t.Helper()
	v := n.srv.fsm.tree.View()
	var b strings.Builder
	var walk func(p string)
	walk = func(p string) {
		data, st, err := v.Get(p)
		if err != nil {
			return
		}
		fmt.Fprintf(&b, "%s v%d %s\n", p, st.GetVersion(), data)
		kids, _, _ := v.Children(p)
		for _, k := range kids {
			walk(p + "/" + k)
		}
	}
	for _, root := range contract.EngineRoots {
		walk(root)
	}
	return b.String()
}

// TestBreakerReassignsPermitsOfGoneHolder: in HALF_OPEN, when the instance
// holding the probe permit disappears (its session ends, its registration
// goes), the permit moves to a live instance, in the same generation.
func TestBreakerReassignsPermitsOfGoneHolder(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.leader()
	ctx := ctxT(t)
	applyTestPolicy(t, n, "payments", strings.Replace(testPolicy(300*time.Millisecond), `"probeBudget":3,"successesToClose":3`, `"probeBudget":1,"successesToClose":1`, 1))
	if _, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/colony/services/checkout"}); err != nil {
		t.Fatal(err)
	}
	sessions := map[string]uint64{}
	for _, id := range []string{"c1", "c2"} {
		s, err := n.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 60000})
		if err != nil {
			t.Fatal(err)
		}
		sessions[id] = s.SessionId
		if _, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/colony/services/checkout/" + id, Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL, SessionId: s.SessionId}); err != nil {
			t.Fatal(err)
		}
	}
	report(t, n, "checkout", "payments", "c1", 0, 20)
	report(t, n, "checkout", "payments", "c2", 0, 20)
	half := waitState(t, n, "checkout", "payments", breaker.HalfOpen, 5*time.Second)
	if permits(half.Probes) != 1 {
		t.Fatalf("probes %v, want one permit", half.Probes)
	}
	var holder, other string
	for id := range half.Probes {
		holder = id
	}
	other = map[string]string{"c1": "c2", "c2": "c1"}[holder]
	if _, err := n.sess.Close(ctx, &colonyv1.CloseSessionRequest{SessionId: sessions[holder]}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec := recordOn(t, n, "checkout", "payments")
		if rec.Probes[other] == 1 && rec.Probes[holder] == 0 {
			if rec.Generation != half.Generation || rec.State != breaker.HalfOpen {
				t.Fatalf("reassignment changed the state or generation: %+v", rec)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("permit not moved from %s to %s: %v", holder, other, rec.Probes)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, err := breakersOf(n).GetBreaker(ctx, &colonyv1.GetBreakerRequest{Caller: "checkout", Callee: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	// A reassignment is in the record, not the history (issue 13 item 8).
	last := got.History[len(got.History)-1]
	if !strings.Contains(string(last), `"to":"HALF_OPEN"`) || strings.Contains(string(last), `"kind":"probes"`) {
		t.Fatalf("last history entry %s, want the OPEN -> HALF_OPEN transition", last)
	}
}

// historyOf returns the pair's history entries (all kept), oldest first.
func historyOf(t *testing.T, n *testNode, caller, callee string) []breaker.HistoryEntry {
	t.Helper()
	got, err := breakersOf(n).GetBreaker(ctxT(t), &colonyv1.GetBreakerRequest{Caller: caller, Callee: callee, HistoryLimit: engine.HistoryKeep})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]breaker.HistoryEntry, len(got.History))
	for i, h := range got.History {
		if err := json.Unmarshal(h, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestBreakerHalfOpenIsBounded (issue 13 item 8): callers that report
// nothing (a stock gRPC client without the client library) kept a pair
// HALF_OPEN forever, its permits withdrawn and handed back every probe
// timeout with two history entries per cycle. Now HALF_OPEN lasts at most
// halfOpenMaxWait and goes back to OPEN with the backoff (open count +1,
// twice as long), and reassignments are no history entries.
func TestBreakerHalfOpenIsBounded(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.leader()
	const open = 300 * time.Millisecond
	pol := strings.Replace(testPolicy(open), `"probeTimeout":"2s"`, `"probeTimeout":"100ms","halfOpenMaxWait":"800ms"`, 1)
	applyTestPolicy(t, n, "payments", pol)
	report(t, n, "checkout", "payments", "c1", 0, 20)
	report(t, n, "checkout", "payments", "c2", 0, 20)
	first := waitState(t, n, "checkout", "payments", breaker.Open, 5*time.Second)
	half := waitState(t, n, "checkout", "payments", breaker.HalfOpen, 5*time.Second)
	// Nobody reports: the silent holders lose their permits every 100ms,
	// and after 800ms the pair re-opens, backed off.
	again := waitState(t, n, "checkout", "payments", breaker.Open, 10*time.Second)
	if again.Cause != string(breaker.ConditionHalfOpenTimeout) || again.OpenCount != 2 || again.OpenUntil.Sub(again.Since) != 2*open {
		t.Fatalf("after a silent HALF_OPEN: %+v; want OPEN (halfOpenTimeout), open count 2, for %v", again, 2*open)
	}
	if waited := again.Since.Sub(half.Since); waited < 800*time.Millisecond {
		t.Fatalf("re-opened %v after half-opening, before halfOpenMaxWait", waited)
	}
	waitState(t, n, "checkout", "payments", breaker.HalfOpen, 10*time.Second)
	third := waitState(t, n, "checkout", "payments", breaker.Open, 10*time.Second)
	if third.OpenCount != 3 || third.OpenUntil.Sub(third.Since) != 4*open {
		t.Fatalf("second silent HALF_OPEN: %+v; want open count 3, for %v", third, 4*open)
	}
	var kinds []string
	for _, h := range historyOf(t, n, "checkout", "payments") {
		if h.Kind != breaker.HistoryTransition {
			kinds = append(kinds, string(h.Kind))
			continue
		}
		kinds = append(kinds, h.From.String()+">"+h.To.String())
	}
	want := "CLOSED>OPEN OPEN>HALF_OPEN HALF_OPEN>OPEN OPEN>HALF_OPEN HALF_OPEN>OPEN"
	if got := strings.Join(kinds, " "); !strings.HasPrefix(got, want) || strings.Contains(got, "probes") {
		t.Fatalf("history %q, want %q and no probe reassignments", got, want)
	}
	if first.Generation != 1 {
		t.Fatalf("first trip at generation %d", first.Generation)
	}
}

// TestGetBreakerPolicyVersion (issue 13 item 11): GetBreaker names the
// version of the policy it returns, not the older one in the record.
func TestGetBreakerPolicyVersion(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.leader()
	applyTestPolicy(t, n, "payments", testPolicy(time.Second))
	report(t, n, "checkout", "payments", "c1", 5, 0)
	deadline := time.Now().Add(5 * time.Second)
	for recordOn(t, n, "checkout", "payments") == nil {
		if time.Now().After(deadline) {
			t.Fatal("no record for checkout->payments within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	applyTestPolicy(t, n, "payments", strings.Replace(testPolicy(time.Second), `"failureRateThreshold":0.5`, `"failureRateThreshold":0.25`, 1))
	got, err := breakersOf(n).GetBreaker(ctxT(t), &colonyv1.GetBreakerRequest{Caller: "checkout", Callee: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	var pol breaker.Policy
	var rec breaker.PairRecord
	if err := errors.Join(json.Unmarshal(got.Policy, &pol), json.Unmarshal(got.Record, &rec)); err != nil {
		t.Fatal(err)
	}
	if pol.FailureRateThreshold != 0.25 || got.PolicyVersion == nil || got.GetPolicyVersion() != 1 {
		t.Fatalf("policy %v with version %v, want the second policy (0.25), version 1 (record says %d)", pol.FailureRateThreshold, got.PolicyVersion, rec.PolicyVersion)
	}
}

// TestWaitReadyMeansTheWellKnownDirsExist: once WaitReady returns on a
// node (a follower here), its own tree holds every directory the leader's
// engine creates, so a sidecar's registration through it cannot fail with
// NoNode for /colony/services.
func TestWaitReadyMeansTheWellKnownDirsExist(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	f := c.followers()[0]
	if err := f.srv.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	v := f.srv.fsm.tree.View()
	for _, dir := range contract.WellKnownDirs {
		if _, _, err := v.Get(dir); err != nil {
			t.Errorf("%s on %s after WaitReady: %v", dir, f.cfg.NodeID, err)
		}
	}
	if _, err := f.tree.Create(ctx, &colonyv1.CreateRequest{Path: contract.ServiceDir("payments")}); err != nil {
		t.Fatalf("creating a service directory through %s: %v", f.cfg.NodeID, err)
	}
}
