package engine

import "time"

// rejectedSpan is how far back a pair's rejected calls are summed for
// ListBreakers: the breaker's own window counts nothing while it is OPEN
// (its callers' rejections are what OPEN means), so the engine keeps this
// count beside it, whatever the state or override.
const rejectedSpan = 10 * time.Second

// rejectedBuckets divides rejectedSpan.
const rejectedBuckets = int64(rejectedSpan / time.Second)

// rejectedMeter sums the rejected calls reported over the last
// rejectedSpan, in one-second buckets (soft state, like the window).
type rejectedMeter struct {
	counts [rejectedBuckets]int64
	slots  [rejectedBuckets]int64 // which second each bucket holds
}

func (m *rejectedMeter) add(now time.Time, n int64) {
	if n <= 0 {
		return
	}
	sec := now.Unix()
	i := sec % rejectedBuckets
	if m.slots[i] != sec {
		m.slots[i], m.counts[i] = sec, 0
	}
	m.counts[i] += n
}

// sum returns the calls rejected in the rejectedSpan up to now.
func (m *rejectedMeter) sum(now time.Time) int64 {
	sec := now.Unix()
	var n int64
	for i, s := range m.slots {
		if s > sec-rejectedBuckets && s <= sec {
			n += m.counts[i]
		}
	}
	return n
}
