package breaker_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

func TestFromGobreaker(t *testing.T) {
	base := breaker.DefaultPolicy()
	tests := []struct {
		name  string
		s     breaker.GobreakerSettings
		check func(p breaker.Policy) bool
	}{
		{"zero settings are gobreaker's defaults", breaker.GobreakerSettings{},
			func(p breaker.Policy) bool {
				return p.ProbeBudget == 1 && p.SuccessesToClose == 1 && p.OpenDuration == time.Minute &&
					p.ConsecutiveFailures == 6 && p.FailureRateThreshold == 0 && p.BackoffMultiplier == 1 &&
					p.Jitter == 0 && p.Window == base.Window && p.MinFailingInstances == base.MinFailingInstances
			}},
		{"fixed interval is a tumbling window", breaker.GobreakerSettings{Interval: 30 * time.Second, MaxRequests: 3, Timeout: 5 * time.Second},
			func(p breaker.Policy) bool {
				return p.Window == 30*time.Second && p.Buckets == 1 && p.ProbeBudget == 3 && p.SuccessesToClose == 3 && p.OpenDuration == 5*time.Second
			}},
		{"bucket period rounds the interval up", breaker.GobreakerSettings{Interval: 10 * time.Second, BucketPeriod: 3 * time.Second},
			func(p breaker.Policy) bool { return p.Window == 12*time.Second && p.Buckets == 4 }},
		{"ConsecutiveFailures > N", breaker.GobreakerSettings{ConsecutiveFailuresAbove: 3},
			func(p breaker.Policy) bool { return p.ConsecutiveFailures == 4 && p.FailureRateThreshold == 0 }},
		{"the README's ratio", breaker.GobreakerSettings{MinRequests: 3, FailureRatio: 0.6},
			func(p breaker.Policy) bool {
				return p.MinimumCalls == 3 && p.FailureRateThreshold == 0.6 && p.ConsecutiveFailures == 0
			}},
	}
	for _, tt := range tests {
		p, err := breaker.FromGobreaker(base, tt.s)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !tt.check(p) {
			t.Errorf("%s: got %+v", tt.name, p)
		}
	}
	_, err := breaker.FromGobreaker(base, breaker.GobreakerSettings{FailureRatio: 1.5})
	if !errors.Is(err, breaker.ErrNotConvertible) || !strings.Contains(err.Error(), "failureRateThreshold: 1.5") {
		t.Errorf("ratio 1.5: %v", err)
	}
}

func TestFromResilience4j(t *testing.T) {
	base := breaker.DefaultPolicy()
	p, err := breaker.FromResilience4j(base, breaker.Resilience4jConfig{
		FailureRateThreshold:                         25,
		SlowCallRateThreshold:                        80,
		SlowCallDurationThreshold:                    2 * time.Second,
		SlidingWindowType:                            "TIME_BASED",
		SlidingWindowSize:                            30,
		MinimumNumberOfCalls:                         50,
		WaitDurationInOpenState:                      20 * time.Second,
		PermittedNumberOfCallsInHalfOpenState:        4,
		EnableExponentialBackoff:                     true,
		ExponentialMaxWaitDurationInOpenState:        10 * time.Minute,
		EnableRandomizedWait:                         true,
		RandomizedWaitFactor:                         0.2,
		AutomaticTransitionFromOpenToHalfOpenEnabled: false,
	})
	must(t, err)
	want := base
	want.FailureRateThreshold, want.SlowCallRateThreshold, want.SlowCallDuration = 0.25, 0.8, 2*time.Second
	want.Window, want.Buckets, want.MinimumCalls = 30*time.Second, 30, 50
	want.OpenDuration, want.ProbeBudget, want.SuccessesToClose = 20*time.Second, 4, 4
	want.BackoffMultiplier, want.MaxOpenDuration, want.Jitter = 1.5, 10*time.Minute, 0.2
	if !equalPolicy(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}

	p, err = breaker.FromResilience4j(base, breaker.Resilience4jConfig{WaitDurationInOpenState: 10 * time.Minute})
	must(t, err)
	if p.BackoffMultiplier != 1 || p.Jitter != 0 || p.MaxOpenDuration != 10*time.Minute {
		t.Errorf("fixed wait: multiplier %v jitter %v max %v", p.BackoffMultiplier, p.Jitter, p.MaxOpenDuration)
	}

	for _, tt := range []struct {
		c    breaker.Resilience4jConfig
		want string
	}{
		{breaker.Resilience4jConfig{SlidingWindowSize: 100}, "unset means COUNT_BASED"},
		{breaker.Resilience4jConfig{SlidingWindowType: "COUNT_BASED", SlidingWindowSize: 100}, `"COUNT_BASED" cannot convert`},
		{breaker.Resilience4jConfig{FailureRateThreshold: 150}, "failureRateThreshold: 150 is outside 0..100"},
		{breaker.Resilience4jConfig{SlidingWindowType: "TIME_BASED", SlidingWindowSize: 7200}, "buckets: 7200 is outside 1..1000"},
	} {
		_, err := breaker.FromResilience4j(base, tt.c)
		if !errors.Is(err, breaker.ErrNotConvertible) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.c, err, tt.want)
		}
	}
}

func equalPolicy(a, b breaker.Policy) bool {
	return reflect.DeepEqual(a, b)
}
