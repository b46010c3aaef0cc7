package breaker

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// GobreakerSettings are the parts of sony/gobreaker v2's Settings that have
// a Colony equivalent. ReadyToTrip is a function there; describe it with one
// of the two shapes gobreaker users write (both zero means gobreaker's
// default, ConsecutiveFailures > 5). IsSuccessful and IsExcluded are
// functions of an error; express them as a Classification on the base
// policy instead.
type GobreakerSettings struct {
	MaxRequests  uint32
	Interval     time.Duration
	BucketPeriod time.Duration
	Timeout      time.Duration
	// ConsecutiveFailuresAbove is N in ReadyToTrip:
	// counts.ConsecutiveFailures > N.
	ConsecutiveFailuresAbove uint32
	// MinRequests and FailureRatio are the README's ReadyToTrip:
	// counts.Requests >= MinRequests && TotalFailures/Requests >= FailureRatio.
	MinRequests  uint32
	FailureRatio float64
}

// FromGobreaker returns base with the fields gobreaker settings define
// replaced:
//   - MaxRequests -> ProbeBudget and SuccessesToClose (0 means 1, as in
//     gobreaker); fleet-wide here, per process there;
//   - Interval -> Window with Buckets = 1 (gobreaker's fixed window); with
//     BucketPeriod, Buckets = Interval/BucketPeriod rounded up and Window =
//     Buckets*BucketPeriod, as gobreaker rounds; Interval <= 0 (never clear)
//     has no equivalent and keeps base's window;
//   - Timeout -> OpenDuration (<= 0 means 60s), BackoffMultiplier 1 and
//     Jitter 0: gobreaker does not back off;
//   - ReadyToTrip -> the trip conditions, all of them: base's are dropped.
//
// Quorum, classification, ProbeTimeout and MaxOpenDuration come from base
// (MaxOpenDuration raised to OpenDuration if below it). The result is
// validated.
func FromGobreaker(base Policy, s GobreakerSettings) (Policy, error) {
	p := base
	p.ProbeBudget = max(int(s.MaxRequests), 1)
	p.SuccessesToClose = p.ProbeBudget
	switch {
	case s.Interval <= 0:
	case s.BucketPeriod <= 0:
		p.Window, p.Buckets = s.Interval, 1
	default:
		n := (s.Interval + s.BucketPeriod - 1) / s.BucketPeriod
		p.Window, p.Buckets = n*s.BucketPeriod, int(n)
	}
	p.OpenDuration = s.Timeout
	if p.OpenDuration <= 0 {
		p.OpenDuration = 60 * time.Second
	}
	p.BackoffMultiplier, p.Jitter = 1, 0
	if p.MaxOpenDuration > 0 && p.MaxOpenDuration < p.OpenDuration {
		p.MaxOpenDuration = p.OpenDuration
	}
	p.FailureRateThreshold, p.ConsecutiveFailures, p.SlowCallRateThreshold = 0, 0, 0
	if s.FailureRatio > 0 {
		p.FailureRateThreshold = s.FailureRatio
		p.MinimumCalls = int64(s.MinRequests)
	}
	switch {
	case s.ConsecutiveFailuresAbove > 0:
		p.ConsecutiveFailures = int64(s.ConsecutiveFailuresAbove) + 1
	case s.FailureRatio == 0:
		p.ConsecutiveFailures = 6 // gobreaker's default: ConsecutiveFailures > 5
	}
	if err := p.Validate(); err != nil {
		return Policy{}, fmt.Errorf("%w: from gobreaker: %w", ErrNotConvertible, err)
	}
	return p, nil
}

// Resilience4jConfig holds resilience4j CircuitBreakerConfig properties,
// named as in its Spring configuration, in Go units: rates in percent
// (0..100), durations as time.Duration. A zero field is unset and keeps the
// base policy's value.
type Resilience4jConfig struct {
	FailureRateThreshold      float64       // percent -> FailureRateThreshold/100
	SlowCallRateThreshold     float64       // percent -> SlowCallRateThreshold/100
	SlowCallDurationThreshold time.Duration // -> SlowCallDuration
	// SlidingWindowType must be TIME_BASED when SlidingWindowSize is set:
	// Colony's windows are time-based (COUNT_BASED, resilience4j's default,
	// does not convert).
	SlidingWindowType                     string
	SlidingWindowSize                     int // seconds -> Window, one bucket per second as in resilience4j
	MinimumNumberOfCalls                  int // -> MinimumCalls
	WaitDurationInOpenState               time.Duration
	PermittedNumberOfCallsInHalfOpenState int // -> ProbeBudget and SuccessesToClose
	// MaxWaitDurationInHalfOpenState -> HalfOpenMaxWait (0 there means
	// forever; Colony always bounds HALF_OPEN, so unset keeps the base's).
	MaxWaitDurationInHalfOpenState time.Duration
	// AutomaticTransitionFromOpenToHalfOpenEnabled is accepted and has no
	// effect: the leader's timer always moves OPEN to HALF_OPEN.
	AutomaticTransitionFromOpenToHalfOpenEnabled bool
	// EnableExponentialBackoff with ExponentialBackoffMultiplier (default
	// 1.5) and ExponentialMaxWaitDurationInOpenState -> BackoffMultiplier and
	// MaxOpenDuration. Off means a fixed open duration (multiplier 1).
	EnableExponentialBackoff              bool
	ExponentialBackoffMultiplier          float64
	ExponentialMaxWaitDurationInOpenState time.Duration
	// EnableRandomizedWait with RandomizedWaitFactor (default 0.5) -> Jitter.
	// Off means no jitter.
	EnableRandomizedWait bool
	RandomizedWaitFactor float64
}

// FromResilience4j returns base with the fields c sets replaced. Quorum,
// classification (recordExceptions / ignoreExceptions have no equivalent:
// Colony classifies statuses, not exceptions) and ProbeTimeout come from
// base. MaxOpenDuration is raised to OpenDuration if below it. The result is
// validated.
func FromResilience4j(base Policy, c Resilience4jConfig) (Policy, error) {
	p := base
	var errs []error
	pct := func(name string, v float64, dst *float64) {
		switch {
		case v == 0:
		case v < 0 || v > 100:
			errs = append(errs, fmt.Errorf("%s: %v is outside 0..100 (percent)", name, v))
		default:
			*dst = v / 100
		}
	}
	pct("failureRateThreshold", c.FailureRateThreshold, &p.FailureRateThreshold)
	pct("slowCallRateThreshold", c.SlowCallRateThreshold, &p.SlowCallRateThreshold)
	if c.SlowCallDurationThreshold > 0 {
		p.SlowCallDuration = c.SlowCallDurationThreshold
	}
	if c.SlidingWindowSize != 0 || c.SlidingWindowType != "" {
		switch strings.ToUpper(c.SlidingWindowType) {
		case "TIME_BASED":
			if c.SlidingWindowSize > 0 {
				p.Window, p.Buckets = time.Duration(c.SlidingWindowSize)*time.Second, c.SlidingWindowSize
			}
		case "":
			errs = append(errs, errors.New("slidingWindowType: unset means COUNT_BASED in resilience4j; Colony windows are time-based, set TIME_BASED"))
		default:
			errs = append(errs, fmt.Errorf("slidingWindowType: %q cannot convert; Colony windows are time-based (TIME_BASED)", c.SlidingWindowType))
		}
	}
	if c.MinimumNumberOfCalls > 0 {
		p.MinimumCalls = int64(c.MinimumNumberOfCalls)
	}
	if c.WaitDurationInOpenState > 0 {
		p.OpenDuration = c.WaitDurationInOpenState
	}
	if c.PermittedNumberOfCallsInHalfOpenState > 0 {
		p.ProbeBudget = c.PermittedNumberOfCallsInHalfOpenState
		p.SuccessesToClose = p.ProbeBudget
	}
	if c.MaxWaitDurationInHalfOpenState > 0 {
		p.HalfOpenMaxWait = c.MaxWaitDurationInHalfOpenState
	}
	p.BackoffMultiplier = 1
	if c.EnableExponentialBackoff {
		p.BackoffMultiplier = 1.5
		if c.ExponentialBackoffMultiplier > 0 {
			p.BackoffMultiplier = c.ExponentialBackoffMultiplier
		}
		if c.ExponentialMaxWaitDurationInOpenState > 0 {
			p.MaxOpenDuration = c.ExponentialMaxWaitDurationInOpenState
		}
	}
	if p.MaxOpenDuration > 0 && p.MaxOpenDuration < p.OpenDuration {
		p.MaxOpenDuration = p.OpenDuration
	}
	p.Jitter = 0
	if c.EnableRandomizedWait {
		p.Jitter = 0.5
		if c.RandomizedWaitFactor > 0 {
			p.Jitter = c.RandomizedWaitFactor
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Policy{}, fmt.Errorf("%w: from resilience4j: %w", ErrNotConvertible, err)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, fmt.Errorf("%w: from resilience4j: %w", ErrNotConvertible, err)
	}
	return p, nil
}
