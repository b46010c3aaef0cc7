package sidecar

import (
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestLockTTL: a lock TTL from the wire is the default, within 1 ms..max, or
// InvalidArgument naming ttl_ms; a huge one never wraps into range.
func TestLockTTL(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want time.Duration // 0: InvalidArgument
	}{
		{0, defaultLockTTL},
		{1, time.Millisecond},
		{maxLockTTL.Milliseconds(), maxLockTTL},
		{maxLockTTL.Milliseconds() + 1, 0},
		{-1, 0},
		{9_223_372_036_855, 0}, // wrapped negative and was accepted before
		{18_446_744_073_709, 0},
		{math.MaxInt64, 0},
	} {
		got, err := lockTTL(tc.ms)
		if tc.want == 0 {
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("lockTTL(%d) = %v, %v; want InvalidArgument", tc.ms, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("lockTTL(%d) = %v, %v; want %v", tc.ms, got, err, tc.want)
		}
	}
}

func FuzzLockTTL(f *testing.F) {
	for _, ms := range []int64{0, 1, -1, 300_000, 300_001, 9_223_372_036_855, math.MaxInt64, math.MinInt64} {
		f.Add(ms)
	}
	f.Fuzz(func(t *testing.T, ms int64) {
		got, err := lockTTL(ms)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("lockTTL(%d): %v, want InvalidArgument", ms, err)
			}
			return
		}
		if got <= 0 || got > maxLockTTL {
			t.Fatalf("lockTTL(%d) = %v, outside (0, %v]", ms, got, maxLockTTL)
		}
	})
}
