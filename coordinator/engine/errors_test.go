package engine

import (
	"encoding/json"
	"fmt"
	"slices"
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

// TestHistoryToTrimKeepsTheTrip: when the history is full, the oldest
// entries go, except the newest CLOSED -> OPEN trip, which explains the
// episode that re-open cycles keep adding to.
func TestHistoryToTrimKeepsTheTrip(t *testing.T) {
	entry := func(kind breaker.HistoryKind, from, to breaker.State) breaker.HistoryEntry {
		return breaker.HistoryEntry{Kind: kind, From: from, To: to}
	}
	trip := entry(breaker.HistoryTransition, breaker.Closed, breaker.Open)
	reopen := entry(breaker.HistoryTransition, breaker.HalfOpen, breaker.Open)
	half := entry(breaker.HistoryTransition, breaker.Open, breaker.HalfOpen)
	stored := func(first ...breaker.HistoryEntry) ([]string, func(string) []byte) {
		data := map[string][]byte{}
		var names []string
		for i := range HistoryKeep {
			e := half
			if i%2 == 1 {
				e = reopen
			}
			if i < len(first) {
				e = first[i]
			}
			name := fmt.Sprintf("h-%010d", i)
			data[name], _ = json.Marshal(e)
			names = append(names, name)
		}
		return names, func(n string) []byte { return data[n] }
	}
	for _, tc := range []struct {
		name  string
		first []breaker.HistoryEntry
		added []breaker.HistoryEntry
		want  []string
	}{
		{"no trip kept: the oldest go", nil, []breaker.HistoryEntry{half, reopen}, []string{"h-0000000000", "h-0000000001"}},
		{"the trip is oldest: the next go", []breaker.HistoryEntry{trip}, []breaker.HistoryEntry{half, reopen}, []string{"h-0000000001", "h-0000000002"}},
		{"only the newest trip is kept", []breaker.HistoryEntry{trip, trip}, []breaker.HistoryEntry{half}, []string{"h-0000000000"}},
		{"a new trip lets the old one go", []breaker.HistoryEntry{trip}, []breaker.HistoryEntry{trip}, []string{"h-0000000000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			names, get := stored(tc.first...)
			if got := historyToTrim(names, tc.added, get); !slices.Equal(got, tc.want) {
				t.Fatalf("historyToTrim = %v, want %v", got, tc.want)
			}
		})
	}
}
