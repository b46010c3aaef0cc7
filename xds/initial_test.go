package xds

import (
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

// TestFirstLiveTransitionIsNotInitial checks that a pair's first record,
// published while a client is connected, is a live transition for that
// client (it counts in trip-to-enforce), while a state that predates the
// server, or that a client finds on connecting, is initial.
func TestFirstLiveTransitionIsNotInitial(t *testing.T) {
	backends := []*backend{startBackend(t)}
	s, addr := startServer(t, Config{})
	// The ledger pair has been OPEN since before the server started.
	st := grpcState(backends, nil)
	st.Callees[1].Breaker = &breaker.PairRecord{Caller: "checkout", Callee: "ledger",
		Record: breaker.Record{State: breaker.Open, Generation: 7, Since: time.Now().Add(-time.Hour)}}
	if err := s.Update(st); err != nil {
		t.Fatal(err)
	}
	cc := dialXDS(t, addr, "checkout-1", "payments")
	waitCall(t, cc, 500, "first call", func(err error) bool { return err == nil })

	// The payments pair's first record ever arrives while the client is
	// connected.
	st = grpcState(backends, liveRecord(breaker.Open, 1, nil))
	st.Callees[1].Breaker = &breaker.PairRecord{Caller: "checkout", Callee: "ledger",
		Record: breaker.Record{State: breaker.Open, Generation: 7, Since: time.Now().Add(-time.Hour)}}
	if err := s.Update(st); err != nil {
		t.Fatal(err)
	}
	got := waitStatus(t, s, 500, "client enforces payments generation 1", func(st Status) bool {
		_, ok := enforcedBy(st, "payments", 1, "checkout-1")
		return ok
	})
	if e, _ := enforcedBy(got, "payments", 1, "checkout-1"); e.Initial {
		t.Errorf("first live transition %+v is marked initial", e)
	}
	for _, tr := range got.Transitions {
		if want := tr.Callee == "ledger"; tr.Initial != want {
			t.Errorf("transition %s generation %d: Initial %v, want %v", tr.Callee, tr.Generation, tr.Initial, want)
		}
	}

	// A client connecting now finds both states in force: initial for it.
	cc2 := dialXDS(t, addr, "checkout-2", "payments")
	waitCall(t, cc2, 500, "OPEN enforced on the second client", isUnavailable)
	got = waitStatus(t, s, 500, "second client enforces generation 1", func(st Status) bool {
		_, ok := enforcedBy(st, "payments", 1, "checkout-2")
		return ok
	})
	if e, _ := enforcedBy(got, "payments", 1, "checkout-2"); !e.Initial {
		t.Errorf("state found on connecting %+v is not marked initial", e)
	}
}
