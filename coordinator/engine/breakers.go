package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"reflect"
	"sort"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/ztree"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// The engine's side of the Breakers API's calls, run on the leader. The
// caller fills in the response headers.

// List summarises the pairs, sorted by caller then callee; an empty caller
// or callee matches every one.
func (e *Engine) List(caller, callee string, now time.Time) []*colonyv1.BreakerSummary {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*colonyv1.BreakerSummary
	for k, p := range e.pairs {
		if caller != "" && k.caller != caller || callee != "" && k.callee != callee {
			continue
		}
		ev := p.b.Evidence(now)
		sum := &colonyv1.BreakerSummary{
			Caller: k.caller, Callee: k.callee,
			State: p.rec.State.String(), Generation: p.rec.Generation, SinceMs: p.rec.Since.UnixMilli(),
			FailureRate: ev.FailureRate, WindowCalls: ev.Calls,
			FailingInstances: int32(ev.FailingInstances), ReportingInstances: int32(ev.ReportingInstances),
			SlowCalls: ev.Slow, RejectedCalls: p.rejected.sum(now),
		}
		setLatency(sum, ev.Latency)
		if !ev.WindowStart.IsZero() && ev.Calls+ev.Rejected+ev.Excluded > 0 {
			sum.WindowStartMs = ev.WindowStart.UnixMilli()
		}
		if p.rec.Override != nil {
			sum.Override = string(p.rec.Override.Mode)
		}
		if p.rec.Shadow != nil {
			sum.ShadowState = p.rec.Shadow.State.String()
		}
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Caller != out[j].Caller {
			return out[i].Caller < out[j].Caller
		}
		return out[i].Callee < out[j].Callee
	})
	return out
}

// minP999Samples is the fewest latency samples a p99.9 is reported from:
// below it, the 99.9th percentile is just the slowest call.
const minP999Samples = 1000

// setLatency fills a summary's latency fields from the window's histogram,
// in BreakerSummary's convention: each percentile is its bucket's upper
// bound in milliseconds, -1 past the last bound, 0 without samples.
func setLatency(sum *colonyv1.BreakerSummary, l breaker.Latency) {
	sum.LatencySamples = l.Total()
	if sum.LatencySamples == 0 {
		return
	}
	sum.Latency = l.Slice()
	ms := func(q float64) int64 {
		d, ok := l.Quantile(q)
		switch {
		case !ok:
			return 0
		case d == breaker.LatencyOverflow:
			return -1
		}
		return d.Milliseconds()
	}
	sum.LatencyP50Ms, sum.LatencyP99Ms = ms(0.5), ms(0.99)
	if sum.LatencySamples >= minP999Samples {
		sum.LatencyP999Ms = ms(0.999)
	}
}

// Get returns a pair's record, policy, live evidence and newest limit
// history entries.
//
// The record is the engine's, which may hold a decision not yet through
// the log, and the history is the tree's: Get first writes what the pair
// has pending (as the engine's next step would), so a record shown OPEN
// has its transition in the history. Should that write fail (the term is
// ending), the answer is the engine's record and the tree's history.
func (e *Engine) Get(ctx context.Context, caller, callee string, limit int, now time.Time) (*colonyv1.GetBreakerResponse, error) {
	k := pairKey{caller, callee}
	e.mu.Lock()
	p, err := e.getPair(k, now, false)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := e.flush(ctx, p); err != nil && ctx.Err() == nil {
		e.log.Warn("writing breaker record before a read failed; the history may lag the record", "pair", k, "err", err)
	}
	e.mu.Lock()
	rec := p.rec.Clone()
	pol := p.b.Policy()
	_, pv := e.policyFor(k) // the version pol comes from: rec's can be older
	ev := p.b.Evidence(now)
	e.mu.Unlock()
	resp := &colonyv1.GetBreakerResponse{PolicyVersion: &pv}
	var errs [3]error
	resp.Record, errs[0] = json.Marshal(rec)
	resp.Policy, errs[1] = json.Marshal(pol)
	resp.Live, errs[2] = json.Marshal(ev)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	v := e.host.View()
	dir := contract.HistoryDir(k.caller, k.callee)
	names, _, _ := v.Children(dir)
	sort.Strings(names)
	for _, n := range names[max(0, len(names)-limit):] {
		if data, _, err := v.Get(path.Join(dir, n)); err == nil {
			resp.History = append(resp.History, data)
		}
	}
	return resp, nil
}

// SetOverride puts o on the pair (creating it, within the override
// reserve) and returns the record once written. The expiry is recomputed
// from ttl (0: until cleared) on the leader's clock.
func (e *Engine) SetOverride(ctx context.Context, caller, callee string, o breaker.Override, ttl time.Duration) (*colonyv1.OverrideResponse, error) {
	return e.override(ctx, pairKey{caller, callee}, &o, ttl, "", "")
}

// ClearOverride ends the pair's override, recording who and why, and
// returns the record once written.
func (e *Engine) ClearOverride(ctx context.Context, caller, callee, by, reason string) (*colonyv1.OverrideResponse, error) {
	return e.override(ctx, pairKey{caller, callee}, nil, 0, by, reason)
}

// override sets o on the pair (creating it), or clears its override when o is
// nil, and returns the record once written. The expiry is recomputed from
// ttl on the leader's clock.
func (e *Engine) override(ctx context.Context, k pairKey, o *breaker.Override, ttl time.Duration, by, reason string) (*colonyv1.OverrideResponse, error) {
	now := time.Now()
	e.mu.Lock()
	p, err := e.getPair(k, now, o != nil)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	if o != nil {
		o.At = now
		if ttl > 0 {
			o.Until = now.Add(ttl)
		}
		from := p.rec.State
		if e.setOverride(p, *o, now) {
			e.traceDecision(ctx, p, from, p.rec.State, p.rec.Cause, false, nil)
		}
	} else {
		if p.rec.Override == nil {
			err := noOverrideError(k, p.rec.Record, p.b.Policy())
			e.mu.Unlock()
			return nil, err
		}
		from := p.rec.State
		e.clearOverride(p, now, breaker.HistoryCleared, by, reason)
		e.traceDecision(ctx, p, from, p.rec.State, p.rec.Cause, false, nil)
	}
	e.mu.Unlock()
	if err := e.flush(ctx, p); err != nil {
		return nil, err
	}
	e.mu.Lock()
	rec := p.rec.Clone()
	e.mu.Unlock()
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return &colonyv1.OverrideResponse{Record: data}, nil
}

// Delete deletes a pair, its record and history, and returns the record as
// it was. Without force, a pair that is not CLOSED or has an override is
// refused (ErrProtected): deleting it would undo a decision.
func (e *Engine) Delete(ctx context.Context, caller, callee string, force bool, by, reason string) (*breaker.PairRecord, error) {
	k := pairKey{caller, callee}
	return e.deletePair(ctx, k, func(p *pair) error {
		if force {
			return nil
		}
		return deleteRefusal(k, p.rec)
	}, "deleted", by, reason)
}

// deleteRefusal is DeleteBreaker's answer, without force, for a pair whose
// deletion would undo a decision: OPEN or HALF_OPEN protects the callee (a
// gobreaker or Envoy user expects a tripped breaker to stay tripped until it
// recovers, not to vanish), an override is an operator's. nil when the pair
// is CLOSED with no override: deleting it loses nothing a report would not
// recreate.
func deleteRefusal(k pairKey, rec breaker.PairRecord) error {
	var why string
	switch {
	case rec.Override != nil:
		why = fmt.Sprintf("it has a %s override (by %s: %q); clear it first, or", rec.Override.Mode, rec.Override.By, rec.Override.Reason)
	case rec.State != breaker.Closed:
		why = fmt.Sprintf("it is %v, protecting %s: deleting it lets every caller call again at once; wait until it closes, or", rec.State, k.callee)
	default:
		return nil
	}
	return newErr(ErrProtected, "pair %s not deleted: %s delete with force (colony breaker rm --force)", k, why)
}

// noOverrideError is ClearOverride's answer for a pair without an override:
// what the pair will do by itself, and how to force it now. Clearing does
// not reset a breaker the engine decided on: resilience4j's reset() and
// gobreaker's new breaker are an application's own choice, while here other
// callers' protection depends on the pair, so closing it takes an explicit
// override (force-close, then clear).
func noOverrideError(k pairKey, rec breaker.Record, pol breaker.Policy) error {
	var what string
	switch rec.State {
	case breaker.HalfOpen:
		what = fmt.Sprintf("it is HALF_OPEN and leaves by itself: CLOSED after %d probe successes, OPEN again on a probe failure or, at the latest, at %s (halfOpenMaxWait %v after it half-opened)",
			pol.SuccessesToClose, rec.Since.Add(pol.HalfOpenBound()).Format(time.RFC3339), pol.HalfOpenBound())
	case breaker.Open:
		what = fmt.Sprintf("it is OPEN until %s, then HALF_OPEN", rec.OpenUntil.Format(time.RFC3339))
	default:
		return newErr(ErrNoOverride, "pair %s has no override to clear (it is %v)", k, rec.State)
	}
	return newErr(ErrNoOverride,
		"pair %s has no override to clear: %s; to close it now, force-close it (colony breaker force-close %s %s --reason ...), then clear",
		k, what, k.caller, k.callee)
}

// DryRun returns what ApplyPolicies would apply to the tree v: each set as
// stored, and whether it changes the stored one.
func DryRun(v *ztree.View, sets []breaker.PolicySet) ([]*colonyv1.AppliedPolicy, error) {
	var out []*colonyv1.AppliedPolicy
	for _, ps := range sets {
		data, err := json.Marshal(ps)
		if err != nil {
			return nil, err
		}
		cur, _, _ := v.Get(contract.PolicyPath(ps.Callee))
		out = append(out, &colonyv1.AppliedPolicy{Callee: ps.Callee, PolicySet: data, Changed: !samePolicies(cur, ps)})
	}
	return out, nil
}

// samePolicies reports whether the stored policy set cur holds the same
// policies as ps (who applied it and when do not count).
func samePolicies(cur []byte, ps breaker.PolicySet) bool {
	if cur == nil {
		return false
	}
	var old breaker.PolicySet
	if err := json.Unmarshal(cur, &old); err != nil {
		return false
	}
	return reflect.DeepEqual(old.Policy, ps.Policy) && reflect.DeepEqual(old.Callers, ps.Callers)
}

// ApplyPolicies writes the changed policy sets (ResolvePolicies' output) in
// one transaction and applies them to the pairs they govern.
func (e *Engine) ApplyPolicies(ctx context.Context, sets []breaker.PolicySet) (*colonyv1.ApplyPoliciesResponse, error) {
	e.createMu.Lock() // one policy write at a time: versions are read from the tree
	defer e.createMu.Unlock()
	v := e.host.View()
	resp := &colonyv1.ApplyPoliciesResponse{}
	var ops []*colonyv1.Op
	var changed []breaker.PolicySet
	created := 0
	for _, ps := range sets {
		data, err := json.Marshal(ps)
		if err != nil {
			return nil, err
		}
		p := contract.PolicyPath(ps.Callee)
		cur, st, err := v.Get(p)
		same := err == nil && samePolicies(cur, ps)
		resp.Applied = append(resp.Applied, &colonyv1.AppliedPolicy{Callee: ps.Callee, PolicySet: data, Changed: !same})
		switch {
		case same:
			continue
		case err == nil:
			ver := st.GetVersion()
			ops = append(ops, &colonyv1.Op{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{Path: p, Data: data, ExpectedVersion: &ver}}})
		default:
			ops = append(ops, createOp(p, data))
			created++
		}
		changed = append(changed, ps)
	}
	if len(ops) == 0 {
		return resp, nil
	}
	// Policies make callees known, which lets reports create pairs; their
	// number is bounded like the pairs' (the tree holds them all).
	e.mu.Lock()
	have := len(e.policies)
	e.mu.Unlock()
	if limit := e.maxPairs + e.overrideReserve; have+created > limit {
		return nil, newErr(ErrLimit, "policies: %d new callees with %d policies stored would exceed the limit of %d (MaxBreakerPairs plus its override reserve); delete unused ones (colony policy rm)",
			created, have, limit)
	}
	txn, err := e.propose(ctx, ops)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, ps := range changed {
		var ver int64
		switch r := txn.Results[i].Result.(type) {
		case *colonyv1.OpResult_Create:
			ver = r.Create.GetStat().GetVersion()
		case *colonyv1.OpResult_Set:
			ver = r.Set.GetStat().GetVersion()
		}
		e.policies[ps.Callee] = policyEntry{set: ps, version: ver}
		e.repolicy(ps.Callee, now)
	}
	return resp, nil
}

// repolicy gives the callee's pairs their current policy (under mu). The
// state and timers are kept; the new policy applies from the next decision.
func (e *Engine) repolicy(callee string, now time.Time) {
	for k, p := range e.pairs {
		if k.callee != callee {
			continue
		}
		pol, _ := e.policyFor(k)
		if reflect.DeepEqual(pol, p.b.Policy()) {
			continue
		}
		if err := p.b.SetPolicy(pol, now); err != nil {
			e.log.Error("applying policy to breaker failed", "pair", k, "err", err)
		}
	}
}

// DeletePolicy deletes the callee's policy node; its pairs take the
// default policy.
func (e *Engine) DeletePolicy(ctx context.Context, callee string) error {
	e.createMu.Lock()
	defer e.createMu.Unlock()
	p := contract.PolicyPath(callee)
	if _, _, err := e.host.View().Get(p); err != nil {
		return newErr(ErrNoPolicy, "callee %s has no policy (it uses the default)", callee)
	}
	if _, err := e.propose(ctx, []*colonyv1.Op{{Op: &colonyv1.Op_Delete{Delete: &colonyv1.DeleteRequest{Path: p}}}}); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.policies, callee)
	e.repolicy(callee, time.Now())
	return nil
}
