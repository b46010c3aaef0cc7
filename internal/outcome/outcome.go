// Package outcome converts outcome counts between their wire form
// (colony.v1.OutcomeCounts) and the breaker's (breaker.Counts), for the
// coordinator's and the sidecar's report paths.
package outcome

import (
	"github.com/colonymesh/colony/breaker"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// FromProto returns c as breaker.Counts (nil is all zeros). It fails, with
// an error wrapping breaker.ErrInvalidCounts, only when the latency
// histogram does not fit breaker.Latency (too many buckets, a negative or
// oversized count); the caller still runs Counts.Validate for the rest.
func FromProto(c *colonyv1.OutcomeCounts) (breaker.Counts, error) {
	lat, err := breaker.LatencyFromSlice("latency", c.GetLatency())
	return breaker.Counts{
		Successes: c.GetSuccesses(), Failures: c.GetFailures(), Slow: c.GetSlow(),
		Rejected: c.GetRejected(), Excluded: c.GetExcluded(), TrailingFailures: c.GetTrailingFailures(),
		Latency: lat,
	}, err
}

// ToProto returns c in its wire form.
func ToProto(c breaker.Counts) *colonyv1.OutcomeCounts {
	return &colonyv1.OutcomeCounts{
		Successes: c.Successes, Failures: c.Failures, Slow: c.Slow,
		Rejected: c.Rejected, Excluded: c.Excluded, TrailingFailures: c.TrailingFailures,
		Latency: c.Latency.Slice(),
	}
}
