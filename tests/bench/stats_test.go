package bench

import (
	"math"
	"slices"
	"time"
)

type latencySummary struct {
	n             int
	p50, p99, max time.Duration
}

// summarize sorts d in place and returns nearest-rank percentiles.
func summarize(d []time.Duration) latencySummary {
	if len(d) == 0 {
		return latencySummary{}
	}
	slices.Sort(d)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return d[max(0, min(i, len(d)-1))]
	}
	return latencySummary{n: len(d), p50: rank(0.50), p99: rank(0.99), max: d[len(d)-1]}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
