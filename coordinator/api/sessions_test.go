package api

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestClampTTL checks the TTL path from the wire at its edges.
func TestClampTTL(t *testing.T) {
	lo, hi := 2*time.Second, 5*time.Minute
	for _, tc := range []struct {
		ms   int64
		want time.Duration
	}{
		{0, defaultSessionTTL},
		{1, lo},
		{60_000, time.Minute},
		{hi.Milliseconds() + 1, hi},
		{9_223_372_036_854, hi},
		{9_223_372_036_855, hi}, // wrapped to a negative duration before
		{9_223_372_036_856_000, hi},
		{math.MaxInt64, hi},
	} {
		got, err := clampTTL(tc.ms, lo, hi)
		if err != nil || got != tc.want {
			t.Errorf("clampTTL(%d) = %v, %v; want %v", tc.ms, got, err, tc.want)
		}
	}
	if _, err := clampTTL(-1, lo, hi); status.Code(ToStatus(err)) != codes.InvalidArgument || !strings.Contains(err.Error(), "ttl_ms") {
		t.Errorf("negative: %v, want InvalidArgument naming ttl_ms", err)
	}
}

// FuzzClampTTL: whatever ttl_ms arrives, the granted TTL is within the
// limits, or the request is refused because it is negative.
func FuzzClampTTL(f *testing.F) {
	for _, ms := range []int64{0, 1, -1, 299, 60_000, 9_223_372_036_854, 9_223_372_036_855, math.MaxInt64, math.MinInt64} {
		f.Add(ms)
	}
	lo, hi := 300*time.Millisecond, 5*time.Minute
	f.Fuzz(func(t *testing.T, ms int64) {
		got, err := clampTTL(ms, lo, hi)
		if ms < 0 {
			if err == nil {
				t.Fatalf("clampTTL(%d) = %v, want an error", ms, got)
			}
			return
		}
		if err != nil || got < lo || got > hi {
			t.Fatalf("clampTTL(%d) = %v, %v; want within [%v, %v]", ms, got, err, lo, hi)
		}
		// Monotonic: asking for more never grants less (0 is the default).
		if ms > 0 && ms < math.MaxInt64 {
			if next, _ := clampTTL(ms+1, lo, hi); next < got {
				t.Fatalf("clampTTL(%d) = %v < clampTTL(%d) = %v", ms+1, next, ms, got)
			}
		}
		if ms >= hi.Milliseconds() && got != hi {
			t.Fatalf("clampTTL(%d) = %v, want the maximum %v", ms, got, hi)
		}
	})
}
