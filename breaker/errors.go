package breaker

import (
	"errors"
	"time"
)

var (
	// ErrInvalidPolicy wraps every problem Policy.Validate finds.
	ErrInvalidPolicy = errors.New("breaker: invalid policy")
	// ErrInvalidCounts is returned for a report whose counts are negative,
	// inconsistent or absurdly large; the report changes nothing.
	ErrInvalidCounts = errors.New("breaker: invalid counts")
	// ErrInvalidInstance is returned for an empty or oversized caller
	// instance id.
	ErrInvalidInstance = errors.New("breaker: invalid instance id")
	// ErrInvalidRecord is returned by Restore for a record that cannot be a
	// breaker's persisted state.
	ErrInvalidRecord = errors.New("breaker: invalid record")
	// ErrNotHalfOpen is returned by ProbeResult when the breaker is not
	// HALF_OPEN: there are no probes to account for.
	ErrNotHalfOpen = errors.New("breaker: not half-open")
	// ErrNotProbeHolder is returned by ProbeResult for an instance that holds
	// no probe permit in the current generation.
	ErrNotProbeHolder = errors.New("breaker: instance holds no probe permit")
	// ErrNotConvertible is returned by FromGobreaker and FromResilience4j for
	// settings that have no Colony equivalent.
	ErrNotConvertible = errors.New("breaker: settings cannot be converted")
)

// Limits on input. They keep sums far from overflow and memory bounded
// whatever a caller sends.
const (
	// MaxCount bounds each field of one report's Counts.
	MaxCount = 1 << 40
	// MaxInstanceIDLen bounds a caller instance id, in bytes.
	MaxInstanceIDLen = 256
	// MaxBuckets bounds Policy.Buckets.
	MaxBuckets = 1000
	// MaxHalfOpenMaxWait bounds Policy.HalfOpenMaxWait.
	MaxHalfOpenMaxWait = 24 * time.Hour
	// MaxProbeBudget bounds Policy.ProbeBudget.
	MaxProbeBudget = 10000
)
