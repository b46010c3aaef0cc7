//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// fleetCaller is one simulated caller instance: it reports its outcomes for
// checkout->payments every reportEvery, as a sidecar does, and obeys the
// breaker: while it is OPEN (or HALF_OPEN without a permit) it reports its
// calls as rejected; holding probe permits it makes that many probe calls.
type fleetCaller struct {
	id string
	c  *client.Client

	mu      sync.Mutex
	failing bool // whether payments fails this instance's calls
	probed  map[uint64]int
}

const reportEvery = 200 * time.Millisecond

// run reports until ctx ends, at most maxReports times (a bounded loop).
func (f *fleetCaller) run(ctx context.Context, t *testing.T, rec func() *breaker.PairRecord) {
	const maxReports = 1000
	for i := 0; i < maxReports && ctx.Err() == nil; i++ {
		counts := &colonyv1.OutcomeCounts{}
		r := rec()
		f.mu.Lock()
		switch {
		case r == nil || r.State == breaker.Closed:
			// A failing instance calls more (it retries): alone it
			// already pushes the fleet's failure rate over 50%.
			if f.failing {
				counts.Failures, counts.TrailingFailures = 20, 20
			} else {
				counts.Successes = 5
			}
		case r.State == breaker.HalfOpen && r.Probes[f.id] > f.probed[r.Generation]:
			n := int64(r.Probes[f.id] - f.probed[r.Generation])
			f.probed[r.Generation] += int(n)
			if f.failing {
				counts.Failures = n
			} else {
				counts.Successes = n
			}
			counts.Rejected = 10 - n
		default:
			counts.Rejected = 10
		}
		f.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := f.c.Report(rctx, &colonyv1.OutcomeReport{Caller: "checkout", Callee: "payments", Instance: f.id, Counts: counts})
		cancel()
		if err != nil && ctx.Err() == nil {
			t.Logf("%s: report: %v", f.id, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(reportEvery):
		}
	}
}

func (f *fleetCaller) setFailing(v bool) {
	f.mu.Lock()
	f.failing = v
	f.mu.Unlock()
}

// TestBreakerFleetTripsAndSurvivesLeaderKill runs a 3-node coordinator
// cluster as processes and three caller instances reporting through
// different nodes, as sidecars do:
//   - one failing instance does not trip the pair (quorum of 2);
//   - a second one does, within a report interval and an evaluation;
//   - the leader is killed with SIGKILL while the pair is OPEN: the pair
//     stays OPEN on the new leader and moves to HALF_OPEN no earlier than
//     its deadline, with exactly the fleet-wide probe budget assigned;
//   - the probes succeed and the pair closes, for every node.
func TestBreakerFleetTripsAndSurvivesLeaderKill(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 120*time.Second)
	leader := c.WaitLeader(t, ctx)

	var eps []string
	for _, n := range c.Nodes {
		eps = append(eps, n.GRPCAddr)
	}
	newClient := func(first int) *client.Client {
		cfg := client.DefaultConfig()
		// Each caller starts on a different node; all fail over.
		cfg.Endpoints = append(append([]string{}, eps[first:]...), eps[:first]...)
		cfg.RequestTimeout = time.Second
		cfg.TLS = c.ClientTLS()
		cl, err := client.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	admin := newClient(0)
	const open = 4 * time.Second
	specs, err := client.ParsePolicyFile([]byte(`
policies:
  - callee: payments
    policy:
      window: 3s
      buckets: 6
      minimumCalls: 10
      failureRateThreshold: 0.5
      openDuration: ` + open.String() + `
      backoffMultiplier: 2
      jitter: 0
      probeBudget: 3
      successesToClose: 3
      probeTimeout: 3s
      minFailingInstances: 2
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ApplyPolicies(ctx, specs, "e2e", false); err != nil {
		t.Fatalf("applying the policy: %v", err)
	}

	// Everyone reads the record from a follower's tree, as a sidecar
	// watching that node would.
	var watchNode *Node
	for _, n := range c.Others(leader) {
		watchNode = n
		break
	}
	var recMu sync.Mutex
	var latest *breaker.PairRecord
	var seen []breaker.PairRecord
	readRecord := func() *breaker.PairRecord {
		recMu.Lock()
		defer recMu.Unlock()
		return latest
	}
	// The watch is confirmed before any caller reports: the record's
	// creation is its first event, and nothing writes the record again
	// while the quorum holds the pair CLOSED.
	wctx, stopWatch := context.WithCancel(ctx)
	first := 0
	for i, n := range c.Nodes {
		if n == watchNode {
			first = i
		}
	}
	w, err := newClient(first).Watch(wctx, "/colony/breakers", colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive())
	if err != nil {
		stopWatch()
		t.Fatalf("watching the breakers: %v", err)
	}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		defer w.Close()
		for {
			ev, err := w.Next(wctx)
			if err != nil {
				return
			}
			if ev.GetPath() != "/colony/breakers/checkout/payments" || len(ev.GetData()) == 0 {
				continue
			}
			var r breaker.PairRecord
			if err := json.Unmarshal(ev.GetData(), &r); err != nil {
				t.Errorf("record: %v", err)
				return
			}
			r.Probes = maps.Clone(r.Probes)
			recMu.Lock()
			latest = &r
			seen = append(seen, r)
			recMu.Unlock()
		}
	}()
	defer func() { stopWatch(); <-watchDone }()

	callers := make([]*fleetCaller, 3)
	rctx, stopReports := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range callers {
		callers[i] = &fleetCaller{id: []string{"c1", "c2", "c3"}[i], c: newClient(i), probed: map[uint64]int{}}
		wg.Go(func() { callers[i].run(rctx, t, readRecord) })
	}
	defer func() { stopReports(); wg.Wait() }()

	waitFor := func(what string, within time.Duration, cond func(*breaker.PairRecord) bool) breaker.PairRecord {
		t.Helper()
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			if r := readRecord(); r != nil && cond(r) {
				return *r
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%s: not within %v; last record %+v", what, within, readRecord())
		return breaker.PairRecord{}
	}

	// One sick instance among three: held back by the quorum.
	callers[0].setFailing(true)
	waitFor("record created", 10*time.Second, func(r *breaker.PairRecord) bool { return true })
	time.Sleep(6 * reportEvery)
	if r := readRecord(); r.State != breaker.Closed {
		t.Fatalf("one failing instance tripped the pair: %+v", r)
	}
	info, err := admin.GetBreaker(ctx, "checkout", "payments", 10)
	if err != nil {
		t.Fatal(err)
	}
	if info.Live.QuorumBlocked != breaker.ConditionFailureRate {
		t.Fatalf("live evidence %+v: want the failure rate held back by the quorum", info.Live)
	}

	// A second one trips it.
	start := time.Now()
	callers[1].setFailing(true)
	opened := waitFor("trip", 10*time.Second, func(r *breaker.PairRecord) bool { return r.State == breaker.Open })
	t.Logf("second instance failing -> OPEN seen by a watcher on a follower: %v (reports every %v)", time.Since(start).Round(time.Millisecond), reportEvery)
	if opened.Evidence.FailingInstances < 2 || opened.Cause != string(breaker.ConditionFailureRate) {
		t.Fatalf("OPEN record %+v: want the failure rate with 2+ failing instances", opened)
	}

	// The callee recovers; the leader dies while the pair is OPEN.
	callers[0].setFailing(false)
	callers[1].setFailing(false)
	leader.Kill(t)
	newLeader := c.WaitLeader(t, ctx)
	t.Logf("new leader %s", newLeader.ID)
	got, err := admin.GetBreaker(ctx, "checkout", "payments", 10)
	if err != nil {
		t.Fatal(err)
	}
	if got.Record.State != breaker.Open && got.Record.Generation == opened.Generation {
		t.Fatalf("after the leader change: %+v, want still OPEN", got.Record)
	}
	if got.Record.Generation == opened.Generation && !got.Record.OpenUntil.Equal(opened.OpenUntil) {
		t.Fatalf("the new leader moved the deadline: %v, was %v", got.Record.OpenUntil, opened.OpenUntil)
	}

	half := waitFor("HALF_OPEN", open+15*time.Second, func(r *breaker.PairRecord) bool { return r.State == breaker.HalfOpen })
	if half.Since.Before(opened.OpenUntil) {
		t.Fatalf("HALF_OPEN at %v, before the deadline %v", half.Since, opened.OpenUntil)
	}
	total := 0
	for id, n := range half.Probes {
		if id != "c1" && id != "c2" && id != "c3" {
			t.Fatalf("permit for unknown instance %q", id)
		}
		total += n
	}
	if total != 3 {
		t.Fatalf("probe assignment %v: want exactly 3 permits fleet-wide", half.Probes)
	}
	t.Logf("HALF_OPEN %v after the deadline, permits %v", half.Since.Sub(opened.OpenUntil).Round(time.Millisecond), half.Probes)

	closed := waitFor("CLOSED after probes", 15*time.Second, func(r *breaker.PairRecord) bool {
		return r.State == breaker.Closed && r.Generation > half.Generation
	})
	if closed.Cause != string(breaker.ConditionProbesSucceeded) {
		t.Fatalf("closed by %q, want probesSucceeded", closed.Cause)
	}
	// No generation went backwards for the watcher, across the leader kill.
	recMu.Lock()
	defer recMu.Unlock()
	for i := 1; i < len(seen); i++ {
		if seen[i].Generation < seen[i-1].Generation {
			t.Fatalf("generation went back from %d to %d", seen[i-1].Generation, seen[i].Generation)
		}
	}
}
