package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path"
	"slices"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/outcome"
	"github.com/colonymesh/colony/internal/ztree"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Engine limits: they bound the leader's memory and the size of one write
// whatever callers send.
// The pair table's limits and idle expiry are configuration (Config).
const (
	// Tick is how often the engine evaluates every pair (timers: open
	// deadlines, probe timeouts, override expiry, windows sliding).
	Tick             = 100 * time.Millisecond
	maxIdleDeletes   = 16 // idle pairs deleted per tick, so a mass expiry never stalls the loop
	maxPairInstances = 10000
	// HistoryKeep is the most history entries kept per pair.
	HistoryKeep = 200
)

// Engine is the leader's breaker engine for one leadership term: it holds a
// breaker.Breaker per pair in memory, feeds it the outcome reports that any
// node forwards here (soft state, never logged), evaluates the policies, and
// writes only changes (transitions, probe assignments, overrides) through the
// log. A new leader builds a new engine from the records in the tree: states,
// generations, open deadlines and probe assignments carry over; windows start
// fresh.
type Engine struct {
	host    Host
	limits  ztree.Limits
	log     *slog.Logger
	metrics *Metrics
	tracer  trace.Tracer

	// mu guards everything below. Breaker calls are cheap (tens of ns);
	// proposals are made without it.
	mu       sync.Mutex
	pairs    map[pairKey]*pair
	byCaller map[string]int         // pairs per caller service
	policies map[string]policyEntry // by callee
	rng      *rand.Rand

	maxPairs, perCaller, overrideReserve int
	idle                                 time.Duration

	kick chan struct{} // reports arrived: evaluate soon

	createMu sync.Mutex // serialises the creation of pair records (shared parents)
}

type pairKey struct{ caller, callee string }

func (k pairKey) String() string { return k.caller + "->" + k.callee }

type policyEntry struct {
	set     breaker.PolicySet
	version int64
}

// pair is the engine's state for one caller -> callee pair.
type pair struct {
	key pairKey
	// b is the breaker the policy drives. Under ForceOpen, ForceClosed and
	// Disabled it is suspended (not fed, not evaluated); under Shadow it
	// runs and its record is only recorded.
	b *breaker.Breaker
	// rec is the record as it should be in the tree; version is the
	// znode's version as last written (-1: not created yet).
	rec     breaker.PairRecord
	version int64
	dirty   bool
	hist    []breaker.HistoryEntry // to append with the next write

	touched    bool                 // reports since the last evaluation
	reporters  map[string]time.Time // instance -> last report (leader time)
	lastReport time.Time            // this term's last report, or when the pair entered memory
	rejected   rejectedMeter        // calls its callers rejected lately, in any state (rejected.go)
	deleted    bool                 // removed from the engine: never written again

	// Trace contexts (tracing.go): reports ingested since the last
	// decision, and decisions not yet written.
	reports   reportRefs
	decisions []trace.SpanContext

	writeMu sync.Mutex // one write of this pair at a time
}

// New returns the engine of one leadership term, empty until Start loads
// it from host's tree.
func New(host Host, cfg Config) *Engine {
	cfg = cfg.withDefaults()
	return &Engine{
		host:     host,
		limits:   cfg.Limits,
		log:      cfg.Logger,
		metrics:  cfg.Metrics,
		tracer:   cfg.Tracer,
		pairs:    map[pairKey]*pair{},
		byCaller: map[string]int{},
		policies: map[string]policyEntry{},
		rng:      rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		kick:     make(chan struct{}, 1),

		maxPairs:        cfg.MaxPairs,
		perCaller:       cfg.MaxPairsPerCaller,
		overrideReserve: max(10, cfg.MaxPairs/100),
		idle:            cfg.IdleExpiry,
	}
}

func (e *Engine) breakerOpts() []breaker.Option {
	return []breaker.Option{breaker.WithRand(e.rng.Float64)} // called under mu
}

// policyFor returns the policy for a pair and the version of the policy
// node it came from (-1: the default).
func (e *Engine) policyFor(k pairKey) (breaker.Policy, int64) {
	if pe, ok := e.policies[k.callee]; ok {
		return pe.set.For(k.caller), pe.version
	}
	return breaker.DefaultPolicy(), -1
}

// Start creates the well-known parents and loads policies and records from
// the tree. The term's Noop is applied, so the tree holds every entry any
// earlier leader committed.
func (e *Engine) Start(ctx context.Context) error {
	var ops []*colonyv1.Op
	v := e.host.View()
	for _, p := range contract.WellKnownDirs {
		if _, _, err := v.Get(p); err != nil {
			ops = append(ops, createOp(p, nil))
		}
	}
	if len(ops) > 0 {
		if _, err := e.propose(ctx, ops); err != nil {
			return fmt.Errorf("creating %v: %w", ops, err)
		}
		v = e.host.View()
	}
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	callees, _, _ := v.Children(contract.PoliciesRoot)
	for _, callee := range callees {
		data, st, err := v.Get(contract.PolicyPath(callee))
		if err != nil {
			continue
		}
		var ps breaker.PolicySet
		if err := json.Unmarshal(data, &ps); err != nil || ps.Validate() != nil {
			e.log.Error("ignoring an invalid policy node; its pairs use the default policy", "callee", callee, "err", errors.Join(err, ps.Validate()))
			continue
		}
		e.policies[callee] = policyEntry{set: ps, version: st.GetVersion()}
	}
	callers, _, _ := v.Children(contract.BreakersRoot)
	for _, caller := range callers {
		callees, _, _ := v.Children(contract.CallerBreakers(caller))
		for _, callee := range callees {
			k := pairKey{caller, callee}
			data, st, err := v.Get(contract.BreakerPath(caller, callee))
			if err != nil {
				continue
			}
			p, err := e.restorePair(k, data, st.GetVersion(), now)
			if err != nil {
				e.log.Error("breaker record unreadable; restarting the pair CLOSED", "pair", k, "err", err)
			}
			e.pairs[k] = p
			e.byCaller[k.caller]++
		}
	}
	e.log.Info("breaker engine started", "pairs", len(e.pairs), "policies", len(e.policies))
	return nil
}

// restorePair rebuilds a pair from its record. A record it cannot use
// becomes a CLOSED pair with a higher generation, written at the next step.
func (e *Engine) restorePair(k pairKey, data []byte, version int64, now time.Time) (*pair, error) {
	p := &pair{key: k, version: version, reporters: map[string]time.Time{}, lastReport: now}
	pol, pv := e.policyFor(k)
	var rec breaker.PairRecord
	err := json.Unmarshal(data, &rec)
	if err == nil {
		rec.Caller, rec.Callee = k.caller, k.callee
		var base breaker.Record
		switch {
		case rec.Override == nil:
			base = rec.Record
		case rec.Override.Mode == breaker.Shadow && rec.Shadow != nil:
			base = *rec.Shadow
		default: // suspended: the breaker restarts when the override ends
			base = breaker.Record{State: breaker.Closed, Generation: rec.Generation, Since: rec.Since}
		}
		p.b, err = breaker.Restore(pol, base, now, e.breakerOpts()...)
		if err == nil {
			p.rec = rec
			return p, nil
		}
	}
	var gen uint64
	if rec.Generation > 0 {
		gen = rec.Generation + 1
	}
	p.b, _ = breaker.Restore(pol, breaker.Record{State: breaker.Closed, Generation: gen, Since: now}, now, e.breakerOpts()...)
	p.rec = breaker.PairRecord{Caller: k.caller, Callee: k.callee, Record: p.b.Snapshot(), Cause: "restored", PolicyVersion: pv}
	p.dirty = true
	return p, err
}

// newPair returns a CLOSED pair with no record yet (under mu).
func (e *Engine) newPair(k pairKey, now time.Time) *pair {
	pol, pv := e.policyFor(k)
	b, err := breaker.New(pol, now, e.breakerOpts()...)
	if err != nil { // stored policies are validated; the default is valid
		pol = breaker.DefaultPolicy()
		b, _ = breaker.New(pol, now, e.breakerOpts()...)
	}
	p := &pair{
		key: k, b: b, version: -1, dirty: true, reporters: map[string]time.Time{}, lastReport: now,
		rec: breaker.PairRecord{Caller: k.caller, Callee: k.callee, Record: b.Snapshot(), Cause: "created", PolicyVersion: pv},
	}
	e.pairs[k] = p
	e.byCaller[k.caller]++
	return p
}

// getPair returns the pair, creating it when create is set: for an
// operator's override, within MaxBreakerPairs plus the override reserve, so
// that a table reports filled still takes a force-open of a new pair.
func (e *Engine) getPair(k pairKey, now time.Time, create bool) (*pair, error) {
	if p, ok := e.pairs[k]; ok {
		return p, nil
	}
	if !create {
		return nil, newErr(ErrNoBreaker, "no breaker for %s: no caller has reported calls to it", k)
	}
	if limit := e.maxPairs + e.overrideReserve; len(e.pairs) >= limit {
		return nil, newErr(ErrLimit, "pair %s: the engine already tracks %d pairs, its limit (MaxBreakerPairs %d plus %d reserved for overrides)", k, len(e.pairs), e.maxPairs, e.overrideReserve)
	}
	return e.newPair(k, now), nil
}

// mode returns the pair's override mode, "" without one.
func (p *pair) mode() breaker.OverrideMode {
	if p.rec.Override == nil {
		return ""
	}
	return p.rec.Override.Mode
}

// suspended reports whether the breaker is neither fed nor evaluated.
func (p *pair) suspended() bool {
	m := p.mode()
	return m == breaker.ForceOpen || m == breaker.ForceClosed || m == breaker.Disabled
}

// Report feeds validated reports into their pairs at leader time now. It
// fails as a whole (nothing counted) when a report would exceed a limit.
// ctx carries the report's span (tracing.go).
func (e *Engine) Report(ctx context.Context, now time.Time, reports []*colonyv1.OutcomeReport) (err error) {
	span := e.traceIngest(ctx, reports)
	defer func() { endSpan(span, err, "reports rejected") }()
	e.mu.Lock()
	defer e.mu.Unlock()
	newPairs := 0
	var fresh map[pairKey]bool
	var newByCaller map[string]int
	for i, r := range reports {
		k := pairKey{r.Caller, r.Callee}
		p, ok := e.pairs[k]
		if !ok {
			if fresh[k] {
				continue
			}
			if fresh == nil {
				fresh, newByCaller = map[pairKey]bool{}, map[string]int{}
			}
			fresh[k] = true
			newPairs++
			newByCaller[k.caller]++
			if n := e.byCaller[k.caller] + newByCaller[k.caller]; n > e.perCaller {
				return newErr(ErrLimit, "reports[%d]: pair %s: caller %q already has %d pairs, its share of the table (MaxBreakerPairsPerCaller %d); idle pairs expire, or colony breaker rm frees one",
					i, k, k.caller, n-1, e.perCaller)
			}
			if len(e.pairs)+newPairs > e.maxPairs {
				return newErr(ErrLimit, "reports[%d]: pair %s would exceed the engine's limit of %d pairs (MaxBreakerPairs); idle pairs expire, or colony breaker rm frees one", i, k, e.maxPairs)
			}
			continue
		}
		if _, seen := p.reporters[r.Instance]; !seen && len(p.reporters) >= maxPairInstances {
			p.sweepReporters(now)
			if len(p.reporters) >= maxPairInstances {
				return newErr(ErrLimit, "reports[%d]: pair %s already has %d reporting instances, its limit", i, k, maxPairInstances)
			}
		}
	}
	for _, r := range reports {
		k := pairKey{r.Caller, r.Callee}
		p, err := e.getPair(k, now, true)
		if err != nil {
			return err // cannot happen: checked above
		}
		p.reporters[r.Instance] = now
		p.lastReport = now
		p.touched = true
		p.reports.add(span.SpanContext())
		counts, _ := outcome.FromProto(r.Counts) // validated by the receiving node
		e.metrics.countCalls(k, counts)
		p.rejected.add(now, counts.Rejected)
		if p.suspended() {
			continue
		}
		// Validated by the receiving node; Report rechecks and would
		// reject without counting anything.
		if err := p.b.Report(now, r.Instance, counts); err != nil {
			e.log.Warn("breaker report rejected", "pair", k, "instance", r.Instance, "err", err)
		}
	}
	select {
	case e.kick <- struct{}{}:
	default:
	}
	return nil
}

// sweepReporters forgets instances silent for longer than the window.
func (p *pair) sweepReporters(now time.Time) {
	keep := max(p.b.Policy().Window, p.b.Policy().ProbeTimeout)
	for id, t := range p.reporters {
		if now.Sub(t) > keep {
			delete(p.reporters, id)
		}
	}
}

// fleets caches, for one step, each caller service's registered instances
// (the children of /colony/services/<caller>).
type fleets struct {
	v    *ztree.View
	byID map[string][]string
}

func (f *fleets) of(caller string) []string {
	if ids, ok := f.byID[caller]; ok {
		return ids
	}
	ids, _, _ := f.v.Children(contract.ServiceDir(caller))
	if f.byID == nil {
		f.byID = map[string][]string{}
	}
	f.byID[caller] = ids
	return ids
}

// live returns the caller instances that may hold probe permits: the ones
// registered under /colony/services/<caller> when the caller registers its
// instances (sidecars do: the registration is authoritative, and a holder
// whose node is gone loses its permits), else those that reported within the
// window (callers that report without registering).
func (e *Engine) live(f *fleets, p *pair, now time.Time) []string {
	if registered := f.of(p.key.caller); len(registered) > 0 {
		return registered // sorted by the tree
	}
	var out []string
	keep := max(p.b.Policy().Window, p.b.Policy().ProbeTimeout)
	for id, t := range p.reporters {
		if now.Sub(t) <= keep {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Run is the engine's loop: it evaluates pairs when reports arrive and on a
// tick (timers: open deadlines, probe timeouts, override expiry, windows
// sliding), and writes what changed.
func (e *Engine) Run(ctx context.Context) {
	tick := time.NewTicker(Tick)
	defer tick.Stop()
	for {
		all := false
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		case <-tick.C:
			all = true
		}
		e.step(ctx, time.Now(), all)
	}
}

// step evaluates the touched pairs (all of them when all is set) at now and
// writes the changed ones, concurrently so that they share group commits.
func (e *Engine) step(ctx context.Context, now time.Time, all bool) {
	f := &fleets{v: e.host.View()}
	var dirty, idle []*pair
	e.mu.Lock()
	for _, p := range e.pairs {
		if all || p.touched {
			e.evaluate(f, p, now)
		}
		if p.dirty {
			dirty = append(dirty, p)
		} else if all && len(idle) < maxIdleDeletes && e.isIdle(p, now) {
			idle = append(idle, p)
		}
	}
	e.mu.Unlock()
	defer func() {
		for _, p := range idle {
			_, err := e.deletePair(ctx, p.key, func(p *pair) error {
				if !e.isIdle(p, time.Now()) {
					return errNotIdle
				}
				return nil
			}, "idle", "colony", fmt.Sprintf("CLOSED, no override, no report for %v", e.idle))
			if err != nil && !errors.Is(err, errNotIdle) && ctx.Err() == nil {
				e.log.Warn("deleting idle breaker pair failed; will retry", "pair", p.key, "err", err)
			}
		}
	}()
	var wg sync.WaitGroup
	for _, p := range dirty {
		wg.Go(func() {
			if err := e.flush(ctx, p); err != nil && ctx.Err() == nil {
				e.log.Warn("writing breaker record failed; will retry", "pair", p.key, "err", err)
			}
		})
	}
	wg.Wait()
}

// evaluate runs the pair's timers and policy at now (under mu).
func (e *Engine) evaluate(f *fleets, p *pair, now time.Time) {
	p.touched = false
	if o := p.rec.Override; o != nil && !o.Until.IsZero() && !now.Before(o.Until) {
		from := p.rec.State
		e.clearOverride(p, now, breaker.HistoryExpired, "colony", "override expired")
		e.traceDecision(context.Background(), p, from, p.rec.State, string(breaker.HistoryExpired), false, nil)
		return
	}
	if p.suspended() {
		return
	}
	shadow := p.mode() == breaker.Shadow
	p.b.SetFleet(len(f.of(p.key.caller)))
	if t, ok := p.b.Evaluate(now); ok {
		if t.To == breaker.HalfOpen {
			p.b.AssignProbes(now, e.live(f, p, now))
		}
		snap := p.b.Snapshot()
		ev := t.Evidence
		p.hist = append(p.hist, breaker.HistoryEntry{
			At: now, Kind: breaker.HistoryTransition, From: t.From, To: t.To, Generation: t.Generation,
			Cause: string(t.Evidence.Condition), Shadow: shadow, OpenUntil: t.OpenUntil, Probes: snap.Probes, Evidence: &ev,
		})
		e.setFromBreaker(p, string(t.Evidence.Condition))
		e.traceDecision(context.Background(), p, t.From, t.To, string(t.Evidence.Condition), shadow, &ev)
		e.log.Info("breaker transition", "pair", p.key, "transition", t.String(), "shadow", shadow)
		return
	}
	if p.b.State() == breaker.HalfOpen {
		// A reassignment is written (sidecars enforce the permits) but is
		// no history entry: callers that report nothing make permits go
		// round every ProbeTimeout, and two entries per cycle pushed the
		// trip out of the 200 kept in minutes (issue 13 item 8). The
		// HALF_OPEN entry has the first assignment, the record the current.
		if _, changed := p.b.ReassignProbes(now, e.live(f, p, now)); changed {
			e.setFromBreaker(p, "")
			e.traceDecision(context.Background(), p, breaker.HalfOpen, breaker.HalfOpen, string(breaker.HistoryProbes), shadow, nil)
		}
	}
}

// setFromBreaker copies the breaker's snapshot into the record: as the
// enforced state, or in shadow mode as the shadow (under mu).
func (e *Engine) setFromBreaker(p *pair, cause string) {
	snap := p.b.Snapshot()
	_, pv := e.policyFor(p.key)
	p.rec.PolicyVersion = pv
	if p.mode() == breaker.Shadow {
		p.rec.Shadow = &snap
	} else {
		p.rec.Record = snap
		if cause != "" {
			p.rec.Cause = cause
		}
	}
	p.dirty = true
}

// nextGeneration is the generation of a change callers must apply: above
// both the enforced record's and the breaker's own (which runs ahead in
// shadow mode).
func (p *pair) nextGeneration() uint64 {
	return max(p.rec.Generation, p.b.Snapshot().Generation) + 1
}

// setOverride puts o on the pair (under mu). It reports whether anything
// changed.
func (e *Engine) setOverride(p *pair, o breaker.Override, now time.Time) bool {
	if cur := p.rec.Override; cur != nil && cur.Mode == o.Mode && cur.Reason == o.Reason && cur.By == o.By && cur.Until.Equal(o.Until) {
		return false
	}
	from := p.rec.State
	sameMode := p.rec.Override != nil && p.rec.Override.Mode == o.Mode
	p.rec.Override = &o
	p.rec.Cause = "override"
	if !sameMode {
		gen := p.nextGeneration()
		enforced := breaker.Record{State: o.Mode.Enforced(), Generation: gen, Since: now, OpenCount: p.rec.OpenCount}
		if o.Mode == breaker.ForceOpen {
			enforced.OpenUntil = o.Until
		}
		p.rec.Record = enforced
		p.rec.Shadow = nil
		if o.Mode == breaker.Shadow {
			// The shadow breaker starts afresh, CLOSED, from this
			// generation: it decides as if it had just been enabled.
			pol, _ := e.policyFor(p.key)
			b, err := breaker.Restore(pol, breaker.Record{State: breaker.Closed, Generation: gen, Since: now}, now, e.breakerOpts()...)
			if err == nil {
				p.b = b
				snap := b.Snapshot()
				p.rec.Shadow = &snap
			}
		}
	}
	oc := o
	p.hist = append(p.hist, breaker.HistoryEntry{
		At: now, Kind: breaker.HistoryOverride, From: from, To: p.rec.State, Generation: p.rec.Generation,
		Cause: string(o.Mode), Override: &oc, By: o.By, Reason: o.Reason,
	})
	p.dirty = true
	return true
}

// clearOverride ends the pair's override (under mu): the breaker starts
// again CLOSED with a fresh window and a new generation.
func (e *Engine) clearOverride(p *pair, now time.Time, kind breaker.HistoryKind, by, reason string) {
	o := p.rec.Override
	from := p.rec.State
	pol, pv := e.policyFor(p.key)
	b, err := breaker.Restore(pol, breaker.Record{State: breaker.Closed, Generation: p.nextGeneration(), Since: now}, now, e.breakerOpts()...)
	if err != nil {
		e.log.Error("restarting breaker after override failed", "pair", p.key, "err", err)
		return
	}
	p.b = b
	p.rec.Record = b.Snapshot()
	p.rec.Override, p.rec.Shadow = nil, nil
	p.rec.Cause = string(kind)
	p.rec.PolicyVersion = pv
	p.hist = append(p.hist, breaker.HistoryEntry{
		At: now, Kind: kind, From: from, To: breaker.Closed, Generation: p.rec.Generation,
		Override: o, By: by, Reason: reason,
	})
	p.dirty = true
}

// flush writes the pair's record and pending history if they changed, and
// returns once the write is applied on this node (the leader).
func (e *Engine) flush(ctx context.Context, p *pair) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	e.mu.Lock()
	if !p.dirty || p.deleted {
		e.mu.Unlock()
		return nil
	}
	rec := p.rec.Clone()
	hist := p.hist
	version := p.version
	decisions := p.decisions
	if sc := p.reports.newest(); len(decisions) == 0 && sc.IsValid() {
		// No decision: the record of a pair a report created.
		decisions = []trace.SpanContext{sc}
	}
	decisions = slices.Clone(decisions)
	p.hist, p.dirty, p.decisions = nil, false, nil
	e.mu.Unlock()

	err := e.write(ctx, p.key, rec, hist, version, decisions)

	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		p.dirty = true
		p.hist = append(hist, p.hist...)
		for _, sc := range p.decisions {
			decisions = appendRef(decisions, sc)
		}
		p.decisions = decisions
		return err
	}
	return nil
}

// write commits one pair's record (created, or set at the expected version)
// with its history entries, trimming the history to HistoryKeep, in one
// transaction. It updates p.version (the caller holds p.writeMu). The
// write is traced as a SpanApply of decisions, whose context the record
// stores.
func (e *Engine) write(ctx context.Context, k pairKey, rec breaker.PairRecord, hist []breaker.HistoryEntry, version int64, decisions []trace.SpanContext) (err error) {
	start := time.Now()
	ctx, span := e.traceApply(ctx, k, &rec, decisions)
	var index int64 = -1
	defer func() {
		endApply(span, index, err)
		if err == nil {
			e.metrics.observeWrite(time.Since(start))
		}
	}()
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding record: %w", err)
	}
	recPath := contract.BreakerPath(k.caller, k.callee)
	histDir := contract.HistoryDir(k.caller, k.callee)
	var ops []*colonyv1.Op
	if version < 0 {
		e.createMu.Lock()
		defer e.createMu.Unlock()
		v := e.host.View()
		for _, dir := range []string{contract.CallerBreakers(k.caller), path.Join(contract.HistoryRoot, k.caller), histDir} {
			if _, _, err := v.Get(dir); err != nil {
				ops = append(ops, createOp(dir, nil))
			}
		}
		ops = append(ops, createOp(recPath, data))
	} else {
		v := e.host.View()
		ops = append(ops, &colonyv1.Op{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{Path: recPath, Data: data, ExpectedVersion: &version}}})
		// Keep the newest HistoryKeep entries, counting the new ones.
		if names, _, err := v.Children(histDir); err == nil {
			get := func(n string) []byte {
				data, _, _ := v.Get(path.Join(histDir, n))
				return data
			}
			for _, n := range historyToTrim(names, hist, get) {
				ops = append(ops, &colonyv1.Op{Op: &colonyv1.Op_Delete{Delete: &colonyv1.DeleteRequest{Path: path.Join(histDir, n)}}})
			}
		}
	}
	recOp := len(ops) - 1
	if version >= 0 {
		recOp = 0
	}
	for _, h := range hist[max(0, len(hist)-HistoryKeep):] {
		hd, err := json.Marshal(h)
		if err != nil {
			return fmt.Errorf("encoding history entry: %w", err)
		}
		op := createOp(histDir+"/h-", hd)
		op.GetCreate().Sequential = true
		ops = append(ops, op)
	}
	txn, err := e.propose(ctx, ops)
	if err != nil {
		return err
	}
	var st *colonyv1.Stat
	switch r := txn.Results[recOp].Result.(type) {
	case *colonyv1.OpResult_Create:
		st = r.Create.GetStat()
	case *colonyv1.OpResult_Set:
		st = r.Set.GetStat()
	}
	index = int64(st.GetMzxid())
	e.mu.Lock()
	if p := e.pairs[k]; p != nil {
		p.version = st.GetVersion()
		p.rec.Traceparent = rec.Traceparent
	}
	e.mu.Unlock()
	return nil
}

// errNotIdle: an idle pair got a report (or a change) before its deletion.
var errNotIdle = errors.New("breaker pair is no longer idle")

// isIdle reports whether the pair may expire at now: CLOSED (enforced and
// in its breaker), no override, written and unchanged, and no report in
// this term for the idle expiry (under mu). The idle clock starts at the
// later of the last report, the pair's entering memory (this term's start
// for restored pairs) and its last transition.
func (e *Engine) isIdle(p *pair, now time.Time) bool {
	if p.deleted || p.dirty || p.version < 0 || p.rec.Override != nil ||
		p.rec.State != breaker.Closed || p.b.State() != breaker.Closed {
		return false
	}
	last := p.lastReport
	if p.rec.Since.After(last) {
		last = p.rec.Since
	}
	return now.Sub(last) >= e.idle
}

// deletePair removes a pair from the engine and its record and history from
// the tree, through the log, when check (called under mu) allows it. It
// returns the record as it was. Reports that arrive meanwhile create a new
// pair, whose record is created only after this deletion (createMu). On a
// failed write the pair is put back, so memory and tree agree.
func (e *Engine) deletePair(ctx context.Context, k pairKey, check func(*pair) error, cause, by, reason string) (*breaker.PairRecord, error) {
	e.mu.Lock()
	p := e.pairs[k]
	e.mu.Unlock()
	if p == nil {
		return nil, newErr(ErrNoBreaker, "no breaker for %s", k)
	}
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	e.createMu.Lock()
	defer e.createMu.Unlock()
	e.mu.Lock()
	if e.pairs[k] != p {
		e.mu.Unlock()
		return nil, newErr(ErrNoBreaker, "no breaker for %s", k)
	}
	if err := check(p); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	rec := p.rec.Clone()
	version := p.version
	p.deleted = true
	delete(e.pairs, k)
	e.byCaller[k.caller]--
	if e.byCaller[k.caller] <= 0 {
		delete(e.byCaller, k.caller)
	}
	e.mu.Unlock()

	err := e.deleteRecords(ctx, k, version)
	if err != nil {
		e.mu.Lock()
		if e.pairs[k] == nil {
			p.deleted = false
			e.pairs[k] = p
			e.byCaller[k.caller]++
		}
		e.mu.Unlock()
		return nil, err
	}
	e.metrics.forgetPair(k)
	e.log.Info("breaker pair deleted", "pair", k, "cause", cause, "state", rec.State, "generation", rec.Generation, "by", by, "reason", reason)
	return &rec, nil
}

// deleteRecords deletes a pair's record (at its expected version; none
// when it was never written) and history, and the caller's directories when
// this was their last pair (the caller holds createMu, under which every
// record and directory is created).
func (e *Engine) deleteRecords(ctx context.Context, k pairKey, version int64) error {
	v := e.host.View()
	del := func(p string, ver *int64) *colonyv1.Op {
		return &colonyv1.Op{Op: &colonyv1.Op_Delete{Delete: &colonyv1.DeleteRequest{Path: p, ExpectedVersion: ver}}}
	}
	histDir := contract.HistoryDir(k.caller, k.callee)
	names, _, _ := v.Children(histDir)
	// History first, in transactions that fit MaxOps: they only ever grow
	// through this pair's writes, which writeMu holds off.
	chunk := max(1, min(HistoryKeep, e.limits.MaxOps-4))
	for len(names) > chunk {
		ops := make([]*colonyv1.Op, 0, chunk)
		for _, n := range names[:chunk] {
			ops = append(ops, del(path.Join(histDir, n), nil))
		}
		if _, err := e.propose(ctx, ops); err != nil {
			return fmt.Errorf("deleting the history of %s: %w", k, err)
		}
		names = names[chunk:]
	}
	var ops []*colonyv1.Op
	for _, n := range names {
		ops = append(ops, del(path.Join(histDir, n), nil))
	}
	if _, _, err := v.Get(histDir); err == nil {
		ops = append(ops, del(histDir, nil))
	}
	if version >= 0 {
		ops = append(ops, del(contract.BreakerPath(k.caller, k.callee), &version))
	}
	for _, root := range []string{contract.BreakersRoot, contract.HistoryRoot} {
		dir := path.Join(root, k.caller)
		if kids, _, err := v.Children(dir); err == nil && len(kids) == 1 && kids[0] == k.callee {
			ops = append(ops, del(dir, nil))
		}
	}
	if len(ops) == 0 {
		return nil
	}
	_, err := e.propose(ctx, ops)
	return err
}

// historyToTrim returns the stored history entries (names, h-<seq>) to
// delete so that, with the new entries added, HistoryKeep remain: the
// oldest, except the newest trip (a CLOSED -> OPEN transition), which
// started the episode the pair may still be in. OPEN/HALF_OPEN cycles
// (re-opens, half-open timeouts) add entries for as long as the callee stays
// down, and must not push out why it went down. get reads a stored entry.
func historyToTrim(names []string, added []breaker.HistoryEntry, get func(string) []byte) []string {
	drop := len(names) + len(added) - HistoryKeep
	if drop <= 0 {
		return nil
	}
	names = slices.Clone(names)
	sort.Strings(names) // sequence suffixes are zero-padded
	isTrip := func(kind breaker.HistoryKind, from, to breaker.State) bool {
		return kind == breaker.HistoryTransition && from == breaker.Closed && to == breaker.Open
	}
	protect := -1
	tripAdded := slices.ContainsFunc(added, func(h breaker.HistoryEntry) bool { return isTrip(h.Kind, h.From, h.To) })
	for i := len(names) - 1; i >= 0 && !tripAdded; i-- {
		var h struct {
			Kind     breaker.HistoryKind `json:"kind"`
			From, To breaker.State
		}
		if json.Unmarshal(get(names[i]), &h) == nil && isTrip(h.Kind, h.From, h.To) {
			protect = i
			break
		}
	}
	out := make([]string, 0, drop)
	for i, n := range names {
		if len(out) == drop {
			break
		}
		if i != protect {
			out = append(out, n)
		}
	}
	return out
}

// propose commits ops as one transaction through the host, the leader, and
// returns the result of a transaction that succeeded.
func (e *Engine) propose(ctx context.Context, ops []*colonyv1.Op) (*colonyv1.MultiResponse, error) {
	if err := ztree.ValidateOps(ops, e.limits); err != nil {
		return nil, err
	}
	res, err := e.host.Commit(ctx, ops)
	if err != nil {
		return nil, err
	}
	if re := res.GetError(); re != nil {
		return nil, ztree.FromOpError(re)
	}
	txn := res.GetTxn()
	if txn == nil || len(txn.Results) != len(ops) {
		return nil, fmt.Errorf("engine: malformed transaction result %v", res)
	}
	if !txn.Succeeded {
		return nil, fmt.Errorf("op %d: %w", txn.FailedOp, ztree.FromOpError(txn.Results[txn.FailedOp].GetError()))
	}
	return txn, nil
}

func createOp(p string, data []byte) *colonyv1.Op {
	return &colonyv1.Op{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: p, Data: data}}}
}
