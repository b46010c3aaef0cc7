package breaker

import (
	"fmt"
	"strings"
)

// State is a breaker's state.
type State uint8

const (
	// Closed lets every call through and watches the window.
	Closed State = iota
	// Open rejects every call until the open duration has elapsed.
	Open
	// HalfOpen lets only the fleet-wide probe permits through.
	HalfOpen
)

// String returns CLOSED, OPEN or HALF_OPEN.
func (s State) String() string {
	switch s {
	case Closed:
		return "CLOSED"
	case Open:
		return "OPEN"
	case HalfOpen:
		return "HALF_OPEN"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

func (s State) valid() bool { return s <= HalfOpen }

// MarshalText encodes the state by name, so records read well as JSON/YAML.
func (s State) MarshalText() ([]byte, error) {
	if !s.valid() {
		return nil, fmt.Errorf("breaker: unknown state %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText accepts CLOSED, OPEN and HALF_OPEN (any case; "-" for "_").
func (s *State) UnmarshalText(b []byte) error {
	switch strings.ReplaceAll(strings.ToUpper(string(b)), "-", "_") {
	case "CLOSED":
		*s = Closed
	case "OPEN":
		*s = Open
	case "HALF_OPEN", "HALFOPEN":
		*s = HalfOpen
	default:
		return fmt.Errorf("breaker: unknown state %q (want CLOSED, OPEN or HALF_OPEN)", b)
	}
	return nil
}

// Condition names why a transition happened (or, in Evidence without a
// transition, what would have fired).
type Condition string

const (
	// ConditionFailureRate: failures/calls >= FailureRateThreshold with at
	// least MinimumCalls calls in the window, and quorum.
	ConditionFailureRate Condition = "failureRate"
	// ConditionConsecutiveFailures: the fleet-wide run of failures reached
	// ConsecutiveFailures, and quorum.
	ConditionConsecutiveFailures Condition = "consecutiveFailures"
	// ConditionSlowCallRate: slow/calls >= SlowCallRateThreshold with at
	// least MinimumCalls calls in the window, and quorum of slow instances.
	ConditionSlowCallRate Condition = "slowCallRate"
	// ConditionOpenElapsed: the open duration ended (OPEN -> HALF_OPEN).
	ConditionOpenElapsed Condition = "openElapsed"
	// ConditionProbesSucceeded: SuccessesToClose probe successes and no
	// probe failure (HALF_OPEN -> CLOSED).
	ConditionProbesSucceeded Condition = "probesSucceeded"
	// ConditionProbeFailed: a probe failed (HALF_OPEN -> OPEN).
	ConditionProbeFailed Condition = "probeFailed"
	// ConditionHalfOpenTimeout: HALF_OPEN lasted Policy.HalfOpenMaxWait
	// without the probes deciding (HALF_OPEN -> OPEN, backed off like a
	// probe failure): callers that report nothing cannot keep a pair
	// half-open forever.
	ConditionHalfOpenTimeout Condition = "halfOpenTimeout"
)
