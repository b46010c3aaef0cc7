package engine

import (
	"testing"
	"time"
)

// TestRejectedMeter: the meter sums the last ten seconds' rejected calls,
// forgetting older ones as the seconds pass.
func TestRejectedMeter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var m rejectedMeter
	m.add(t0, 5)
	m.add(t0.Add(500*time.Millisecond), 3)
	m.add(t0.Add(4*time.Second), 10)
	m.add(t0.Add(4*time.Second), 0)
	for _, tc := range []struct {
		at   time.Duration
		want int64
	}{
		{0, 8}, // the same second
		{time.Second, 8},
		{9 * time.Second, 18},
		{10 * time.Second, 10}, // t0's second has left the span
		{14 * time.Second, 0},
	} {
		if got := m.sum(t0.Add(tc.at)); got != tc.want {
			t.Errorf("at +%v: %d rejected, want %d", tc.at, got, tc.want)
		}
	}
	// A bucket reused ten seconds later starts from zero.
	m.add(t0.Add(10*time.Second), 2)
	if got := m.sum(t0.Add(10 * time.Second)); got != 12 {
		t.Errorf("after reusing t0's bucket: %d, want 12 (10 + 2)", got)
	}
}
