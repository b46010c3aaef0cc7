package sidecar

import (
	"errors"

	"github.com/sony/gobreaker/v2"

	"github.com/colonymesh/colony/breaker"
)

// errCallFailed stands for a failed call replayed into gobreaker.
var errCallFailed = errors.New("call failed")

// maxFeed bounds how many calls of one report a local breaker replays.
const maxFeed = 10000

// localBreaker is the Local degraded mode's breaker for one pair: a
// gobreaker on this instance's own outcomes, with settings from the pair's
// policy. It starts CLOSED when the mode starts: gobreaker cannot start
// OPEN, and the coordinator's last decision is stale by then anyway.
type localBreaker struct {
	cb     *gobreaker.TwoStepCircuitBreaker[struct{}]
	budget int
}

func newLocalBreaker(callee string, p breaker.Policy, _ *breaker.PairRecord) *localBreaker {
	minCalls := uint32(max(p.MinimumCalls, 1))
	st := gobreaker.Settings{
		Name:        callee,
		MaxRequests: uint32(p.SuccessesToClose),
		Interval:    p.Window,
		Timeout:     p.OpenDuration,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if p.ConsecutiveFailures > 0 && int64(c.ConsecutiveFailures) >= p.ConsecutiveFailures {
				return true
			}
			return p.FailureRateThreshold > 0 && c.Requests >= minCalls &&
				float64(c.TotalFailures)/float64(c.Requests) >= p.FailureRateThreshold
		},
	}
	return &localBreaker{cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](st), budget: p.SuccessesToClose}
}

// feed replays one report's calls, successes first then the failures (a
// report's trailing run of failures comes last).
func (l *localBreaker) feed(c breaker.Counts) {
	for _, o := range []struct {
		n  int64
		ok bool
	}{{c.Successes, true}, {c.Failures, false}} {
		for range min(o.n, maxFeed) {
			done, err := l.cb.Allow()
			if err != nil {
				break // OPEN, or HALF_OPEN's requests used up
			}
			if o.ok {
				done(nil)
			} else {
				done(errCallFailed)
			}
		}
	}
}

func (l *localBreaker) state() breaker.State {
	switch l.cb.State() {
	case gobreaker.StateOpen:
		return breaker.Open
	case gobreaker.StateHalfOpen:
		return breaker.HalfOpen
	}
	return breaker.Closed
}

func (l *localBreaker) probes() int { return l.budget }
