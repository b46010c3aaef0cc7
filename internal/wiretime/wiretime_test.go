package wiretime

import (
	"math"
	"testing"
	"time"
)

func TestMillis(t *testing.T) {
	for _, tc := range []struct {
		name string
		ms   int64
		want time.Duration
	}{
		{"zero", 0, 0},
		{"one second", 1000, time.Second},
		{"negative", -1500, -1500 * time.Millisecond},
		{"largest exact", maxMs, time.Duration(maxMs) * time.Millisecond},
		// The value issue 13 reported: it wrapped negative before.
		{"first that overflows", 9_223_372_036_855, time.Duration(math.MaxInt64)},
		{"max int64", math.MaxInt64, time.Duration(math.MaxInt64)},
		{"min int64", math.MinInt64, time.Duration(math.MinInt64)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Millis(tc.ms); got != tc.want {
				t.Fatalf("Millis(%d) = %v, want %v", tc.ms, got, tc.want)
			}
		})
	}
	if got := UMillis(math.MaxUint64); got != time.Duration(math.MaxInt64) {
		t.Fatalf("UMillis(MaxUint64) = %v, want saturated", got)
	}
}

// FuzzMillis checks that a conversion never changes sign and never comes out
// smaller in magnitude than an exact conversion would (it saturates instead).
func FuzzMillis(f *testing.F) {
	for _, ms := range []int64{0, 1, -1, maxMs, maxMs + 1, -maxMs - 1, math.MaxInt64, math.MinInt64} {
		f.Add(ms)
	}
	f.Fuzz(func(t *testing.T, ms int64) {
		d := Millis(ms)
		switch {
		case ms > 0 && d <= 0, ms < 0 && d >= 0, ms == 0 && d != 0:
			t.Fatalf("Millis(%d) = %v: sign changed", ms, d)
		}
		if ms >= -maxMs && ms <= maxMs && d/time.Millisecond != time.Duration(ms) {
			t.Fatalf("Millis(%d) = %v: not exact in range", ms, d)
		}
		if ms > maxMs && d != math.MaxInt64 || ms < -maxMs && d != math.MinInt64 {
			t.Fatalf("Millis(%d) = %v: not saturated", ms, d)
		}
		if ms >= 0 {
			if u := UMillis(uint64(ms)); u != d {
				t.Fatalf("UMillis(%d) = %v, Millis = %v", ms, u, d)
			}
		}
	})
}
