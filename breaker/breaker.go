package breaker

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Evidence is what a breaker saw when it decided: the window's counts in
// CLOSED, the probe results in HALF_OPEN. The engine persists the evidence
// of each transition in the breaker record ("why it tripped").
type Evidence struct {
	// Condition is what fired (or, from Breaker.Evidence, what would fire
	// now); empty when nothing does.
	Condition Condition `json:"condition,omitempty"`
	// QuorumBlocked is the first trip condition that held but lacked the
	// quorum: "it would have tripped, but too few callers saw failures".
	QuorumBlocked Condition `json:"quorumBlocked,omitempty"`
	At            time.Time `json:"at"`
	// WindowStart is where the counted window begins: the older of now -
	// Window (to the bucket) and the last transition.
	WindowStart time.Time `json:"windowStart,omitzero"`

	Calls     int64 `json:"calls"` // successes + failures
	Successes int64 `json:"successes"`
	Failures  int64 `json:"failures"`
	Slow      int64 `json:"slow"`
	Rejected  int64 `json:"rejected"`
	Excluded  int64 `json:"excluded"`
	// FailureRate and SlowCallRate are failures/calls and slow/calls (0
	// without calls).
	FailureRate  float64 `json:"failureRate"`
	SlowCallRate float64 `json:"slowCallRate"`
	// Latency sums the window's latency histograms: the calls (of Calls)
	// whose reporters measured their duration. Its quantiles are the
	// pair's latency percentiles (Latency.Quantile).
	Latency Latency `json:"latency,omitzero"`
	// ConsecutiveFailures is the fleet-wide run: failures reported since the
	// last reported success, within the window.
	ConsecutiveFailures int64 `json:"consecutiveFailures"`
	// FailingInstances and SlowInstances are the distinct caller instances
	// that saw failures (slow calls) in the window; ReportingInstances those
	// that reported calls.
	FailingInstances   int `json:"failingInstances"`
	SlowInstances      int `json:"slowInstances"`
	ReportingInstances int `json:"reportingInstances"`
	// FleetInstances is the caller service's fleet size the quorum was
	// capped at (Breaker.SetFleet); 0 when unknown.
	FleetInstances int `json:"fleetInstances,omitempty"`

	// ProbeSuccesses and ProbeFailures are the HALF_OPEN probe results
	// counted so far (successes only up to each holder's permits).
	ProbeSuccesses int64 `json:"probeSuccesses,omitempty"`
	ProbeFailures  int64 `json:"probeFailures,omitempty"`
}

// Transition is a state change Evaluate decided. The engine writes the
// breaker's Snapshot, which reflects it, through the log.
type Transition struct {
	From, To   State
	At         time.Time
	Generation uint64 // after the transition
	OpenCount  int    // opens since the breaker was last CLOSED
	OpenUntil  time.Time
	Evidence   Evidence
}

// String is a one-line summary for logs.
func (t Transition) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v->%v gen=%d", t.From, t.To, t.Generation)
	if t.To == Open {
		fmt.Fprintf(&b, " opens=%d for=%v", t.OpenCount, t.OpenUntil.Sub(t.At))
	}
	ev := t.Evidence
	fmt.Fprintf(&b, " (%s", ev.Condition)
	switch ev.Condition {
	case ConditionFailureRate, ConditionConsecutiveFailures, ConditionSlowCallRate:
		fmt.Fprintf(&b, ": calls=%d failures=%d slow=%d consecutive=%d failing=%d slowInstances=%d reporting=%d",
			ev.Calls, ev.Failures, ev.Slow, ev.ConsecutiveFailures, ev.FailingInstances, ev.SlowInstances, ev.ReportingInstances)
	case ConditionProbesSucceeded, ConditionProbeFailed:
		fmt.Fprintf(&b, ": successes=%d failures=%d", ev.ProbeSuccesses, ev.ProbeFailures)
	}
	b.WriteString(")")
	return b.String()
}

// Record is what the engine persists for a pair and what a new leader
// restores from. It holds no window: windows are soft state.
type Record struct {
	State      State     `json:"state"`
	Generation uint64    `json:"generation"` // incremented on every transition
	Since      time.Time `json:"since"`      // leader time of the last transition
	// OpenCount is how many times the breaker opened since it was last
	// CLOSED (1 on the first trip); it drives the backoff.
	OpenCount int `json:"openCount"`
	// OpenUntil is when OPEN ends (jitter included); set only when OPEN.
	OpenUntil time.Time `json:"openUntil,omitzero"`
	// Probes is the HALF_OPEN probe assignment: caller instance -> permits,
	// the number of probe calls it may make in this generation. Only in
	// HALF_OPEN; the permits add up to at most the policy's ProbeBudget.
	Probes map[string]int `json:"probes,omitempty"`
	// Evidence is the evidence of the last transition.
	Evidence Evidence `json:"evidence,omitzero"`
}

// Breaker is the shared breaker of one caller -> callee pair, as the
// coordinator leader keeps it in memory. It is deterministic: it reads no
// clock (every method that needs the time takes now) and draws jitter only
// from the source given to WithRand. Time never goes backwards for a
// Breaker: a now earlier than one already seen is read as the latest seen.
//
// A Breaker is not safe for concurrent use; the engine serialises access.
type Breaker struct {
	p    Policy
	rand func() float64

	state State
	gen   uint64
	since time.Time
	opens int
	until time.Time
	last  Evidence  // evidence of the last transition
	now   time.Time // high-water mark

	win   window
	probe probes
	fleet int // caller fleet size for the quorum cap; 0 unknown
}

// SetFleet tells the breaker how many instances the caller service has (the
// engine counts its registered instances); 0 means unknown. The quorum by
// count (MinFailingInstances) is capped at it, so that a service with fewer
// instances than the quorum can still trip its breakers.
func (b *Breaker) SetFleet(n int) { b.fleet = max(n, 0) }

// Option configures a Breaker.
type Option func(*Breaker)

// WithRand sets the jitter source: a function returning uniform values in
// [0,1), such as (*rand.Rand).Float64 from a seeded generator. Without it
// the breaker uses math/rand/v2's Float64 and is deterministic only when the
// policy's Jitter is 0.
func WithRand(f func() float64) Option { return func(b *Breaker) { b.rand = f } }

// New returns a CLOSED breaker, generation 0, since now.
func New(p Policy, now time.Time, opts ...Option) (*Breaker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b := &Breaker{p: p, state: Closed, since: now, now: now, rand: rand.Float64}
	for _, o := range opts {
		o(b)
	}
	b.win = newWindow(p, now)
	b.probe.reset()
	return b, nil
}

// Restore rebuilds a breaker from its persisted record, as a new leader
// does: state, generation, since, open count, open deadline, probe
// assignment and last evidence are kept; windows and probe results start
// fresh at now, and every probe holder gets a full ProbeTimeout from now.
// A probe assignment above the policy's budget (the policy changed) is cut
// down to it, in instance order.
func Restore(p Policy, rec Record, now time.Time, opts ...Option) (*Breaker, error) {
	if err := rec.validate(); err != nil {
		return nil, err
	}
	b, err := New(p, now, opts...)
	if err != nil {
		return nil, err
	}
	b.state, b.gen, b.since, b.opens, b.last = rec.State, rec.Generation, rec.Since, rec.OpenCount, rec.Evidence
	if rec.State == Open {
		b.until = rec.OpenUntil
	}
	if rec.State == HalfOpen {
		budget := p.ProbeBudget
		for _, id := range sortedKeys(rec.Probes) {
			n := min(rec.Probes[id], budget)
			if n <= 0 {
				continue
			}
			budget -= n
			b.probe.holders[id] = &holder{permits: n, heard: now}
		}
	}
	return b, nil
}

func (r Record) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRecord, fmt.Sprintf(format, a...))
	}
	if !r.State.valid() {
		return bad("state: unknown state %d", uint8(r.State))
	}
	if r.OpenCount < 0 {
		return bad("openCount: %d is negative", r.OpenCount)
	}
	if r.State == Open && (r.OpenUntil.IsZero() || r.OpenCount < 1) {
		return bad("an OPEN record needs openUntil and openCount >= 1")
	}
	if r.State != HalfOpen && len(r.Probes) > 0 {
		return bad("probes: only a HALF_OPEN record holds probe permits, this one is %v", r.State)
	}
	for id, n := range r.Probes {
		if err := validID(id); err != nil {
			return bad("probes: %v", err)
		}
		if n < 0 {
			return bad("probes[%q]: %d permits is negative", id, n)
		}
	}
	return nil
}

// Policy returns the breaker's policy.
func (b *Breaker) Policy() Policy { return b.p }

// SetPolicy replaces the policy. The state, generation and timers are kept
// (an OPEN breaker keeps its deadline; the new policy applies from the next
// transition); the window starts afresh at now if its geometry changed; a
// HALF_OPEN probe assignment above the new budget loses unused permits.
func (b *Breaker) SetPolicy(p Policy, now time.Time) error {
	if err := p.Validate(); err != nil {
		return err
	}
	now = b.clamp(now)
	if p.Window != b.p.Window || p.Buckets != b.p.Buckets {
		b.win = newWindow(p, now)
	}
	b.p = p
	if b.state == HalfOpen {
		b.trimProbes()
	}
	return nil
}

// State returns the current state.
func (b *Breaker) State() State { return b.state }

// Snapshot returns what the engine persists.
func (b *Breaker) Snapshot() Record {
	r := Record{State: b.state, Generation: b.gen, Since: b.since, OpenCount: b.opens, Evidence: b.last}
	if b.state == Open {
		r.OpenUntil = b.until
	}
	if b.state == HalfOpen {
		r.Probes = b.assignment()
	}
	return r
}

// Deadline returns when Evaluate or ReassignProbes next has work that no
// report will trigger: the end of the open duration when OPEN; the earliest
// probe timeout of a holder with unused permits, or the end of the
// half-open bound, whichever is first, when HALF_OPEN. ok is false
// when nothing is timed. In CLOSED evaluate after reports and also on a
// periodic timer (a bucket width is plenty): as old buckets expire, the
// failure rate can rise with no new report.
func (b *Breaker) Deadline() (t time.Time, ok bool) {
	switch b.state {
	case Open:
		return b.until, true
	case HalfOpen:
		t, ok = b.since.Add(b.p.HalfOpenBound()), true
		for _, h := range b.probe.holders {
			if h.used < h.permits {
				if d := h.heard.Add(b.p.ProbeTimeout); d.Before(t) {
					t, ok = d, true
				}
			}
		}
	}
	return t, ok
}

func validID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidInstance)
	}
	if len(id) > MaxInstanceIDLen {
		return fmt.Errorf("%w: %d bytes is above the limit %d", ErrInvalidInstance, len(id), MaxInstanceIDLen)
	}
	return nil
}

// clamp keeps time monotonic for this breaker.
func (b *Breaker) clamp(now time.Time) time.Time {
	if now.Before(b.now) {
		return b.now
	}
	b.now = now
	return now
}

// Report adds one caller instance's counts for one report period, at leader
// time now. What they mean depends on the state: in CLOSED they enter the
// window (the bucket of now); in HALF_OPEN, from a probe holder, they are
// probe results (see ProbeResult); otherwise they are ignored. Invalid
// input is rejected with an error wrapping ErrInvalidCounts or
// ErrInvalidInstance, and changes nothing.
func (b *Breaker) Report(now time.Time, instance string, c Counts) error {
	if err := validID(instance); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("instance %q: %w", instance, err)
	}
	now = b.clamp(now)
	switch b.state {
	case Closed:
		b.win.add(now, instance, c)
	case HalfOpen:
		if h := b.probe.holders[instance]; h != nil {
			b.probe.apply(now, h, c.Successes, c.Failures)
		}
	}
	return nil
}

// Evaluate returns the transition due at now, if any, and applies it:
//   - CLOSED -> OPEN when a trip condition holds with quorum;
//   - OPEN -> HALF_OPEN once now reaches the open deadline (not before);
//   - HALF_OPEN -> OPEN on any probe failure, the open count incremented so
//     the open duration backs off;
//   - HALF_OPEN -> CLOSED after SuccessesToClose probe successes;
//   - HALF_OPEN -> OPEN, backed off the same way, when neither happened
//     within HalfOpenBound() of half-opening (whatever the permits).
//
// Every transition increments the generation, sets since to now and starts
// a fresh window. After a transition to HALF_OPEN the engine calls
// AssignProbes before persisting the Snapshot.
func (b *Breaker) Evaluate(now time.Time) (Transition, bool) {
	now = b.clamp(now)
	switch b.state {
	case Closed:
		ev := b.win.evidence(now, true)
		ev.FleetInstances = b.fleet
		b.p.trip(&ev)
		if ev.Condition == "" {
			return Transition{}, false
		}
		ev.Latency = b.win.latency(now) // summed only when it goes on record
		return b.open(now, ev), true
	case Open:
		if now.Before(b.until) {
			return Transition{}, false
		}
		return b.transition(HalfOpen, now, Evidence{Condition: ConditionOpenElapsed, At: now}), true
	case HalfOpen:
		ev := b.probe.evidence(now, b.since)
		switch {
		case ev.ProbeFailures > 0:
			ev.Condition = ConditionProbeFailed
			return b.open(now, ev), true
		case ev.ProbeSuccesses >= int64(b.p.SuccessesToClose):
			ev.Condition = ConditionProbesSucceeded
			b.opens = 0
			return b.transition(Closed, now, ev), true
		case !now.Before(b.since.Add(b.p.HalfOpenBound())):
			ev.Condition = ConditionHalfOpenTimeout
			return b.open(now, ev), true
		}
	}
	return Transition{}, false
}

// Evidence returns what the breaker sees at now without changing state: the
// window (with the Condition Evaluate would act on) when CLOSED, the probe
// results when HALF_OPEN, nothing but the time when OPEN.
func (b *Breaker) Evidence(now time.Time) Evidence {
	now = b.clamp(now)
	switch b.state {
	case Closed:
		ev := b.win.evidence(now, false)
		ev.Latency = b.win.latency(now)
		ev.FleetInstances = b.fleet
		b.p.trip(&ev)
		return ev
	case HalfOpen:
		return b.probe.evidence(now, b.since)
	}
	return Evidence{At: now}
}

func (b *Breaker) open(now time.Time, ev Evidence) Transition {
	b.opens++
	u := 0.5
	if b.p.Jitter > 0 {
		u = b.rand()
	}
	b.until = now.Add(b.p.OpenDurationFor(b.opens, u))
	return b.transition(Open, now, ev)
}

func (b *Breaker) transition(to State, now time.Time, ev Evidence) Transition {
	from := b.state
	b.state = to
	b.gen++
	b.since = now
	b.last = ev
	if to != Open {
		b.until = time.Time{}
	}
	b.win.reset(now)
	b.probe.reset()
	return Transition{
		From: from, To: to, At: now, Generation: b.gen, OpenCount: b.opens,
		OpenUntil: b.until, Evidence: ev,
	}
}
