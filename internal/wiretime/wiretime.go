// Package wiretime turns durations that arrive from the wire (milliseconds in
// an int64 or uint64 protobuf field) into time.Duration without overflow.
//
// time.Duration(ms) * time.Millisecond wraps for |ms| above about 9.2e12
// (292 years) and can come out negative or small, which then passes a
// "not above the maximum" check. Every conversion from the wire goes through
// here instead: it saturates first, so the caller's range check sees a value
// at least as large as the one the client sent.
package wiretime

import (
	"math"
	"time"
)

// maxMs is the largest millisecond count that fits in a time.Duration.
const maxMs = int64(math.MaxInt64 / int64(time.Millisecond))

// Millis returns ms milliseconds as a Duration, saturated to
// [math.MinInt64, math.MaxInt64] nanoseconds instead of wrapping.
func Millis(ms int64) time.Duration {
	switch {
	case ms > maxMs:
		return time.Duration(math.MaxInt64)
	case ms < -maxMs:
		return time.Duration(math.MinInt64)
	}
	return time.Duration(ms) * time.Millisecond
}

// UMillis is Millis for an unsigned field.
func UMillis(ms uint64) time.Duration {
	if ms > uint64(maxMs) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ms) * time.Millisecond
}
