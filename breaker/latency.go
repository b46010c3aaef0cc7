package breaker

import (
	"fmt"
	"math"
	"time"
)

// LatencyBounds returns the upper bounds (inclusive) of the latency
// histogram's buckets, fixed so that every reporter and the coordinator add
// the same buckets: 1, 2, 5, 10, 20, 50, 100, 200, 500 ms, 1, 2, 5, 10 s. A
// last bucket, past the final bound, holds the calls slower than 10 s.
func LatencyBounds() [LatencyBuckets - 1]time.Duration { return latencyBounds }

var latencyBounds = [LatencyBuckets - 1]time.Duration{
	1 * time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	1 * time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
}

// LatencyBuckets is the histogram's length: one bucket per bound and one
// past the last.
const LatencyBuckets = 14

// LatencyOverflow is what Latency.Quantile returns for a quantile in the
// last bucket: slower than the last bound, with no upper bound to give.
const LatencyOverflow = time.Duration(math.MaxInt64)

// Latency is a histogram of call durations: Latency[i] counts the calls
// that took at most LatencyBounds()[i] and more than the bound before it; the
// last element counts the calls slower than every bound. Its zero value is
// an empty histogram, which is also what a reporter that measures no
// latency (an older sidecar, a stock client's load report) sends.
type Latency [LatencyBuckets]int64

// LatencyBucket returns the index of the bucket d falls in.
func LatencyBucket(d time.Duration) int {
	for i, b := range latencyBounds {
		if d <= b {
			return i
		}
	}
	return LatencyBuckets - 1
}

// Observe counts one call that took d.
func (l *Latency) Observe(d time.Duration) {
	i := LatencyBucket(d)
	if l[i] < MaxCount {
		l[i]++
	}
}

// Total returns the calls counted.
func (l Latency) Total() int64 {
	var n int64
	for _, c := range l {
		n += c
	}
	return n
}

// Plus returns the bucket-wise sum of l and o, each bucket saturating at
// MaxCount.
func (l Latency) Plus(o Latency) Latency {
	for i := range l {
		l[i] = min(l[i]+o[i], MaxCount)
	}
	return l
}

// Trim removes calls from the slowest buckets until at most n are counted:
// a sum capped elsewhere (calls at MaxCount) keeps the histogram within it.
func (l Latency) Trim(n int64) Latency {
	excess := l.Total() - max(n, 0)
	for i := len(l) - 1; i >= 0 && excess > 0; i-- {
		d := min(l[i], excess)
		l[i] -= d
		excess -= d
	}
	return l
}

// Quantile returns the upper bound of the bucket that holds the q-th
// quantile (0 < q <= 1) of the counted calls: the smallest bound that at
// least q of the calls did not exceed. The true value lies between that
// bound and the one below it; no interpolation is done, so the answer
// never understates a latency. It returns LatencyOverflow when the
// quantile is past the last bound, and false when nothing is counted.
func (l Latency) Quantile(q float64) (time.Duration, bool) {
	total := l.Total()
	if total == 0 || q <= 0 || q > 1 || math.IsNaN(q) {
		return 0, false
	}
	rank := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i, c := range l {
		seen += c
		if seen >= rank {
			if i == LatencyBuckets-1 {
				return LatencyOverflow, true
			}
			return latencyBounds[i], true
		}
	}
	return LatencyOverflow, true
}

// LatencyFromSlice returns the histogram of a wire-form count list (at most
// LatencyBuckets entries, missing ones zero). It checks each count and the
// length, naming field in its errors, which wrap ErrInvalidCounts.
func LatencyFromSlice(field string, counts []int64) (Latency, error) {
	var l Latency
	if len(counts) > LatencyBuckets {
		return l, fmt.Errorf("%w: %s: %d buckets, the limit is %d", ErrInvalidCounts, field, len(counts), LatencyBuckets)
	}
	for i, c := range counts {
		if c < 0 {
			return l, fmt.Errorf("%w: %s[%d]: %d is negative", ErrInvalidCounts, field, i, c)
		}
		if c > MaxCount {
			return l, fmt.Errorf("%w: %s[%d]: %d is above the limit %d", ErrInvalidCounts, field, i, c, int64(MaxCount))
		}
		l[i] = c
	}
	return l, nil
}

// Slice returns l in its wire form: the counts up to the last non-zero
// bucket (nil when empty), so an empty histogram costs nothing on the wire.
func (l Latency) Slice() []int64 {
	n := len(l)
	for n > 0 && l[n-1] == 0 {
		n--
	}
	if n == 0 {
		return nil
	}
	out := make([]int64, n)
	copy(out, l[:n])
	return out
}

// FormatLatency prints a quantile as Quantile returned it: "≤50ms",
// ">10s" for LatencyOverflow.
func FormatLatency(d time.Duration) string {
	if d == LatencyOverflow {
		return ">" + latencyBounds[len(latencyBounds)-1].String()
	}
	return "≤" + d.String()
}
