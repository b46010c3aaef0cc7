package engine

import (
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/colonymesh/colony/breaker"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// FuzzBreakerDurations feeds the durations a client controls on the breaker
// path through their conversions: an override's ttl_ms and a policy's
// duration strings. An accepted TTL is within 0..maxOverrideTTL and puts the
// expiry after the override starts; an accepted policy has every duration
// positive (or zero where zero has a meaning) and no larger than a Duration
// holds, so no timer computed from it wraps into the past.
func FuzzBreakerDurations(f *testing.F) {
	f.Add(int64(0), []byte(`{}`))
	f.Add(int64(60_000), []byte(`{"openDuration":"30s","halfOpenMaxWait":"2m"}`))
	f.Add(int64(9_223_372_036_855), []byte(`{"probeTimeout":"2562047h47m16.854775807s"}`))
	f.Add(int64(math.MaxInt64), []byte(`{"window":"9223372036854775807ns","buckets":1}`))
	f.Add(int64(math.MinInt64), []byte(`{"halfOpenMaxWait":"-1s"}`))
	f.Add(int64(-1), []byte(`{"maxOpenDuration":"99999999999h"}`))
	f.Fuzz(func(t *testing.T, ms int64, policy []byte) {
		ttl, err := overrideTTL(ms)
		switch {
		case err != nil:
			if Code(err) != codes.InvalidArgument {
				t.Fatalf("ttl_ms %d: %v, want InvalidArgument", ms, err)
			}
			if ms >= 0 && ms <= maxOverrideTTL.Milliseconds() {
				t.Fatalf("ttl_ms %d within the limit refused: %v", ms, err)
			}
		case ttl < 0 || ttl > maxOverrideTTL:
			t.Fatalf("ttl_ms %d accepted as %v, outside 0..%v", ms, ttl, maxOverrideTTL)
		case ttl != time.Duration(ms)*time.Millisecond:
			t.Fatalf("ttl_ms %d accepted as %v", ms, ttl)
		default:
			now := time.Now()
			if ttl > 0 && !now.Add(ttl).After(now) {
				t.Fatalf("ttl_ms %d: expiry %v is not after %v", ms, now.Add(ttl), now)
			}
		}

		sets, err := ResolvePolicies([]*colonyv1.PolicySpec{{Callee: "payments", Policy: policy}}, "fuzz", time.Now())
		if err != nil {
			if Code(err) != codes.InvalidArgument {
				t.Fatalf("policy %q: %v, want InvalidArgument", policy, err)
			}
			return
		}
		p := sets[0].Policy
		for name, d := range map[string]time.Duration{
			"window": p.Window, "openDuration": p.OpenDuration, "probeTimeout": p.ProbeTimeout,
		} {
			if d <= 0 {
				t.Fatalf("policy %q accepted with %s %v", policy, name, d)
			}
		}
		// Zero is meaningful for these: no cap on the open duration's
		// growth, no slow calls, and a HALF_OPEN bound of 6 probe timeouts
		// (checked through HalfOpenBound below).
		if p.MaxOpenDuration < 0 || p.SlowCallDuration < 0 || p.HalfOpenMaxWait < 0 {
			t.Fatalf("policy %q accepted with a negative duration: %+v", policy, p)
		}
		now := time.Now()
		if d := p.OpenDurationFor(1000, 1); d <= 0 || !now.Add(d).After(now) {
			t.Fatalf("policy %q: open duration %v after 1000 opens", policy, d)
		}
		if b := p.HalfOpenBound(); b <= 0 || b > max(breaker.MaxHalfOpenMaxWait, p.ProbeTimeout) || b < p.ProbeTimeout || !now.Add(b).After(now) {
			t.Fatalf("policy %q: half-open bound %v", policy, b)
		}
	})
}
