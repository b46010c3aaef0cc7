package engine

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/colonymesh/colony/breaker"
)

// TestNoOverrideError: clearing a pair without an override says what the
// pair does by itself and how to force it, instead of a bare "no override".
func TestNoOverrideError(t *testing.T) {
	k := pairKey{"checkout", "payments"}
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pol := breaker.DefaultPolicy()
	for _, tc := range []struct {
		rec  breaker.Record
		want []string
	}{
		{breaker.Record{State: breaker.HalfOpen, Since: since}, []string{"HALF_OPEN and leaves by itself", "CLOSED after 3 probe successes", "2026-01-02T03:05:05Z (halfOpenMaxWait 1m0s", "colony breaker force-close checkout payments"}},
		{breaker.Record{State: breaker.Open, Since: since, OpenUntil: since.Add(time.Minute)}, []string{"OPEN until 2026-01-02T03:05:05Z, then HALF_OPEN", "force-close"}},
		{breaker.Record{State: breaker.Closed}, []string{"no override to clear (it is CLOSED)"}},
	} {
		err := noOverrideError(k, tc.rec, pol)
		if Code(err) != codes.FailedPrecondition {
			t.Fatalf("%v: %v, want FailedPrecondition", tc.rec.State, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %q does not say %q", tc.rec.State, err, w)
			}
		}
	}
}
