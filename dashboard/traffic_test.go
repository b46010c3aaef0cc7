package dashboard

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestTrafficRates: a pair's row carries the window's call rate, error
// share, slow-call share and rejected calls, computed over the time the
// window has counted.
func TestTrafficRates(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		name                 string
		row                  *colonyv1.BreakerSummary
		callRate, rejectRate float64
		slowShare            float64
		windowMs             int64
	}{
		{"full window", &colonyv1.BreakerSummary{WindowCalls: 40, SlowCalls: 10, RejectedCalls: 20, WindowStartMs: at.Add(-10 * time.Second).UnixMilli()},
			4, 2, 0.25, 10_000},
		{"window restarted at a transition", &colonyv1.BreakerSummary{WindowCalls: 6, WindowStartMs: at.Add(-3 * time.Second).UnixMilli()},
			2, 0, 0, 3_000},
		{"open: no window, rejected calls", &colonyv1.BreakerSummary{RejectedCalls: 35}, 0, 3.5, 0, 0},
		{"window younger than a second counts as one", &colonyv1.BreakerSummary{WindowCalls: 5, WindowStartMs: at.Add(-100 * time.Millisecond).UnixMilli()},
			5, 0, 0, 100},
		{"no reports", &colonyv1.BreakerSummary{}, 0, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := summaryFromProto(tc.row, at.UnixMilli()).Window
			if w.CallRate != tc.callRate || w.RejectRate != tc.rejectRate || w.SlowCallRate != tc.slowShare || w.WindowMs != tc.windowMs {
				t.Fatalf("window %+v: want %v calls/s, %v rejected/s, slow share %v over %dms", *w, tc.callRate, tc.rejectRate, tc.slowShare, tc.windowMs)
			}
		})
	}
}

// TestTrafficLatency: a pair's row carries the window's latency
// percentiles, and the history a p99 series, null (not 0) while the
// pair's callers measure no latency.
func TestTrafficLatency(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	timed := summaryFromProto(&colonyv1.BreakerSummary{Caller: "a", Callee: "b", WindowCalls: 40, LatencySamples: 30,
		LatencyP50Ms: 5, LatencyP99Ms: 200, WindowStartMs: at.Add(-10 * time.Second).UnixMilli()}, at.UnixMilli())
	if w := timed.Window; w.LatencySamples != 30 || w.P50Ms != 5 || w.P99Ms != 200 || w.P999Ms != 0 {
		t.Fatalf("window %+v: want 30 samples, p50 5 ms, p99 200 ms", *w)
	}
	stock := summaryFromProto(&colonyv1.BreakerSummary{Caller: "a", Callee: "c", WindowCalls: 40,
		WindowStartMs: at.Add(-10 * time.Second).UnixMilli()}, at.UnixMilli())
	h := newHub(nil, slog.New(slog.DiscardHandler), 1, 1, 2*time.Second, time.Second)
	h.recordPollLocked(breakerList{AtMs: at.UnixMilli(), Breakers: []pairSummary{timed, stock}})
	th := h.historyLocked()
	if s := th.Pairs["a/b"]; len(s.P99Ms) != 1 || s.P99Ms[0] == nil || *s.P99Ms[0] != 200 {
		t.Fatalf("a/b p99 series %v, want [200]", s.P99Ms)
	}
	if s := th.Pairs["a/c"]; len(s.P99Ms) != 1 || s.P99Ms[0] != nil {
		t.Fatalf("a/c (no latency samples) p99 series %v, want [null]", s.P99Ms)
	}
}

// TestTrafficHistoryBounded: the history keeps the newest historyLen
// polls, starts again after a pause in polling (no browser connected), and
// lists the pairs of the newest poll with null where a poll lacked one.
func TestTrafficHistoryBounded(t *testing.T) {
	h := newHub(nil, slog.New(slog.DiscardHandler), 1, 1, 2*time.Second, time.Second)
	poll := func(atMs int64, pairs ...string) {
		l := breakerList{AtMs: atMs}
		for i, p := range pairs {
			caller, callee, _ := strings.Cut(p, "/")
			l.Breakers = append(l.Breakers, pairSummary{pairState: pairState{Caller: caller, Callee: callee},
				Window: &pairWindow{CallRate: float64(atMs / 1000), FailureRate: float64(i) / 10}})
		}
		h.recordPollLocked(l)
	}
	for i := range historyLen + 5 {
		poll(int64(i)*2000, "a/b")
	}
	th := h.historyLocked()
	if len(th.AtMs) != historyLen || th.AtMs[0] != 5*2000 || th.StepMs != 2000 {
		t.Fatalf("history of %d polls from %d (step %d): want the newest %d", len(th.AtMs), th.AtMs[0], th.StepMs, historyLen)
	}
	if s := th.Pairs["a/b"]; len(s.CallRate) != historyLen || *s.CallRate[historyLen-1] != float64(2*(historyLen+4)) {
		t.Fatalf("a/b series %v", s.CallRate)
	}

	// Polling paused for a minute: the old samples are not joined to new ones.
	last := th.AtMs[historyLen-1]
	poll(last+60_000, "a/b")
	poll(last+62_000, "a/b", "c/d")
	th = h.historyLocked()
	if len(th.AtMs) != 2 {
		t.Fatalf("after a pause: %d polls, want 2", len(th.AtMs))
	}
	if s := th.Pairs["c/d"]; s == nil || s.CallRate[0] != nil || s.FailureRate[1] == nil || *s.FailureRate[1] != 0.1 {
		t.Fatalf("c/d, new in the newest poll: %+v; want null then its sample", s)
	}
}

// TestTrafficHistoryOnConnect: a browser that connects while another is
// following gets the recent history before its first snapshot, and
// /api/traffic serves the same.
func TestTrafficHistoryOnConnect(t *testing.T) {
	f := &fakeCoordinator{summaries: []*colonyv1.BreakerSummary{{Caller: "checkout", Callee: "payments", State: "CLOSED", Generation: 1,
		FailureRate: 0.1, WindowCalls: 50, SlowCalls: 5, WindowStartMs: time.Now().Add(-10 * time.Second).UnixMilli()}}}
	srv := newTestDashboard(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	follow := func() <-chan sse {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return readEvents(res.Body)
	}
	first := follow()
	snapshots := 0
	for snapshots < 3 {
		select {
		case ev := <-first:
			if ev.name == eventSnapshot {
				snapshots++
			}
		case <-ctx.Done():
			t.Fatalf("%d snapshots within the deadline, want 3", snapshots)
		}
	}
	second := follow()
	for {
		select {
		case ev := <-second:
			switch ev.name {
			case eventSnapshot:
				t.Fatal("a snapshot came before the history")
			case eventHistory:
				var th trafficHistory
				if err := json.Unmarshal([]byte(ev.data), &th); err != nil {
					t.Fatal(err)
				}
				s := th.Pairs["checkout/payments"]
				if len(th.AtMs) < 3 || s == nil || len(s.FailureRate) != len(th.AtMs) || *s.FailureRate[0] != 0.1 || *s.SlowCallRate[0] != 0.1 {
					t.Fatalf("history %s: want 3 or more samples of checkout/payments at 10%% failures and 10%% slow", ev.data)
				}
				r := do(t, srv, "GET", "/api/traffic", "", "")
				var api trafficHistory
				if err := json.Unmarshal([]byte(r.body), &api); err != nil || r.code != 200 || len(api.AtMs) < len(th.AtMs) || api.Pairs["checkout/payments"] == nil {
					t.Fatalf("GET /api/traffic: %d %s (%v)", r.code, r.body, err)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("no history event for the second browser")
		}
	}
}
