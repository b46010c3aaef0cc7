//go:build unix

package robustness

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

const (
	rbCaller  = "rb-caller"
	rbCallee  = "rb-callee"
	rbCallee2 = "rb-callee-2"
)

// The breaker workloads: one pair flipped between force-open and cleared,
// another cycled through force-closed, force-open, shadow and cleared
// (every step a new generation; shadow enforces CLOSED while the record
// keeps the shadow breaker).
var (
	rbOps  = []string{"force-open", "clear"}
	rbOps2 = []string{"force-closed", "force-open", "shadow", "clear"}
)

// breakerWorkload drives one breaker pair through committed transitions
// with overrides (ops in turn, e.g. force-open, clear, force-open, ...), one
// at a time, while a watch records /colony/breakers/<caller>. Checks:
// generations never go backwards, neither in the answers nor in the watch;
// every acknowledged transition is in the watch; after healing, the record
// is at least at the last acknowledged generation and shows the last
// acknowledged override (no transition is lost across leader changes).
type breakerWorkload struct {
	t      testing.TB
	events *eventLog
	callee string
	ops    []string
	conns  []*grpc.ClientConn
	cur    int
	watch  *watchRecorder

	mu      sync.Mutex
	acks    []breakerAck
	unknown int  // operations with no answer
	lastOK  bool // the last operation got an answer
	setup   error
	final   *breaker.PairRecord
	errs    []string
}

// breakerAck is one answered override operation.
type breakerAck struct {
	Op         string // one of the workload's ops, or "clear-noop"
	Generation uint64
	State      breaker.State
	Override   bool
}

func newBreakerWorkload(t testing.TB, eps []string, tlsCfg *tls.Config, seed uint64, events *eventLog, callee string, ops []string) *breakerWorkload {
	w := &breakerWorkload{t: t, events: events, callee: callee, ops: ops}
	for _, ep := range eps {
		conn, err := dial(ep, tlsCfg)
		if err != nil {
			w.setup = err
			return w
		}
		w.conns = append(w.conns, conn)
	}
	w.cur = int(seed % uint64(len(w.conns)))
	var err error
	w.watch, err = newWatchRecorder("breakers-"+callee, "/colony/breakers/"+rbCaller, eps, tlsCfg, int(seed))
	if err != nil {
		w.setup = err
	}
	return w
}

func (w *breakerWorkload) close() {
	for _, c := range w.conns {
		c.Close()
	}
	if w.watch != nil {
		w.watch.close()
	}
}

// call runs f on the nodes in turn until it gets an answer (nil or a
// definite error) or the budget ends (ok false).
func (w *breakerWorkload) call(f func(context.Context, colonyv1.BreakersClient) error) (error, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), opBudget)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		err := f(actx, colonyv1.NewBreakersClient(w.conns[w.cur]))
		acancel()
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		default:
			return err, true
		}
		w.cur = (w.cur + 1) % len(w.conns)
		if !sleepUntil(ctx, 50*time.Millisecond) {
			return err, false
		}
	}
}

// run makes the callee known (a policy), starts the watch and flips the
// override until ctx ends; the watch runs until watchCtx ends.
func (w *breakerWorkload) run(ctx, watchCtx context.Context) {
	if w.setup != nil {
		return
	}
	err, ok := w.call(func(ctx context.Context, c colonyv1.BreakersClient) error {
		_, err := c.ApplyPolicies(ctx, &colonyv1.ApplyPoliciesRequest{
			Policies: []*colonyv1.PolicySpec{{Callee: w.callee, Policy: []byte(`{}`)}}, By: "robustness",
		})
		return err
	})
	if err != nil || !ok {
		w.mu.Lock()
		w.setup = fmt.Errorf("applying the policy: %v (answered: %v)", err, ok)
		w.mu.Unlock()
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.watch.run(watchCtx) }()
	defer wg.Wait()
	select {
	case <-w.watch.started:
	case <-ctx.Done():
		return
	}
	for i := 0; ctx.Err() == nil; i++ {
		op := w.ops[i%len(w.ops)]
		reason := fmt.Sprintf("robustness %d", i)
		var resp *colonyv1.OverrideResponse
		err, ok := w.call(func(ctx context.Context, c colonyv1.BreakersClient) (err error) {
			if op == "clear" {
				resp, err = c.ClearOverride(ctx, &colonyv1.ClearOverrideRequest{Caller: rbCaller, Callee: w.callee, Reason: reason, By: "robustness"})
			} else {
				resp, err = c.SetOverride(ctx, &colonyv1.SetOverrideRequest{Caller: rbCaller, Callee: w.callee,
					Mode: overrideModes[op], Reason: reason, By: "robustness"})
			}
			return err
		})
		w.mu.Lock()
		switch {
		case !ok:
			w.unknown++
			w.lastOK = false
		case err == nil:
			var rec breaker.PairRecord
			if jerr := json.Unmarshal(resp.GetRecord(), &rec); jerr != nil {
				w.errs = append(w.errs, fmt.Sprintf("%s: decoding the record: %v", op, jerr))
				break
			}
			w.acks = append(w.acks, breakerAck{Op: op, Generation: rec.Generation, State: rec.State, Override: rec.Override != nil})
			if rec.Override != nil && string(rec.Override.Mode) != op || rec.Override == nil && op != "clear" {
				w.errs = append(w.errs, fmt.Sprintf("%s answered a record with override %+v", op, rec.Override))
			}
			w.lastOK = true
		case status.Code(err) == codes.FailedPrecondition && op == "clear":
			// Nothing to clear: the previous force-open never applied.
			w.lastOK = true
			w.acks = append(w.acks, breakerAck{Op: "clear-noop", Generation: 0, Override: false})
		default:
			w.errs = append(w.errs, fmt.Sprintf("%s at %.3fs: %v", op, w.events.now().Seconds(), err))
			w.events.note("breakers", "%s failed: %v", op, err)
			w.lastOK = false
		}
		w.mu.Unlock()
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// finish reads the pair's record once the cluster has healed and converged.
func (w *breakerWorkload) finish(r *run) {
	if w.setup != nil {
		return
	}
	var resp *colonyv1.GetBreakerResponse
	err, ok := w.call(func(ctx context.Context, c colonyv1.BreakersClient) (err error) {
		resp, err = c.GetBreaker(ctx, &colonyv1.GetBreakerRequest{Caller: rbCaller, Callee: w.callee})
		return err
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil || !ok {
		w.errs = append(w.errs, fmt.Sprintf("final GetBreaker: %v (answered %v)", err, ok))
		return
	}
	var rec breaker.PairRecord
	if err := json.Unmarshal(resp.GetRecord(), &rec); err != nil {
		w.errs = append(w.errs, fmt.Sprintf("final record: %v", err))
		return
	}
	w.final = &rec
	// Let the watch see the final record.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if w.watchedMax() >= rec.Generation {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watchedRecords decodes the records the watch delivered, per segment.
func (w *breakerWorkload) watchedRecords() ([][]breaker.PairRecord, []string) {
	var out [][]breaker.PairRecord
	var errs []string
	for _, seg := range w.watch.snapshot() {
		var recs []breaker.PairRecord
		for _, ev := range seg.Events {
			if ev.GetPath() != "/colony/breakers/"+rbCaller+"/"+w.callee || ev.GetType() == colonyv1.EventType_EVENT_TYPE_DELETED {
				continue
			}
			var rec breaker.PairRecord
			if err := json.Unmarshal(ev.GetData(), &rec); err != nil {
				errs = append(errs, fmt.Sprintf("watched record at zxid %d: %v", ev.GetZxid(), err))
				continue
			}
			recs = append(recs, rec)
		}
		out = append(out, recs)
	}
	return out, errs
}

func (w *breakerWorkload) watchedMax() uint64 {
	segs, _ := w.watchedRecords()
	var m uint64
	for _, s := range segs {
		for _, r := range s {
			m = max(m, r.Generation)
		}
	}
	return m
}

func (w *breakerWorkload) check(r *run) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.setup != nil {
		r.fail("breakers %s: setup: %v", w.callee, w.setup)
		return
	}
	for _, e := range w.errs {
		r.fail("breakers %s: %s", w.callee, e)
	}
	var maxGen uint64
	var lastAck *breakerAck
	for i := range w.acks {
		a := &w.acks[i]
		if a.Op == "clear-noop" {
			lastAck = a
			continue
		}
		if a.Generation < maxGen {
			r.fail("breakers %s: %s answered generation %d after generation %d had been answered: a committed transition was lost", w.callee, a.Op, a.Generation, maxGen)
		}
		maxGen = max(maxGen, a.Generation)
		lastAck = a
	}
	segs, errs := w.watchedRecords()
	for _, e := range errs {
		r.fail("breakers %s: %s", w.callee, e)
	}
	seen := map[uint64]bool{}
	for si, s := range segs {
		var last uint64
		for _, rec := range s {
			if rec.Generation < last {
				r.fail("breakers %s: watch segment %d: generation %d after %d", w.callee, si, rec.Generation, last)
			}
			last = rec.Generation
			seen[rec.Generation] = true
		}
	}
	if len(segs) == 1 {
		for _, a := range w.acks {
			if a.Op != "clear-noop" && !seen[a.Generation] {
				r.fail("breakers %s: acknowledged %s at generation %d is not in the watch of /colony/breakers", w.callee, a.Op, a.Generation)
			}
		}
	}
	if w.final != nil {
		if w.final.Generation < maxGen {
			r.fail("breakers %s: final record at generation %d, below the acknowledged generation %d", w.callee, w.final.Generation, maxGen)
		}
		if w.lastOK && lastAck != nil {
			wantOverride := lastAck.Op != "clear" && lastAck.Op != "clear-noop"
			if (w.final.Override != nil) != wantOverride || wantOverride && string(w.final.Override.Mode) != lastAck.Op {
				r.fail("breakers %s: the last acknowledged operation was %s, but the final record has override %+v", w.callee, lastAck.Op, w.final.Override)
			}
		}
	}
	r.t.Logf("breakers %s: %d answered overrides, %d without an answer, generation up to %d, %d watch segments", w.callee, len(w.acks), w.unknown, maxGen, len(segs))
}

// overrideModes maps the workloads' ops to SetOverride's modes.
var overrideModes = map[string]colonyv1.OverrideMode{
	"force-open":   colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN,
	"force-closed": colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_CLOSED,
	"shadow":       colonyv1.OverrideMode_OVERRIDE_MODE_SHADOW,
}

// committedRecords decodes every record of the workload's pair its watch
// delivered: generation -> enforced state. complete says the watch never
// resynced (it started before the workload's first override), so it holds
// every record committed until the end of the run.
func (w *breakerWorkload) committedRecords() (map[uint64]breaker.State, bool) {
	out := map[uint64]breaker.State{}
	segs, _ := w.watchedRecords()
	for _, recs := range segs {
		for _, rec := range recs {
			out[rec.Generation] = rec.State
		}
	}
	return out, len(segs) == 1 && w.watch.snapshot()[0].Resync == ""
}
