package breaker

import (
	"fmt"
	"time"
)

// Counts are the outcomes one caller instance saw for one pair in one report
// period (a bucket). Sidecars build them with Add; the engine passes them to
// Breaker.Report. Successes and Failures are the calls that count; Slow is
// how many of those were slow (a slow call is also a success or a failure,
// as in resilience4j); Rejected and Excluded count neither way.
type Counts struct {
	Successes int64 `json:"successes" yaml:"successes"`
	Failures  int64 `json:"failures" yaml:"failures"`
	// Slow counts calls (successes or failures) longer than the policy's
	// SlowCallDuration. At most Successes+Failures.
	Slow int64 `json:"slow" yaml:"slow"`
	// Rejected counts calls the breaker itself turned away (OPEN, or
	// HALF_OPEN without a permit). They say nothing about the callee.
	Rejected int64 `json:"rejected" yaml:"rejected"`
	// Excluded counts calls classified as counting neither way.
	Excluded int64 `json:"excluded" yaml:"excluded"`
	// TrailingFailures is the run of failures at the end of the period,
	// after its last success (gobreaker's ConsecutiveFailures, within one
	// report). At most Failures. When Successes is 0 the whole period is one
	// run and the breaker reads it as Failures whatever this says.
	TrailingFailures int64 `json:"trailingFailures" yaml:"trailingFailures"`
	// Latency is the histogram of the durations of the calls that count
	// (successes and failures), when the reporter measured them; it holds
	// at most Successes+Failures calls. Empty when the reporter did not
	// measure (older sidecars, stock clients' load reports).
	Latency Latency `json:"latency,omitzero" yaml:"latency,omitempty"`
}

// Calls returns the calls that count: Successes + Failures.
func (c Counts) Calls() int64 { return c.Successes + c.Failures }

// Add counts one classified call.
func (c *Counts) Add(v Verdict) {
	switch v.Outcome {
	case Success:
		c.Successes++
		c.TrailingFailures = 0
	case Failure:
		c.Failures++
		c.TrailingFailures++
	case Excluded:
		c.Excluded++
		return
	case Rejected:
		c.Rejected++
		return
	default:
		return
	}
	if v.Slow {
		c.Slow++
	}
}

// AddTimed counts one classified call that took took: as Add, and in the
// latency histogram when the call counts (a success or a failure).
func (c *Counts) AddTimed(v Verdict, took time.Duration) {
	c.Add(v)
	if v.Outcome == Success || v.Outcome == Failure {
		c.Latency.Observe(took)
	}
}

// Validate reports the first problem with c, wrapping ErrInvalidCounts:
// a negative field, a field above MaxCount, Slow above Successes+Failures,
// TrailingFailures above Failures, or a latency histogram with a negative
// bucket or more calls than Successes+Failures.
func (c Counts) Validate() error {
	fields := [...]struct {
		name string
		v    int64
	}{
		{"successes", c.Successes}, {"failures", c.Failures}, {"slow", c.Slow},
		{"rejected", c.Rejected}, {"excluded", c.Excluded}, {"trailingFailures", c.TrailingFailures},
	}
	for _, f := range fields {
		if f.v < 0 {
			return fmt.Errorf("%w: %s: %d is negative", ErrInvalidCounts, f.name, f.v)
		}
		if f.v > MaxCount {
			return fmt.Errorf("%w: %s: %d is above the limit %d", ErrInvalidCounts, f.name, f.v, int64(MaxCount))
		}
	}
	if c.Slow > c.Calls() {
		return fmt.Errorf("%w: slow: %d exceeds successes+failures %d", ErrInvalidCounts, c.Slow, c.Calls())
	}
	if c.TrailingFailures > c.Failures {
		return fmt.Errorf("%w: trailingFailures: %d exceeds failures %d", ErrInvalidCounts, c.TrailingFailures, c.Failures)
	}
	var timed int64
	for i, n := range c.Latency {
		if n < 0 {
			return fmt.Errorf("%w: latency[%d]: %d is negative", ErrInvalidCounts, i, n)
		}
		if n > MaxCount {
			return fmt.Errorf("%w: latency[%d]: %d is above the limit %d", ErrInvalidCounts, i, n, int64(MaxCount))
		}
		timed += n
	}
	if timed > c.Calls() {
		return fmt.Errorf("%w: latency: %d calls exceed successes+failures %d", ErrInvalidCounts, timed, c.Calls())
	}
	return nil
}
