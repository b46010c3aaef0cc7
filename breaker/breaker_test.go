package breaker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

// t0 is the leader time every test starts from; a whole second, so buckets
// of the 10s/10-bucket test window start at t0, t0+1s, ...
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testPolicy is the base policy of the tables: trip at 50% of at least 10
// calls over 10s (1s buckets), seen by at least 2 instances; open 10s,
// doubling up to 60s, no jitter; 3 probes, 2 successes to close.
func testPolicy() breaker.Policy {
	p := breaker.DefaultPolicy()
	p.Window, p.Buckets = 10*time.Second, 10
	p.MinimumCalls = 10
	p.FailureRateThreshold = 0.5
	p.ConsecutiveFailures = 0
	p.SlowCallRateThreshold, p.SlowCallDuration = 0, time.Second
	p.OpenDuration, p.BackoffMultiplier, p.MaxOpenDuration, p.Jitter = 10*time.Second, 2, 60*time.Second, 0
	p.ProbeBudget, p.SuccessesToClose, p.ProbeTimeout = 3, 2, 5*time.Second
	p.MinFailingInstances, p.MinFailingShare = 2, 0
	return p
}

// Counts shorthands.
func ok(n int64) breaker.Counts   { return breaker.Counts{Successes: n} }
func fail(n int64) breaker.Counts { return breaker.Counts{Failures: n, TrailingFailures: n} }
func mix(s, f int64) breaker.Counts {
	return breaker.Counts{Successes: s, Failures: f} // failures before the successes
}

// feed is one report: at t0+at, from inst.
type feed struct {
	at   time.Duration
	inst string
	c    breaker.Counts
}

// at0 makes reports at t0 from instances a, b, c, ... in order.
func at0(cs ...breaker.Counts) []feed {
	fs := make([]feed, len(cs))
	for i, c := range cs {
		fs[i] = feed{0, string(rune('a' + i)), c}
	}
	return fs
}

// summary renders evidence compactly for the tables.
func summary(ev breaker.Evidence) string {
	var parts []string
	if ev.Calls+ev.Excluded+ev.Rejected > 0 {
		parts = append(parts, fmt.Sprintf("calls=%d fail=%d slow=%d excl=%d rej=%d consec=%d failing=%d/%d slowInst=%d",
			ev.Calls, ev.Failures, ev.Slow, ev.Excluded, ev.Rejected, ev.ConsecutiveFailures,
			ev.FailingInstances, ev.ReportingInstances, ev.SlowInstances))
	}
	if ev.ProbeSuccesses+ev.ProbeFailures > 0 {
		parts = append(parts, fmt.Sprintf("probes ok=%d fail=%d", ev.ProbeSuccesses, ev.ProbeFailures))
	}
	if ev.Condition != "" {
		parts = append(parts, "cond="+string(ev.Condition))
	}
	if ev.QuorumBlocked != "" {
		parts = append(parts, "blocked="+string(ev.QuorumBlocked))
	}
	return strings.Join(parts, " ")
}

// Current states the table starts from.
var (
	closed = breaker.Record{State: breaker.Closed, Generation: 4, Since: t0.Add(-time.Minute)}
	open1  = breaker.Record{State: breaker.Open, Generation: 5, Since: t0, OpenCount: 1, OpenUntil: t0.Add(10 * time.Second)}
)

func halfOpen(opens int) breaker.Record {
	return breaker.Record{State: breaker.HalfOpen, Generation: 6, Since: t0, OpenCount: opens,
		Probes: map[string]int{"a": 1, "b": 1, "c": 1}}
}

// transitionTests is the breaker's state machine as a table, in the style of
// hashicorp/raft's configuration_test.go: current state, policy, evidence
// fed, time of Evaluate, next state ("" = no transition) and the evidence it
// acted on (of the transition; of Breaker.Evidence when there is none).
var transitionTests = []struct {
	name    string
	tweak   func(*breaker.Policy)
	from    breaker.Record
	fleet   int // Breaker.SetFleet; 0 unknown
	feed    []feed
	at      time.Duration // Evaluate at t0+at
	next    string
	ev      string
	openFor time.Duration // when next is OPEN
}{
	// CLOSED: minimum calls and the failure rate.
	{name: "minimum calls not reached",
		from: closed, feed: at0(fail(5), fail(4)), at: time.Second,
		ev: "calls=9 fail=9 slow=0 excl=0 rej=0 consec=9 failing=2/2 slowInst=0"},
	{name: "minimum calls reached",
		from: closed, feed: at0(fail(5), fail(5)), at: time.Second,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=10 fail=10 slow=0 excl=0 rej=0 consec=10 failing=2/2 slowInst=0 cond=failureRate"},
	{name: "ratio well below threshold",
		from: closed, feed: at0(mix(6, 2), mix(6, 2)), at: time.Second,
		ev: "calls=16 fail=4 slow=0 excl=0 rej=0 consec=0 failing=2/2 slowInst=0"},
	{name: "ratio just below threshold",
		from: closed, feed: at0(mix(6, 4), mix(5, 5)), at: time.Second,
		ev: "calls=20 fail=9 slow=0 excl=0 rej=0 consec=0 failing=2/2 slowInst=0"},
	{name: "ratio at threshold trips",
		from: closed, feed: at0(mix(5, 5), mix(5, 5)), at: time.Second,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=20 fail=10 slow=0 excl=0 rej=0 consec=0 failing=2/2 slowInst=0 cond=failureRate"},
	{name: "ratio above threshold trips",
		from: closed, feed: at0(mix(2, 8), mix(2, 8), ok(4)), at: time.Second,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=24 fail=16 slow=0 excl=0 rej=0 consec=0 failing=2/3 slowInst=0 cond=failureRate"},
	{name: "failure rate off (0) never trips on rate",
		tweak: func(p *breaker.Policy) { p.FailureRateThreshold, p.ConsecutiveFailures = 0, 1000 },
		from:  closed, feed: at0(fail(50), fail(50)), at: time.Second,
		ev: "calls=100 fail=100 slow=0 excl=0 rej=0 consec=100 failing=2/2 slowInst=0"},

	// CLOSED: consecutive failures (a fleet-wide run, in report order).
	{name: "consecutive failures trip below minimum calls and rate",
		tweak: func(p *breaker.Policy) { p.ConsecutiveFailures, p.MinimumCalls = 5, 100 },
		from:  closed, feed: []feed{{0, "a", ok(50)}, {0, "a", fail(3)}, {0, "b", fail(2)}}, at: time.Second,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=55 fail=5 slow=0 excl=0 rej=0 consec=5 failing=2/2 slowInst=0 cond=consecutiveFailures"},
	{name: "a reported success breaks the run",
		tweak: func(p *breaker.Policy) { p.ConsecutiveFailures = 5 },
		from:  closed, feed: []feed{{0, "a", fail(3)}, {0, "b", fail(1)}, {0, "c", ok(1)}, {0, "a", fail(1)}}, at: time.Second,
		ev: "calls=6 fail=5 slow=0 excl=0 rej=0 consec=1 failing=2/3 slowInst=0"},
	{name: "the run resumes from a report's trailing failures",
		tweak: func(p *breaker.Policy) { p.ConsecutiveFailures, p.MinimumCalls = 5, 100 },
		from:  closed, feed: []feed{{0, "a", fail(3)}, {0, "c", breaker.Counts{Successes: 1, Failures: 6, TrailingFailures: 4}}, {time.Second, "b", fail(1)}},
		at: 2 * time.Second, next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=11 fail=10 slow=0 excl=0 rej=0 consec=5 failing=3/3 slowInst=0 cond=consecutiveFailures"},
	{name: "consecutive failures need quorum too",
		tweak: func(p *breaker.Policy) { p.ConsecutiveFailures, p.MinimumCalls = 5, 100 },
		from:  closed, feed: []feed{{0, "b", ok(20)}, {0, "a", fail(9)}}, at: time.Second,
		ev: "calls=29 fail=9 slow=0 excl=0 rej=0 consec=9 failing=1/2 slowInst=0 blocked=consecutiveFailures"},

	// CLOSED: slow calls.
	{name: "slow-call rate at threshold trips",
		tweak: func(p *breaker.Policy) { p.SlowCallRateThreshold = 0.5 },
		from:  closed, feed: at0(breaker.Counts{Successes: 10, Slow: 6}, breaker.Counts{Successes: 10, Slow: 4}), at: time.Second,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=20 fail=0 slow=10 excl=0 rej=0 consec=0 failing=0/2 slowInst=2 cond=slowCallRate"},
	{name: "slow-call rate below threshold",
		tweak: func(p *breaker.Policy) { p.SlowCallRateThreshold = 0.5 },
		from:  closed, feed: at0(breaker.Counts{Successes: 10, Slow: 5}, breaker.Counts{Successes: 10, Slow: 4}), at: time.Second,
		ev: "calls=20 fail=0 slow=9 excl=0 rej=0 consec=0 failing=0/2 slowInst=2"},
	{name: "slow calls from one instance do not trip",
		tweak: func(p *breaker.Policy) { p.SlowCallRateThreshold = 0.5 },
		from:  closed, feed: at0(breaker.Counts{Successes: 10, Slow: 10}, ok(10)), at: time.Second,
		ev: "calls=20 fail=0 slow=10 excl=0 rej=0 consec=0 failing=0/2 slowInst=1 blocked=slowCallRate"},
	{name: "slow-call rate off (0): slow calls never trip",
		from: closed, feed: at0(breaker.Counts{Successes: 10, Slow: 10}, breaker.Counts{Successes: 10, Slow: 10}), at: time.Second,
		ev: "calls=20 fail=0 slow=20 excl=0 rej=0 consec=0 failing=0/2 slowInst=2"},

	// CLOSED: excluded and rejected calls count neither way.
	{name: "excluded calls do not dilute the failure rate",
		from: closed, feed: at0(breaker.Counts{Successes: 2, Failures: 4, Excluded: 50}, breaker.Counts{Failures: 4, Excluded: 50}), at: time.Second,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=10 fail=8 slow=0 excl=100 rej=0 consec=4 failing=2/2 slowInst=0 cond=failureRate"},
	{name: "excluded calls do not reach minimum calls",
		from: closed, feed: at0(breaker.Counts{Failures: 4, Excluded: 100}, fail(4)), at: time.Second,
		ev: "calls=8 fail=8 slow=0 excl=100 rej=0 consec=8 failing=2/2 slowInst=0"},
	{name: "rejected calls count neither way",
		from: closed, feed: at0(breaker.Counts{Failures: 4, Rejected: 100}, breaker.Counts{Successes: 5, Rejected: 7}), at: time.Second,
		ev: "calls=9 fail=4 slow=0 excl=0 rej=107 consec=0 failing=1/2 slowInst=0"},

	// CLOSED: quorum.
	{name: "quorum by count: one sick instance does not trip",
		from: closed, feed: at0(fail(20), ok(1), ok(1), ok(1)), at: time.Second,
		ev: "calls=23 fail=20 slow=0 excl=0 rej=0 consec=0 failing=1/4 slowInst=0 blocked=failureRate"},
	{name: "quorum by count: two sick instances trip",
		from: closed, feed: at0(fail(20), fail(1), ok(1), ok(1)), at: time.Second,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=23 fail=21 slow=0 excl=0 rej=0 consec=0 failing=2/4 slowInst=0 cond=failureRate"},
	{name: "quorum by count: three required, two sick",
		tweak: func(p *breaker.Policy) { p.MinFailingInstances = 3 },
		from:  closed, feed: at0(fail(20), fail(20), ok(1), ok(1)), at: time.Second,
		ev: "calls=42 fail=40 slow=0 excl=0 rej=0 consec=0 failing=2/4 slowInst=0 blocked=failureRate"},
	{name: "quorum by share: below share",
		tweak: func(p *breaker.Policy) { p.MinFailingInstances, p.MinFailingShare = 0, 0.5 },
		from:  closed, feed: at0(fail(10), fail(10), ok(1), ok(1), ok(1)), at: time.Second,
		ev: "calls=23 fail=20 slow=0 excl=0 rej=0 consec=0 failing=2/5 slowInst=0 blocked=failureRate"},
	{name: "quorum by share: at share trips",
		tweak: func(p *breaker.Policy) { p.MinFailingInstances, p.MinFailingShare = 0, 0.5 },
		from:  closed, feed: at0(fail(10), fail(10), ok(1), ok(1)), at: time.Second,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=22 fail=20 slow=0 excl=0 rej=0 consec=0 failing=2/4 slowInst=0 cond=failureRate"},
	{name: "quorum by count and share: share holds, count does not",
		tweak: func(p *breaker.Policy) { p.MinFailingInstances, p.MinFailingShare = 3, 0.25 },
		from:  closed, feed: at0(fail(30), fail(30), ok(1), ok(1), ok(1), ok(1), ok(1), ok(1)), at: time.Second,
		ev: "calls=66 fail=60 slow=0 excl=0 rej=0 consec=0 failing=2/8 slowInst=0 blocked=failureRate"},
	{name: "quorum is capped at the fleet: a one-instance service trips",
		from: closed, fleet: 1, feed: at0(fail(10)), at: time.Second,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=10 fail=10 slow=0 excl=0 rej=0 consec=10 failing=1/1 slowInst=0 cond=failureRate"},
	{name: "quorum is not capped at the instances reporting: one of an unknown fleet does not trip",
		from: closed, feed: at0(fail(10)), at: time.Second,
		ev: "calls=10 fail=10 slow=0 excl=0 rej=0 consec=10 failing=1/1 slowInst=0 blocked=failureRate"},
	{name: "quorum: the only reporter of a fleet of three does not trip",
		from: closed, fleet: 3, feed: at0(fail(10)), at: time.Second,
		ev: "calls=10 fail=10 slow=0 excl=0 rej=0 consec=10 failing=1/1 slowInst=0 blocked=failureRate"},
	{name: "quorum: a registry that lags (one registered, two reporting) does not cap below the reporters",
		from: closed, fleet: 1, feed: at0(fail(10), ok(1)), at: time.Second,
		ev: "calls=11 fail=10 slow=0 excl=0 rej=0 consec=0 failing=1/2 slowInst=0 blocked=failureRate"},
	{name: "quorum: a fleet of two, both sick, trips with a quorum of three",
		tweak: func(p *breaker.Policy) { p.MinFailingInstances = 3 },
		from:  closed, fleet: 2, feed: at0(fail(5), fail(5)), at: time.Second,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=10 fail=10 slow=0 excl=0 rej=0 consec=10 failing=2/2 slowInst=0 cond=failureRate"},

	// CLOSED: the window slides.
	{name: "window: failures still inside at the window's last instant",
		from: closed, feed: at0(fail(5), fail(5)), at: 10*time.Second - time.Millisecond,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=10 fail=10 slow=0 excl=0 rej=0 consec=10 failing=2/2 slowInst=0 cond=failureRate"},
	{name: "window expiry: old buckets fall out",
		from: closed, feed: at0(fail(5), fail(5)), at: 10 * time.Second},
	{name: "window: reports across buckets add up",
		from: closed, feed: []feed{{0, "a", fail(5)}, {9500 * time.Millisecond, "b", fail(5)}}, at: 9900 * time.Millisecond,
		next: "OPEN", openFor: 10 * time.Second,
		ev: "calls=10 fail=10 slow=0 excl=0 rej=0 consec=10 failing=2/2 slowInst=0 cond=failureRate"},
	{name: "window: the oldest bucket falls out, the rest stays",
		from: closed, feed: []feed{{0, "a", fail(5)}, {9500 * time.Millisecond, "b", fail(5)}}, at: 10500 * time.Millisecond,
		ev: "calls=5 fail=5 slow=0 excl=0 rej=0 consec=5 failing=1/1 slowInst=0"},
	{name: "window: an expired instance no longer counts for quorum",
		from: closed, feed: []feed{{0, "a", fail(1)}, {5 * time.Second, "b", fail(10)}, {5 * time.Second, "c", ok(1)}}, at: 10 * time.Second,
		ev: "calls=11 fail=10 slow=0 excl=0 rej=0 consec=0 failing=1/2 slowInst=0 blocked=failureRate"},
	{name: "tumbling window (1 bucket)",
		tweak: func(p *breaker.Policy) { p.Buckets = 1 },
		from:  closed, feed: []feed{{9 * time.Second, "a", fail(5)}, {10 * time.Second, "b", fail(5)}}, at: 10 * time.Second,
		ev: "calls=5 fail=5 slow=0 excl=0 rej=0 consec=5 failing=1/1 slowInst=0"},

	// OPEN: the open duration.
	{name: "open: not before the open duration",
		from: open1, at: 10*time.Second - time.Nanosecond},
	{name: "open: open duration elapsed -> HALF_OPEN",
		from: open1, at: 10 * time.Second,
		next: "HALF_OPEN", ev: "cond=openElapsed"},
	{name: "open: late timer still moves to HALF_OPEN",
		from: open1, at: time.Minute,
		next: "HALF_OPEN", ev: "cond=openElapsed"},
	{name: "open: reports are ignored",
		from: open1, feed: []feed{{time.Second, "a", fail(50)}, {time.Second, "b", fail(50)}}, at: 5 * time.Second},

	// HALF_OPEN: probes (a, b and c hold one permit each).
	{name: "half-open: no probe results yet",
		from: halfOpen(1), at: time.Second},
	{name: "half-open: one success is not enough",
		from: halfOpen(1), feed: at0(ok(1)), at: time.Second,
		ev: "probes ok=1 fail=0"},
	{name: "half-open: SuccessesToClose successes close",
		from: halfOpen(1), feed: at0(ok(1), ok(1)), at: time.Second,
		next: "CLOSED", ev: "probes ok=2 fail=0 cond=probesSucceeded"},
	{name: "half-open: successes beyond a holder's permits do not count",
		from: halfOpen(1), feed: at0(ok(5)), at: time.Second,
		ev: "probes ok=1 fail=0"},
	{name: "half-open: non-holders are ignored",
		from: halfOpen(1), feed: []feed{{0, "d", ok(5)}, {0, "d", fail(5)}}, at: time.Second},
	{name: "half-open: a probe failure re-opens with backoff",
		from: halfOpen(1), feed: at0(ok(1), fail(1)), at: time.Second,
		next: "OPEN", openFor: 20 * time.Second, ev: "probes ok=1 fail=1 cond=probeFailed"},
	{name: "half-open: failure wins over enough successes",
		from: halfOpen(1), feed: at0(ok(1), ok(1), fail(1)), at: time.Second,
		next: "OPEN", openFor: 20 * time.Second, ev: "probes ok=2 fail=1 cond=probeFailed"},
	// HALF_OPEN is bounded (HalfOpenMaxWait, 1m here): callers that never
	// report probe results cannot keep it half-open (issue 13 item 8).
	{name: "half-open: just within the bound, nothing reported: stays",
		from: halfOpen(1), at: time.Minute - time.Millisecond},
	{name: "half-open: the bound reached without results re-opens with backoff",
		from: halfOpen(1), at: time.Minute,
		next: "OPEN", openFor: 20 * time.Second, ev: "cond=halfOpenTimeout"},
	{name: "half-open: the bound reached with too few successes re-opens",
		from: halfOpen(1), feed: at0(ok(1)), at: 2 * time.Minute,
		next: "OPEN", openFor: 20 * time.Second, ev: "probes ok=1 fail=0 cond=halfOpenTimeout"},
	{name: "half-open: the bound backs off like a probe failure",
		from: halfOpen(2), at: time.Minute,
		next: "OPEN", openFor: 40 * time.Second, ev: "cond=halfOpenTimeout"},
	{name: "half-open: enough successes at the bound still close",
		from: halfOpen(1), feed: at0(ok(1), ok(1)), at: time.Minute,
		next: "CLOSED", ev: "probes ok=2 fail=0 cond=probesSucceeded"},
	{name: "half-open: halfOpenMaxWait 0 means 6 * probeTimeout (30s)",
		tweak: func(p *breaker.Policy) { p.HalfOpenMaxWait = 0 },
		from:  halfOpen(1), at: 30 * time.Second,
		next: "OPEN", openFor: 20 * time.Second, ev: "cond=halfOpenTimeout"},
	{name: "half-open: halfOpenMaxWait 0 with a huge probeTimeout never overflows",
		tweak: func(p *breaker.Policy) { p.HalfOpenMaxWait, p.ProbeTimeout = 0, 1<<62 },
		from:  halfOpen(1), at: 24 * time.Hour},
	{name: "half-open: halfOpenMaxWait 0, before 6 * probeTimeout",
		tweak: func(p *breaker.Policy) { p.HalfOpenMaxWait = 0 },
		from:  halfOpen(1), at: 29 * time.Second},
	{name: "backoff: third opening",
		from: halfOpen(2), feed: at0(fail(1)), at: time.Second,
		next: "OPEN", openFor: 40 * time.Second, ev: "probes ok=0 fail=1 cond=probeFailed"},
	{name: "backoff: capped at MaxOpenDuration",
		from: halfOpen(3), feed: at0(fail(1)), at: time.Second,
		next: "OPEN", openFor: 60 * time.Second, ev: "probes ok=0 fail=1 cond=probeFailed"},
	{name: "backoff: stays capped",
		from: halfOpen(40), feed: at0(fail(1)), at: time.Second,
		next: "OPEN", openFor: 60 * time.Second, ev: "probes ok=0 fail=1 cond=probeFailed"},
	{name: "backoff: multiplier 1 is a fixed open duration",
		tweak: func(p *breaker.Policy) { p.BackoffMultiplier = 1 },
		from:  halfOpen(3), feed: at0(fail(1)), at: time.Second,
		next: "OPEN", openFor: 10 * time.Second, ev: "probes ok=0 fail=1 cond=probeFailed"},
}

func TestTransitions(t *testing.T) {
	for _, tt := range transitionTests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			if tt.tweak != nil {
				tt.tweak(&p)
			}
			b, err := breaker.Restore(p, tt.from, t0, breaker.WithRand(func() float64 { return 0.5 }))
			if err != nil {
				t.Fatal(err)
			}
			b.SetFleet(tt.fleet)
			for _, f := range tt.feed {
				if err := b.Report(t0.Add(f.at), f.inst, f.c); err != nil {
					t.Fatalf("Report(%s, %+v): %v", f.inst, f.c, err)
				}
			}
			now := t0.Add(tt.at)
			tr, ok := b.Evaluate(now)
			snap := b.Snapshot()
			if tt.next == "" {
				if ok {
					t.Fatalf("got transition %v, want none", tr)
				}
				if got := summary(b.Evidence(now)); got != tt.ev {
					t.Errorf("evidence:\n got %s\nwant %s", got, tt.ev)
				}
				if snap.State != tt.from.State || snap.Generation != tt.from.Generation {
					t.Errorf("state %v gen %d changed without a transition", snap.State, snap.Generation)
				}
				return
			}
			if !ok {
				t.Fatalf("no transition, want %s; evidence %s", tt.next, summary(b.Evidence(now)))
			}
			if tr.From != tt.from.State || tr.To.String() != tt.next || snap.State != tr.To {
				t.Fatalf("got %v (snapshot %v), want %v->%s", tr, snap.State, tt.from.State, tt.next)
			}
			if got := summary(tr.Evidence); got != tt.ev {
				t.Errorf("evidence:\n got %s\nwant %s", got, tt.ev)
			}
			if tr.Generation != tt.from.Generation+1 || snap.Generation != tr.Generation {
				t.Errorf("generation %d (snapshot %d), want %d", tr.Generation, snap.Generation, tt.from.Generation+1)
			}
			if !tr.At.Equal(now) || !snap.Since.Equal(now) {
				t.Errorf("at %v since %v, want %v", tr.At, snap.Since, now)
			}
			wantOpens := tt.from.OpenCount
			switch tr.To {
			case breaker.Open:
				wantOpens++
				if got := tr.OpenUntil.Sub(now); got != tt.openFor || !snap.OpenUntil.Equal(tr.OpenUntil) {
					t.Errorf("open for %v (snapshot until %v), want %v", got, snap.OpenUntil, tt.openFor)
				}
			case breaker.Closed:
				wantOpens = 0
			}
			if tr.OpenCount != wantOpens || snap.OpenCount != wantOpens {
				t.Errorf("open count %d (snapshot %d), want %d", tr.OpenCount, snap.OpenCount, wantOpens)
			}
			if len(snap.Probes) != 0 {
				t.Errorf("probes %v after a transition; want none until AssignProbes", snap.Probes)
			}
			// A fresh window: nothing fed before the transition is seen after it.
			if got := summary(b.Evidence(now)); got != "" {
				t.Errorf("evidence right after the transition: %s, want a fresh window", got)
			}
		})
	}
}
