package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// memHost is the engine's host without raft: a ztree in memory (a pure
// state machine), every commit applied at the next index at once.
type memHost struct {
	mu    sync.Mutex
	tree  *ztree.Tree
	index uint64
}

var _ Host = (*memHost)(nil)

func newMemHost() *memHost { return &memHost{tree: ztree.New()} }

func (h *memHost) View() *ztree.View { return h.tree.View() }

func (h *memHost) Commit(ctx context.Context, ops []*colonyv1.Op) (*peerv1.CommandResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.index++
	cmd := &peerv1.Command{
		RequestId: fmt.Sprintf("test-%d", h.index), TimeMs: time.Now().UnixMilli(),
		Op: &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: ops}},
	}
	res, _ := h.tree.Apply([]ztree.Entry{{Index: h.index, Cmd: cmd}})
	return res[0], nil
}

// record reads the pair's record from the host's tree; nil when absent.
func (h *memHost) record(t *testing.T, caller, callee string) *breaker.PairRecord {
	t.Helper()
	data, _, err := h.View().Get(contract.BreakerPath(caller, callee))
	if err != nil {
		return nil
	}
	var rec breaker.PairRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("record %s->%s: %v", caller, callee, err)
	}
	return &rec
}

// tripPolicy trips at 50% failures of at least 10 calls from at least 2
// failing instances, and opens for a minute.
const tripPolicy = `{"window":"2s","buckets":10,"minimumCalls":10,"failureRateThreshold":0.5,` +
	`"openDuration":"1m","backoffMultiplier":2,"maxOpenDuration":"5m","jitter":0,` +
	`"probeBudget":3,"successesToClose":3,"probeTimeout":"2s","minFailingInstances":2,"minFailingShare":0}`

// startEngine returns a started engine on a fresh in-memory tree, with a
// policy for callee "payments".
func startEngine(t *testing.T, cfg Config) (*Engine, *memHost) {
	t.Helper()
	h := newMemHost()
	e := New(h, cfg)
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	sets, err := ResolvePolicies([]*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(tripPolicy)}}, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ApplyPolicies(t.Context(), sets); err != nil {
		t.Fatal(err)
	}
	return e, h
}

func outcomes(caller, callee, instance string, ok, failed int64) *colonyv1.OutcomeReport {
	return &colonyv1.OutcomeReport{
		Caller: caller, Callee: callee, Instance: instance,
		Counts: &colonyv1.OutcomeCounts{Successes: ok, Failures: failed, TrailingFailures: failed},
	}
}

// TestEngineTripsWithoutRaft: reports trip a pair and the engine writes the
// OPEN record and its history into the tree, restores it in the next
// term's engine, and a forced delete removes it all.
func TestEngineTripsWithoutRaft(t *testing.T) {
	e, h := startEngine(t, Config{})
	ctx := t.Context()
	now := time.Now()
	if err := e.Report(ctx, now, []*colonyv1.OutcomeReport{
		outcomes("checkout", "payments", "c1", 2, 8), outcomes("checkout", "payments", "c2", 2, 8),
	}); err != nil {
		t.Fatal(err)
	}
	e.step(ctx, now, false)
	rec := h.record(t, "checkout", "payments")
	if rec == nil || rec.State != breaker.Open || rec.Generation != 1 {
		t.Fatalf("record after failing reports: %+v, want OPEN at generation 1", rec)
	}
	hist, _, _ := h.View().Children(contract.HistoryDir("checkout", "payments"))
	if len(hist) != 1 {
		t.Fatalf("history %v, want the trip", hist)
	}

	// The next term's engine restores the pair from the tree.
	e2 := New(h, Config{})
	if err := e2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	got := e2.List("", "", now)
	if len(got) != 1 || got[0].State != "OPEN" || got[0].Generation != 1 {
		t.Fatalf("restored pairs %v, want checkout->payments OPEN at generation 1", got)
	}

	// OPEN protects the callee: deleting it takes force.
	if _, err := e2.Delete(ctx, "checkout", "payments", false, "ops", "test"); !errors.Is(err, ErrProtected) || Code(err) != codes.FailedPrecondition {
		t.Fatalf("delete of an OPEN pair without force: %v", err)
	}
	if _, err := e2.Delete(ctx, "checkout", "payments", true, "ops", "test"); err != nil {
		t.Fatal(err)
	}
	v := h.View()
	for _, p := range []string{contract.BreakerPath("checkout", "payments"), contract.HistoryDir("checkout", "payments"), contract.CallerBreakers("checkout")} {
		if _, _, err := v.Get(p); err == nil {
			t.Errorf("%s still exists after the delete", p)
		}
	}
}

// TestGetShowsTheHistoryOfTheRecordItShows: a trip decided but not yet
// written (between the engine's evaluation and its write) is read whole:
// the OPEN record with its transition in the history, not OPEN with the
// history of the CLOSED pair.
func TestGetShowsTheHistoryOfTheRecordItShows(t *testing.T) {
	e, h := startEngine(t, Config{})
	ctx := t.Context()
	now := time.Now()
	if err := e.Report(ctx, now, []*colonyv1.OutcomeReport{outcomes("checkout", "payments", "c1", 5, 0)}); err != nil {
		t.Fatal(err)
	}
	e.step(ctx, now, false) // the pair's CLOSED record
	if err := e.Report(ctx, now, []*colonyv1.OutcomeReport{
		outcomes("checkout", "payments", "c1", 0, 10), outcomes("checkout", "payments", "c2", 0, 10),
	}); err != nil {
		t.Fatal(err)
	}
	// Evaluate as the engine's step does, stopping before its write.
	e.mu.Lock()
	e.evaluate(&fleets{v: e.host.View()}, e.pairs[pairKey{"checkout", "payments"}], now)
	e.mu.Unlock()
	if rec := h.record(t, "checkout", "payments"); rec == nil || rec.State != breaker.Closed {
		t.Fatalf("record in the tree before the write: %+v, want still CLOSED", rec)
	}

	resp, err := e.Get(ctx, "checkout", "payments", 20, now)
	if err != nil {
		t.Fatal(err)
	}
	var rec breaker.PairRecord
	if err := json.Unmarshal(resp.Record, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.State != breaker.Open || len(resp.History) != 1 {
		t.Fatalf("Get: %s with %d history entries, want OPEN with its transition", rec.State, len(resp.History))
	}
	var entry breaker.HistoryEntry
	if err := json.Unmarshal(resp.History[0], &entry); err != nil {
		t.Fatal(err)
	}
	if entry.From != breaker.Closed || entry.To != breaker.Open || entry.Generation != rec.Generation {
		t.Fatalf("history entry %+v, want CLOSED -> OPEN at generation %d", entry, rec.Generation)
	}
}

// TestEngineIdleExpiry: a CLOSED pair without reports for IdleExpiry is
// deleted from memory and tree on a tick. (The deletion rechecks idleness
// on the wall clock, so this one waits for it.)
func TestEngineIdleExpiry(t *testing.T) {
	const idle = 200 * time.Millisecond
	e, h := startEngine(t, Config{IdleExpiry: idle})
	ctx := t.Context()
	now := time.Now()
	if err := e.Report(ctx, now, []*colonyv1.OutcomeReport{outcomes("checkout", "payments", "c1", 5, 0)}); err != nil {
		t.Fatal(err)
	}
	e.step(ctx, now, false)
	if h.record(t, "checkout", "payments") == nil {
		t.Fatal("no record for the reported pair")
	}
	e.step(ctx, now, true)
	if h.record(t, "checkout", "payments") == nil {
		t.Fatal("pair deleted before its idle expiry")
	}
	time.Sleep(idle + 50*time.Millisecond)
	e.step(ctx, time.Now(), true)
	if rec := h.record(t, "checkout", "payments"); rec != nil {
		t.Fatalf("idle pair still recorded: %+v", rec)
	}
	if got := e.List("", "", now); len(got) != 0 {
		t.Fatalf("idle pair still tracked: %v", got)
	}
}

// TestEngineErrors: the engine's refusals match their sentinels, map to the
// codes the Breakers API answers with, and name the pair and the limit.
func TestEngineErrors(t *testing.T) {
	e, _ := startEngine(t, Config{MaxPairs: 100, MaxPairsPerCaller: 2})
	ctx := t.Context()
	now := time.Now()
	if err := e.Report(ctx, now, []*colonyv1.OutcomeReport{
		outcomes("checkout", "payments", "c1", 1, 0), outcomes("checkout", "ledger", "c1", 1, 0),
	}); err != nil {
		t.Fatal(err)
	}
	_, noPair := e.Get(ctx, "checkout", "nowhere", 20, now)
	_, noOverride := e.ClearOverride(ctx, "checkout", "payments", "ops", "test")
	for _, tc := range []struct {
		name     string
		err      error
		sentinel error
		code     codes.Code
		want     string
	}{
		{"a caller over its share", e.Report(ctx, now, []*colonyv1.OutcomeReport{outcomes("checkout", "fraud", "c1", 1, 0)}),
			ErrLimit, codes.ResourceExhausted, `reports[0]: pair checkout->fraud: caller "checkout" already has 2 pairs, its share of the table (MaxBreakerPairsPerCaller 2)`},
		{"no such pair", noPair, ErrNoBreaker, codes.NotFound, "no breaker for checkout->nowhere: no caller has reported calls to it"},
		{"no override to clear", noOverride, ErrNoOverride, codes.FailedPrecondition, "pair checkout->payments has no override to clear (it is CLOSED)"},
		{"no policy to delete", e.DeletePolicy(ctx, "ledger"), ErrNoPolicy, codes.NotFound, "callee ledger has no policy (it uses the default)"},
		{"empty report", ValidateReports(nil, nil), ErrInvalidArgument, codes.InvalidArgument, "reports: empty"},
		{"unknown callee", ValidateReports([]*colonyv1.OutcomeReport{outcomes("checkout", "nobody", "c1", 1, 0)}, func(string, string) (bool, error) { return false, nil }),
			ErrUnknownCallee, codes.NotFound, `reports[0].callee: unknown callee "nobody": no policy at`},
		{"ttl beyond a year", func() error {
			_, _, err := ParseOverride(&colonyv1.SetOverrideRequest{Mode: colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN, TtlMs: -1}, now)
			return err
		}(),
			ErrInvalidArgument, codes.InvalidArgument, "ttl_ms: -1 is outside 0..31622400000 (0: until cleared)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.sentinel) {
				t.Fatalf("%v does not match %v", tc.err, tc.sentinel)
			}
			if c := Code(tc.err); c != tc.code {
				t.Fatalf("%v: code %v, want %v", tc.err, c, tc.code)
			}
			if !strings.HasPrefix(tc.err.Error(), tc.want) {
				t.Fatalf("message %q, want it to start with %q", tc.err, tc.want)
			}
		})
	}
	if c := Code(fmt.Errorf("wrapped: %w", noPair)); c != codes.NotFound {
		t.Fatalf("a wrapped engine error maps to %v", c)
	}
	if c := Code(errors.New("other")); c != codes.Unknown {
		t.Fatalf("a foreign error maps to %v", c)
	}
	if got := e.List("checkout", "", now); !slices.EqualFunc(got, []string{"ledger", "payments"}, func(s *colonyv1.BreakerSummary, callee string) bool { return s.Callee == callee }) {
		t.Fatalf("a refused report changed the pairs: %v", got)
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

// TestEngineListsLatencyPercentiles: the pair's summary carries the
// window's latency percentiles from the reporters that measured them, as
// the upper bounds of their buckets; a pair whose reporters send no
// latency (stock callers) has none, not zeros dressed as fast calls.
func TestEngineListsLatencyPercentiles(t *testing.T) {
	e, _ := startEngine(t, Config{})
	now := time.Now()
	timed := outcomes("checkout", "payments", "c1", 1000, 0)
	var l breaker.Latency
	for i := range 1000 {
		switch {
		case i < 980:
			l.Observe(8 * time.Millisecond) // <= 10 ms
		case i < 999:
			l.Observe(300 * time.Millisecond) // <= 500 ms
		default:
			l.Observe(time.Minute) // past 10 s
		}
	}
	timed.Counts.Latency = l.Slice()
	if err := e.Report(t.Context(), now, []*colonyv1.OutcomeReport{
		timed, outcomes("web", "payments", "w1", 50, 0), // a stock caller: no latency
	}); err != nil {
		t.Fatal(err)
	}
	got := map[string]*colonyv1.BreakerSummary{}
	for _, s := range e.List("", "payments", now) {
		got[s.Caller] = s
	}
	c := got["checkout"]
	if c == nil || c.LatencySamples != 1000 || c.LatencyP50Ms != 10 || c.LatencyP99Ms != 500 || c.LatencyP999Ms != 500 {
		t.Errorf("checkout->payments: %v; want 1000 samples, p50 10, p99 500, p99.9 500", c)
	}
	if w := got["web"]; w == nil || w.LatencySamples != 0 || w.LatencyP50Ms != 0 || w.Latency != nil {
		t.Errorf("web->payments without latency: %v", w)
	}

	// p99.9 is withheld below 1000 samples; past the last bound is -1.
	var slow breaker.Latency
	for range 10 {
		slow.Observe(time.Minute)
	}
	r := outcomes("cart", "payments", "k1", 10, 0)
	r.Counts.Latency = slow.Slice()
	if err := e.Report(t.Context(), now, []*colonyv1.OutcomeReport{r}); err != nil {
		t.Fatal(err)
	}
	s := e.List("cart", "payments", now)
	if len(s) != 1 || s[0].LatencyP50Ms != -1 || s[0].LatencyP99Ms != -1 || s[0].LatencyP999Ms != 0 {
		t.Errorf("cart->payments: %v; want p50 and p99 -1 (past 10 s), no p99.9", s)
	}
}
