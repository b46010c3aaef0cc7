package breaker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Policy says when a pair's breaker trips, how long it stays open and how it
// probes its way back. Field names follow resilience4j where one exists (see
// the package doc for the mapping). In JSON and YAML, durations are Go
// duration strings ("10s", "1m30s", "250ms"); JSON decoding overlays the
// fields present onto the receiver, so decode into DefaultPolicy() to get
// defaults for the rest.
//
// The trip conditions (failure rate, consecutive failures, slow-call rate)
// are alternatives: any one that holds trips the breaker, but only together
// with the quorum (MinFailingInstances, MinFailingShare).
type Policy struct {
	// Window is the sliding time window the closed state looks at. Must be > 0.
	Window time.Duration `json:"window" yaml:"window"`
	// Buckets splits the window; it slides one bucket (Window/Buckets, a
	// whole number of milliseconds) at a time. 1 is a tumbling window.
	Buckets int `json:"buckets" yaml:"buckets"`
	// MinimumCalls is how many calls (successes + failures) the window needs
	// before the failure and slow-call rates are looked at. 0 means 1. It
	// does not gate ConsecutiveFailures.
	MinimumCalls int64 `json:"minimumCalls" yaml:"minimumCalls"`
	// FailureRateThreshold trips when failures/calls >= it (0..1). 0 turns
	// the rate condition off.
	FailureRateThreshold float64 `json:"failureRateThreshold" yaml:"failureRateThreshold"`
	// ConsecutiveFailures trips when the fleet-wide run of failures (in
	// report order, within the window) reaches it. 0 turns it off.
	ConsecutiveFailures int64 `json:"consecutiveFailures" yaml:"consecutiveFailures"`
	// SlowCallRateThreshold trips when slow/calls >= it (0..1). 0 turns it off.
	SlowCallRateThreshold float64 `json:"slowCallRateThreshold" yaml:"slowCallRateThreshold"`
	// SlowCallDuration: a call longer than this is slow. 0 means no call is
	// slow; it must be > 0 when SlowCallRateThreshold is set.
	SlowCallDuration time.Duration `json:"slowCallDuration" yaml:"slowCallDuration"`
	// Classification says which calls are failures and which are excluded.
	Classification Classification `json:"classification" yaml:"classification"`

	// OpenDuration is how long the first opening lasts. Must be > 0.
	OpenDuration time.Duration `json:"openDuration" yaml:"openDuration"`
	// BackoffMultiplier grows the open duration on each re-open without an
	// intervening close: OpenDuration * BackoffMultiplier^(opens-1). Must be
	// >= 1; 1 means a fixed open duration.
	BackoffMultiplier float64 `json:"backoffMultiplier" yaml:"backoffMultiplier"`
	// MaxOpenDuration caps the open duration (before and after jitter).
	// 0 means no cap; otherwise it must be >= OpenDuration.
	MaxOpenDuration time.Duration `json:"maxOpenDuration" yaml:"maxOpenDuration"`
	// Jitter spreads each open duration uniformly over ±Jitter of itself
	// (0..1), then the cap applies. 0 means none.
	Jitter float64 `json:"jitter" yaml:"jitter"`

	// ProbeBudget is the number of probe calls HALF_OPEN admits for the
	// whole fleet, shared out as permits to caller instances. Must be >= 1.
	ProbeBudget int `json:"probeBudget" yaml:"probeBudget"`
	// SuccessesToClose is how many probe successes close the breaker; any
	// probe failure re-opens it. 1..ProbeBudget.
	SuccessesToClose int `json:"successesToClose" yaml:"successesToClose"`
	// ProbeTimeout: a holder whose permits are not all used and that
	// reports no probe result for this long loses its unused permits to
	// other instances (ReassignProbes). Must be > 0.
	ProbeTimeout time.Duration `json:"probeTimeout" yaml:"probeTimeout"`
	// HalfOpenMaxWait bounds HALF_OPEN (resilience4j's
	// maxWaitDurationInHalfOpenState): when the probes have neither closed
	// nor re-opened the breaker this long after it half-opened, it goes
	// back to OPEN with the backoff applied (OpenCount+1). At least
	// ProbeTimeout, at most 24h. 0 means 6 * ProbeTimeout, capped at 24h
	// or ProbeTimeout if longer (policies stored before the field existed
	// decode to 0).
	HalfOpenMaxWait time.Duration `json:"halfOpenMaxWait" yaml:"halfOpenMaxWait"`

	// MinFailingInstances is the quorum by count: how many distinct caller
	// instances must have seen failures (slow calls, for the slow-call
	// condition) in the window. 0 and 1 both mean one. It is capped at the
	// caller service's fleet size when the engine knows it (its registered
	// instances, Breaker.SetFleet), so a service with a single instance can
	// still trip; it is not capped at the instances that happen to report,
	// or one sick instance reporting first would trip the pair alone. The
	// cap is never below the instances that reported in the window: they
	// are in the fleet even when their registration is not seen yet.
	MinFailingInstances int `json:"minFailingInstances" yaml:"minFailingInstances"`
	// MinFailingShare is the quorum by share: failing instances / instances
	// that reported calls in the window must be >= it (0..1). 0 turns it
	// off. When both quorum fields are set, both must hold.
	MinFailingShare float64 `json:"minFailingShare" yaml:"minFailingShare"`

	// DegradedMode is what a caller's sidecar enforces for this pair when it
	// cannot reach the coordinator: "last-known" (keep the last record),
	// "local" (a gobreaker on the instance's own outcomes), "fail-open" or
	// "fail-closed". Empty: the sidecar's own setting (--degraded-mode).
	DegradedMode string `json:"degradedMode,omitempty" yaml:"degradedMode,omitempty"`
}

// degradedModes are the values of Policy.DegradedMode. An array, so no
// caller can change what every policy and sidecar accepts.
var degradedModes = [...]string{"last-known", "local", "fail-open", "fail-closed"}

// DegradedModes returns the values of Policy.DegradedMode (a copy: changing
// it changes nothing else).
func DegradedModes() []string { return slices.Clone(degradedModes[:]) }

// IsDegradedMode reports whether s is one of DegradedModes.
func IsDegradedMode(s string) bool { return slices.Contains(degradedModes[:], s) }

// DefaultPolicy returns the policy Colony uses when a callee has none: trip
// at 50% failures over 10s (at least 20 calls) seen by at least 2 caller
// instances; open 10s, doubling up to 5m with ±10% jitter; 5 probes for the
// fleet, 3 successes to close, back to OPEN if they have not decided within
// 1m.
func DefaultPolicy() Policy {
	return Policy{
		Window:               10 * time.Second,
		Buckets:              10,
		MinimumCalls:         20,
		FailureRateThreshold: 0.5,
		SlowCallDuration:     5 * time.Second,
		Classification: Classification{
			HTTPFailures: []string{"5xx"},
			GRPCFailures: []string{"UNKNOWN", "DEADLINE_EXCEEDED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"},
			GRPCExcluded: []string{"CANCELLED"},
		},
		OpenDuration:        10 * time.Second,
		BackoffMultiplier:   2,
		MaxOpenDuration:     5 * time.Minute,
		Jitter:              0.1,
		ProbeBudget:         5,
		SuccessesToClose:    3,
		ProbeTimeout:        10 * time.Second,
		HalfOpenMaxWait:     time.Minute,
		MinFailingInstances: 2,
	}
}

// Validate reports every problem with p, each naming the field and the
// bound, joined and wrapped in ErrInvalidPolicy.
func (p Policy) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	unit := func(name string, v float64) {
		if !(v >= 0 && v <= 1) { // also catches NaN
			add("%s: %v is outside 0..1", name, v)
		}
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			add("%s: must be > 0, got %v", name, d)
		}
	}

	if p.Window <= 0 {
		add("window: must be > 0, got %v", p.Window)
	}
	switch {
	case p.Buckets < 1 || p.Buckets > MaxBuckets:
		add("buckets: %d is outside 1..%d", p.Buckets, MaxBuckets)
	case p.Window > 0 && (p.Window%time.Millisecond != 0 || (p.Window/time.Millisecond)%time.Duration(p.Buckets) != 0):
		add("buckets: window %v / %d buckets is not a whole number of milliseconds", p.Window, p.Buckets)
	}
	if p.MinimumCalls < 0 {
		add("minimumCalls: %d must be >= 0", p.MinimumCalls)
	}
	unit("failureRateThreshold", p.FailureRateThreshold)
	if p.ConsecutiveFailures < 0 {
		add("consecutiveFailures: %d must be >= 0", p.ConsecutiveFailures)
	}
	unit("slowCallRateThreshold", p.SlowCallRateThreshold)
	if p.SlowCallDuration < 0 {
		add("slowCallDuration: %v must be >= 0", p.SlowCallDuration)
	}
	if p.SlowCallRateThreshold > 0 && p.SlowCallDuration <= 0 {
		add("slowCallDuration: must be > 0 when slowCallRateThreshold is set")
	}
	if p.FailureRateThreshold == 0 && p.ConsecutiveFailures == 0 && p.SlowCallRateThreshold == 0 {
		add("failureRateThreshold, consecutiveFailures, slowCallRateThreshold: at least one must be set, or the breaker never trips")
	}
	if err := p.Classification.Validate(); err != nil {
		errs = append(errs, err)
	}

	positive("openDuration", p.OpenDuration)
	if !(p.BackoffMultiplier >= 1) || math.IsInf(p.BackoffMultiplier, 0) {
		add("backoffMultiplier: %v must be >= 1 (1 is a fixed open duration)", p.BackoffMultiplier)
	}
	if p.MaxOpenDuration < 0 || (p.MaxOpenDuration > 0 && p.MaxOpenDuration < p.OpenDuration) {
		add("maxOpenDuration: %v must be 0 (no cap) or >= openDuration %v", p.MaxOpenDuration, p.OpenDuration)
	}
	unit("jitter", p.Jitter)

	if p.ProbeBudget < 1 {
		add("probeBudget: must be >= 1, got %d", p.ProbeBudget)
	} else if p.ProbeBudget > MaxProbeBudget {
		add("probeBudget: %d is above the limit %d", p.ProbeBudget, MaxProbeBudget)
	}
	if p.SuccessesToClose < 1 {
		add("successesToClose: must be >= 1, got %d", p.SuccessesToClose)
	} else if p.ProbeBudget >= 1 && p.SuccessesToClose > p.ProbeBudget {
		add("successesToClose: %d exceeds probeBudget %d", p.SuccessesToClose, p.ProbeBudget)
	}
	positive("probeTimeout", p.ProbeTimeout)
	switch w := p.HalfOpenMaxWait; {
	case w < 0 || w > MaxHalfOpenMaxWait:
		add("halfOpenMaxWait: %v is outside 0..%v (0: 6 * probeTimeout)", w, MaxHalfOpenMaxWait)
	case w > 0 && w < p.ProbeTimeout:
		add("halfOpenMaxWait: %v is below probeTimeout %v (probes need at least one probe timeout)", w, p.ProbeTimeout)
	}

	if p.MinFailingInstances < 0 {
		add("minFailingInstances: %d must be >= 0", p.MinFailingInstances)
	}
	unit("minFailingShare", p.MinFailingShare)
	if p.DegradedMode != "" && !IsDegradedMode(p.DegradedMode) {
		add("degradedMode: %q is not one of %v (or empty: the sidecar's setting)", p.DegradedMode, degradedModes)
	}

	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	return nil
}

// OpenDurationFor returns how long the opens-th consecutive opening lasts
// (opens >= 1; less is read as 1): OpenDuration * BackoffMultiplier^(opens-1),
// capped at MaxOpenDuration, times a jitter factor 1 + Jitter*(2u-1), capped
// again. u is a uniform draw in [0,1); 0.5 means no jitter.
func (p Policy) OpenDurationFor(opens int, u float64) time.Duration {
	if opens < 1 {
		opens = 1
	}
	limit := float64(math.MaxInt64)
	if p.MaxOpenDuration > 0 {
		limit = float64(p.MaxOpenDuration)
	}
	d := float64(p.OpenDuration) * math.Pow(p.BackoffMultiplier, float64(opens-1))
	d = math.Min(d, limit)
	if p.Jitter > 0 {
		u = math.Min(math.Max(u, 0), 1)
		d = math.Min(d*(1+p.Jitter*(2*u-1)), limit)
	}
	if d >= float64(math.MaxInt64) {
		return time.Duration(math.MaxInt64)
	}
	return max(time.Duration(d), 1)
}

// HalfOpenBound returns how long HALF_OPEN may last: HalfOpenMaxWait, or
// when it is 0, 6 * ProbeTimeout, at most MaxHalfOpenMaxWait unless
// ProbeTimeout itself is longer (it never overflows: a policy stored before
// the field existed may have any ProbeTimeout).
func (p Policy) HalfOpenBound() time.Duration {
	if p.HalfOpenMaxWait > 0 {
		return p.HalfOpenMaxWait
	}
	if p.ProbeTimeout > MaxHalfOpenMaxWait/6 {
		return max(MaxHalfOpenMaxWait, p.ProbeTimeout)
	}
	return 6 * p.ProbeTimeout
}

// bucketWidth is Window/Buckets, valid after Validate.
func (p Policy) bucketWidth() int64 { return int64(p.Window) / int64(p.Buckets) }

// quorum reports whether affected of reporting instances, in a caller fleet
// of fleet instances (0: unknown), satisfy the quorum.
func (p Policy) quorum(affected, reporting, fleet int) bool {
	if affected < 1 {
		return false
	}
	need := max(p.MinFailingInstances, 1)
	// The registry can lag: an instance may report before its registration
	// is seen. Every instance reporting in the window is in the fleet.
	if fleet > 0 && need > max(fleet, reporting) {
		need = max(fleet, reporting)
	}
	if affected < need {
		return false
	}
	return p.MinFailingShare == 0 || float64(affected)/float64(reporting) >= p.MinFailingShare
}

// trip fills ev.Condition with the first condition that holds with quorum,
// and ev.QuorumBlocked with the first that holds without it.
func (p Policy) trip(ev *Evidence) {
	check := func(c Condition, holds bool, affected int) bool {
		if !holds {
			return false
		}
		if p.quorum(affected, ev.ReportingInstances, ev.FleetInstances) {
			ev.Condition = c
			return true
		}
		if ev.QuorumBlocked == "" {
			ev.QuorumBlocked = c
		}
		return false
	}
	enough := ev.Calls >= max(p.MinimumCalls, 1)
	_ = check(ConditionFailureRate, p.FailureRateThreshold > 0 && enough && ev.FailureRate >= p.FailureRateThreshold, ev.FailingInstances) ||
		check(ConditionConsecutiveFailures, p.ConsecutiveFailures > 0 && ev.ConsecutiveFailures >= p.ConsecutiveFailures, ev.FailingInstances) ||
		check(ConditionSlowCallRate, p.SlowCallRateThreshold > 0 && enough && ev.SlowCallRate >= p.SlowCallRateThreshold, ev.SlowInstances)
}

// durationText is a time.Duration that reads and writes as "10s".
type durationText time.Duration

func (d durationText) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalJSON accepts only a string: a bare number ("window: 10") would be
// nanoseconds to Go and seconds to most people.
func (d *durationText) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string like \"10s\", got %s", b)
	}
	return d.UnmarshalText([]byte(s))
}

func (d *durationText) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration like \"10s\": %w", err)
	}
	*d = durationText(v)
	return nil
}

// policyFields is Policy without its JSON methods.
type policyFields Policy

// MarshalJSON writes durations as strings ("10s").
func (p Policy) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		policyFields
		Window           durationText `json:"window"`
		SlowCallDuration durationText `json:"slowCallDuration"`
		OpenDuration     durationText `json:"openDuration"`
		MaxOpenDuration  durationText `json:"maxOpenDuration"`
		ProbeTimeout     durationText `json:"probeTimeout"`
		HalfOpenMaxWait  durationText `json:"halfOpenMaxWait"`
	}{
		policyFields(p), durationText(p.Window), durationText(p.SlowCallDuration),
		durationText(p.OpenDuration), durationText(p.MaxOpenDuration), durationText(p.ProbeTimeout),
		durationText(p.HalfOpenMaxWait),
	})
}

// UnmarshalJSON reads durations as strings ("10s") and overlays the fields
// present onto p.
func (p *Policy) UnmarshalJSON(b []byte) error {
	return p.decode(b, false)
}

// ParsePolicy decodes a JSON policy overlaid onto base, strictly: an unknown
// field (a misspelt "failureRateTreshold") is an error naming it, not a
// silently ignored setting. The result is validated.
func ParsePolicy(base Policy, b []byte) (Policy, error) {
	p := base
	if err := p.decode(b, true); err != nil {
		return Policy{}, err
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

func (p *Policy) decode(b []byte, strict bool) error {
	aux := struct {
		*policyFields
		Window           *durationText `json:"window"`
		SlowCallDuration *durationText `json:"slowCallDuration"`
		OpenDuration     *durationText `json:"openDuration"`
		MaxOpenDuration  *durationText `json:"maxOpenDuration"`
		ProbeTimeout     *durationText `json:"probeTimeout"`
		HalfOpenMaxWait  *durationText `json:"halfOpenMaxWait"`
	}{policyFields: (*policyFields)(p)}
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(&aux); err != nil {
		return fmt.Errorf("breaker: decoding policy: %w", err)
	}
	if dec.More() {
		return errors.New("breaker: decoding policy: trailing data after the JSON object")
	}
	for _, f := range []struct {
		src *durationText
		dst *time.Duration
	}{
		{aux.Window, &p.Window}, {aux.SlowCallDuration, &p.SlowCallDuration},
		{aux.OpenDuration, &p.OpenDuration}, {aux.MaxOpenDuration, &p.MaxOpenDuration},
		{aux.ProbeTimeout, &p.ProbeTimeout}, {aux.HalfOpenMaxWait, &p.HalfOpenMaxWait},
	} {
		if f.src != nil {
			*f.dst = time.Duration(*f.src)
		}
	}
	return nil
}
