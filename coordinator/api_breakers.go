package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/outcome"
	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/internal/wiretime"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// maxOverrideTTL bounds an override's expiry.
const maxOverrideTTL = 366 * 24 * time.Hour

// breakersAPI serves colony.v1.Breakers on every node. Reports are validated
// here and handed to the leader's engine (through the report batcher when
// another node leads); every other call runs on the leader, forwarded as is.
type breakersAPI struct {
	colonyv1.UnimplementedBreakersServer
	s *Server
}

// errEngineNotReady: this node leads but its engine has not loaded yet.
var errEngineNotReady = fmt.Errorf("%w (breaker engine starting)", errTermNotReady)

// leaderEngine returns this node's engine when it leads and the engine runs.
func (s *Server) leaderEngine() (*engine, bool) {
	lt := s.currentLeaderTerm()
	if lt == nil {
		return nil, false
	}
	return lt.engine.Load(), true
}

// onEngine runs local on this node's engine when it leads, and remote
// against the leader otherwise, retrying across leader changes.
func (s *Server) onEngine(ctx context.Context, local func(*engine) error, remote func(context.Context, string) error) error {
	return s.withLeader(ctx, func(ctx context.Context) error {
		if e, leading := s.leaderEngine(); leading {
			if e == nil {
				return errEngineNotReady
			}
			return local(e)
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		if addr == s.addr {
			return errEngineNotReady // elected, leader duties not started yet
		}
		return remote(ctx, addr)
	})
}

// forwardBreakers calls the leader's Breakers service and, for a write, waits
// until this node has applied it, so the caller's next read here sees it.
func forwardBreakers[Res interface {
	GetHeader() *colonyv1.ResponseHeader
}](s *Server, ctx context.Context, addr string, call func(colonyv1.BreakersClient) (Res, error)) (Res, error) {
	res, err := call(colonyv1.NewBreakersClient(s.peers.conn(addr)))
	if err != nil {
		return res, err
	}
	if z := res.GetHeader().GetZxid(); z > 0 {
		if err := s.fsm.waitApplied(ctx, z); err != nil {
			return res, err
		}
	}
	return res, nil
}

// validateReports checks a Report request as a whole against this node's
// tree: names, counts, sizes, and that each callee is known.
func (s *Server) validateReports(ctx context.Context, reports []*colonyv1.OutcomeReport) error {
	if len(reports) == 0 {
		return status.Error(codes.InvalidArgument, "reports: empty")
	}
	if len(reports) > contract.MaxOutcomesPerReport {
		return status.Errorf(codes.InvalidArgument, "reports: %d entries, the limit is %d per request", len(reports), contract.MaxOutcomesPerReport)
	}
	v := s.fsm.tree.View()
	known := map[string]bool{}
	for i, r := range reports {
		if err := breaker.ValidateServiceName(r.GetCaller()); err != nil {
			return status.Errorf(codes.InvalidArgument, "reports[%d].caller: %v", i, err)
		}
		if err := breaker.ValidateServiceName(r.GetCallee()); err != nil {
			return status.Errorf(codes.InvalidArgument, "reports[%d].callee: %v", i, err)
		}
		if err := breaker.ValidateInstanceID(r.GetInstance()); err != nil {
			return status.Errorf(codes.InvalidArgument, "reports[%d].instance: %v", i, err)
		}
		if r.GetCounts() == nil {
			return status.Errorf(codes.InvalidArgument, "reports[%d].counts: missing", i)
		}
		if err := outcome.FromProto(r.Counts).Validate(); err != nil {
			return status.Errorf(codes.InvalidArgument, "reports[%d].counts: %v", i, err)
		}
		k := r.Caller + "\x00" + r.Callee
		if _, ok := known[k]; !ok {
			ok, err := s.knownCallee(ctx, v, r.Caller, r.Callee)
			if err != nil {
				return err
			}
			known[k] = ok
		}
		if !known[k] {
			return status.Errorf(codes.NotFound, "reports[%d].callee: unknown callee %q: no policy at %s, no instance under %s and no breaker %s",
				i, r.Callee, contract.PolicyPath(r.Callee), contract.ServiceDir(r.Callee), contract.BreakerPath(r.Caller, r.Callee))
		}
	}
	return nil
}

// knownCallee is calleeKnown on this node's tree, and when that says no, on
// a linearizable view: a node that lags (it has just restarted, or was cut
// off) must not reject a callee whose policy was committed long ago. The
// second look costs a read index, only on the rare miss.
func (s *Server) knownCallee(ctx context.Context, v *ztree.View, caller, callee string) (bool, error) {
	if calleeKnown(v, caller, callee) {
		return true, nil
	}
	lv, err := s.view(ctx, contract.PoliciesRoot, colonyv1.Consistency_CONSISTENCY_LINEARIZABLE, 0)
	if err != nil {
		return false, toStatus(err)
	}
	return calleeKnown(lv, caller, callee), nil
}

// calleeKnown reports whether a pair may get a breaker: its callee has a
// policy or a registered instance, or the pair has a record already. This
// keeps a misspelt callee from silently creating a pair nobody enforces.
func calleeKnown(v interface {
	Get(string) ([]byte, *colonyv1.Stat, error)
	Children(string) ([]string, *colonyv1.Stat, error)
}, caller, callee string) bool {
	if _, _, err := v.Get(contract.PolicyPath(callee)); err == nil {
		return true
	}
	if _, _, err := v.Get(contract.BreakerPath(caller, callee)); err == nil {
		return true
	}
	kids, _, err := v.Children(contract.ServiceDir(callee))
	return err == nil && len(kids) > 0
}

func (a *breakersAPI) Report(ctx context.Context, req *colonyv1.ReportRequest) (_ *colonyv1.ReportResponse, err error) {
	s := a.s
	ctx, span := s.traceReport(ctx, req.GetReports())
	defer func() { s.endReport(span, len(req.GetReports()), err) }()
	if err := s.validateReports(ctx, req.GetReports()); err != nil {
		return nil, err
	}
	err = s.onEngine(ctx,
		func(e *engine) error { return e.report(ctx, time.Now(), req.Reports) },
		func(ctx context.Context, addr string) error {
			span.SetAttributes(telemetry.AttrForwarded.Bool(true))
			batch := &peerv1.ReportBatch{Reports: req.Reports, Traceparent: telemetry.Traceparent(span.SpanContext())}
			_, err := s.peers.reporter(addr).do(ctx, batch)
			return err
		})
	if err != nil {
		return nil, toStatus(err)
	}
	return &colonyv1.ReportResponse{Header: s.header(), Accepted: uint32(len(req.Reports))}, nil
}

// ForwardReports is the leader's side of report forwarding.
func (p *peerAPI) ForwardReports(ctx context.Context, req *peerv1.ForwardReportsRequest) (*peerv1.ForwardReportsResponse, error) {
	e, leading := p.s.leaderEngine()
	if !leading {
		return nil, status.Error(codes.Unavailable, raft.ErrNotLeader.Error())
	}
	if e == nil {
		return nil, status.Error(codes.Unavailable, errEngineNotReady.Error())
	}
	now := time.Now()
	resp := &peerv1.ForwardReportsResponse{Errors: make([]*colonyv1.OpError, len(req.Batches))}
	for i, b := range req.Batches {
		if err := e.report(ingestContext(ctx, b.Traceparent), now, b.Reports); err != nil {
			st := status.Convert(toStatus(err))
			resp.Errors[i] = &colonyv1.OpError{Code: int32(st.Code()), Message: st.Message()}
		} else {
			resp.Errors[i] = &colonyv1.OpError{}
		}
	}
	return resp, nil
}

// sendReports is the ForwardReports round trip of a report batcher.
func sendReports(client peerv1.PeerClient) func(context.Context, []*peerv1.ReportBatch) ([]struct{}, []error, error) {
	return func(ctx context.Context, batches []*peerv1.ReportBatch) ([]struct{}, []error, error) {
		req := &peerv1.ForwardReportsRequest{Batches: batches}
		resp, err := client.ForwardReports(ctx, req)
		if err != nil {
			return nil, nil, err
		}
		if len(resp.Errors) != len(batches) {
			return nil, nil, status.Errorf(codes.Unavailable, "leader answered %d report batches for %d", len(resp.Errors), len(batches))
		}
		errs := make([]error, len(batches))
		for i, e := range resp.Errors {
			if e.GetCode() != 0 {
				errs[i] = status.Error(codes.Code(e.Code), e.Message)
			}
		}
		return make([]struct{}, len(batches)), errs, nil
	}
}

func validPair(caller, callee string) (pairKey, error) {
	if err := breaker.ValidateServiceName(caller); err != nil {
		return pairKey{}, status.Errorf(codes.InvalidArgument, "caller: %v", err)
	}
	if err := breaker.ValidateServiceName(callee); err != nil {
		return pairKey{}, status.Errorf(codes.InvalidArgument, "callee: %v", err)
	}
	return pairKey{caller, callee}, nil
}

func (a *breakersAPI) ListBreakers(ctx context.Context, req *colonyv1.ListBreakersRequest) (*colonyv1.ListBreakersResponse, error) {
	s := a.s
	for _, f := range []struct{ name, v string }{{"caller", req.GetCaller()}, {"callee", req.GetCallee()}} {
		if f.v != "" {
			if err := breaker.ValidateServiceName(f.v); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "%s: %v", f.name, err)
			}
		}
	}
	var resp *colonyv1.ListBreakersResponse
	err := s.onEngine(ctx,
		func(e *engine) error {
			resp = &colonyv1.ListBreakersResponse{Header: s.header(), Breakers: e.list(req.GetCaller(), req.GetCallee(), time.Now())}
			return nil
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.ListBreakersResponse, error) {
				return c.ListBreakers(ctx, req)
			})
			return err
		})
	return resp, toStatus(err)
}

// list summarises the pairs, sorted by caller then callee.
func (e *engine) list(caller, callee string, now time.Time) []*colonyv1.BreakerSummary {
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

func (a *breakersAPI) GetBreaker(ctx context.Context, req *colonyv1.GetBreakerRequest) (*colonyv1.GetBreakerResponse, error) {
	s := a.s
	k, err := validPair(req.GetCaller(), req.GetCallee())
	if err != nil {
		return nil, err
	}
	limit := int(req.GetHistoryLimit())
	switch {
	case limit < 0 || limit > historyKeep:
		return nil, status.Errorf(codes.InvalidArgument, "history_limit: %d is outside 0..%d", limit, historyKeep)
	case limit == 0:
		limit = 20
	}
	var resp *colonyv1.GetBreakerResponse
	err = s.onEngine(ctx,
		func(e *engine) (err error) {
			resp, err = e.get(k, limit, time.Now())
			if resp != nil {
				resp.Header = s.header()
			}
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.GetBreakerResponse, error) {
				return c.GetBreaker(ctx, req)
			})
			return err
		})
	return resp, toStatus(err)
}

// get returns a pair's record, policy, live evidence and newest history.
func (e *engine) get(k pairKey, limit int, now time.Time) (*colonyv1.GetBreakerResponse, error) {
	e.mu.Lock()
	p, err := e.getPair(k, now, false)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
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
	v := e.s.fsm.tree.View()
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

func (a *breakersAPI) SetOverride(ctx context.Context, req *colonyv1.SetOverrideRequest) (*colonyv1.OverrideResponse, error) {
	s := a.s
	k, err := validPair(req.GetCaller(), req.GetCallee())
	if err != nil {
		return nil, err
	}
	var mode breaker.OverrideMode
	switch req.GetMode() {
	case colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN:
		mode = breaker.ForceOpen
	case colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_CLOSED:
		mode = breaker.ForceClosed
	case colonyv1.OverrideMode_OVERRIDE_MODE_DISABLED:
		mode = breaker.Disabled
	case colonyv1.OverrideMode_OVERRIDE_MODE_SHADOW:
		mode = breaker.Shadow
	default:
		return nil, status.Errorf(codes.InvalidArgument, "mode: %v is not an override (want FORCE_OPEN, FORCE_CLOSED, DISABLED or SHADOW)", req.GetMode())
	}
	ttl, err := overrideTTL(req.GetTtlMs())
	if err != nil {
		return nil, err
	}
	o := breaker.Override{Mode: mode, Reason: req.GetReason(), By: req.GetBy(), At: time.Now()}
	if ttl > 0 {
		o.Until = o.At.Add(ttl)
	}
	if err := o.Validate(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "override: %v", err)
	}
	if ok, err := s.knownCallee(ctx, s.fsm.tree.View(), k.caller, k.callee); err != nil {
		return nil, err
	} else if !ok {
		return nil, status.Errorf(codes.NotFound, "callee: unknown callee %q: no policy at %s, no instance under %s and no breaker %s",
			k.callee, contract.PolicyPath(k.callee), contract.ServiceDir(k.callee), contract.BreakerPath(k.caller, k.callee))
	}
	var resp *colonyv1.OverrideResponse
	err = s.onEngine(ctx,
		func(e *engine) (err error) {
			resp, err = e.override(ctx, k, &o, ttl, "", "")
			if resp != nil {
				resp.Header = s.header()
			}
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.OverrideResponse, error) {
				return c.SetOverride(ctx, req)
			})
			return err
		})
	return resp, toStatus(err)
}

// overrideTTL converts SetOverrideRequest.ttl_ms, saturating before the
// range check: a plain time.Duration(ms)*time.Millisecond wraps negative for
// ms >= 9,223,372,036,855 and such an override passed the maximum check and
// never expired.
func overrideTTL(ms int64) (time.Duration, error) {
	ttl := wiretime.Millis(ms)
	if ttl < 0 || ttl > maxOverrideTTL {
		return 0, status.Errorf(codes.InvalidArgument, "ttl_ms: %d is outside 0..%d (0: until cleared)", ms, maxOverrideTTL.Milliseconds())
	}
	return ttl, nil
}

// validAudit checks the reason and author an operator's action records.
func validAudit(reason, by string) error {
	if len(reason) > breaker.MaxReasonLen {
		return status.Errorf(codes.InvalidArgument, "reason: %d bytes, the limit is %d", len(reason), breaker.MaxReasonLen)
	}
	if len(by) > breaker.MaxByLen {
		return status.Errorf(codes.InvalidArgument, "by: %d bytes, the limit is %d", len(by), breaker.MaxByLen)
	}
	return nil
}

func (a *breakersAPI) ClearOverride(ctx context.Context, req *colonyv1.ClearOverrideRequest) (*colonyv1.OverrideResponse, error) {
	s := a.s
	k, err := validPair(req.GetCaller(), req.GetCallee())
	if err != nil {
		return nil, err
	}
	if err := validAudit(req.GetReason(), req.GetBy()); err != nil {
		return nil, err
	}
	var resp *colonyv1.OverrideResponse
	err = s.onEngine(ctx,
		func(e *engine) (err error) {
			resp, err = e.override(ctx, k, nil, 0, req.GetBy(), req.GetReason())
			if resp != nil {
				resp.Header = s.header()
			}
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.OverrideResponse, error) {
				return c.ClearOverride(ctx, req)
			})
			return err
		})
	return resp, toStatus(err)
}

// override sets o on the pair (creating it), or clears its override when o is
// nil, and returns the record once written. The expiry is recomputed from
// ttl on the leader's clock.
func (e *engine) override(ctx context.Context, k pairKey, o *breaker.Override, ttl time.Duration, by, reason string) (*colonyv1.OverrideResponse, error) {
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

func (a *breakersAPI) DeleteBreaker(ctx context.Context, req *colonyv1.DeleteBreakerRequest) (*colonyv1.DeleteBreakerResponse, error) {
	s := a.s
	k, err := validPair(req.GetCaller(), req.GetCallee())
	if err != nil {
		return nil, err
	}
	if err := validAudit(req.GetReason(), req.GetBy()); err != nil {
		return nil, err
	}
	var resp *colonyv1.DeleteBreakerResponse
	err = s.onEngine(ctx,
		func(e *engine) error {
			rec, err := e.deletePair(ctx, k, func(p *pair) error {
				if req.GetForce() {
					return nil
				}
				return deleteRefusal(k, p.rec)
			}, "deleted", req.GetBy(), req.GetReason())
			if err != nil {
				return err
			}
			data, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			resp = &colonyv1.DeleteBreakerResponse{Header: s.header(), Record: data}
			return nil
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.DeleteBreakerResponse, error) {
				return c.DeleteBreaker(ctx, req)
			})
			return err
		})
	return resp, toStatus(err)
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
	return status.Errorf(codes.FailedPrecondition, "pair %s not deleted: %s delete with force (colony breaker rm --force)", k, why)
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
		return status.Errorf(codes.FailedPrecondition, "pair %s has no override to clear (it is %v)", k, rec.State)
	}
	return status.Errorf(codes.FailedPrecondition,
		"pair %s has no override to clear: %s; to close it now, force-close it (colony breaker force-close %s %s --reason ...), then clear",
		k, what, k.caller, k.callee)
}

// resolvePolicies turns the user's specs (JSON overlays) into stored policy
// sets, validating everything.
func resolvePolicies(specs []*colonyv1.PolicySpec, by string, now time.Time) ([]breaker.PolicySet, error) {
	if len(specs) == 0 {
		return nil, status.Error(codes.InvalidArgument, "policies: empty")
	}
	if len(specs) > contract.MaxPoliciesPerCall {
		return nil, status.Errorf(codes.InvalidArgument, "policies: %d entries, the limit is %d per request", len(specs), contract.MaxPoliciesPerCall)
	}
	if len(by) > breaker.MaxByLen {
		return nil, status.Errorf(codes.InvalidArgument, "by: %d bytes, the limit is %d", len(by), breaker.MaxByLen)
	}
	seen := map[string]int{}
	out := make([]breaker.PolicySet, 0, len(specs))
	for i, spec := range specs {
		if err := breaker.ValidateServiceName(spec.GetCallee()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "policies[%d].callee: %v", i, err)
		}
		if j, dup := seen[spec.Callee]; dup {
			return nil, status.Errorf(codes.InvalidArgument, "policies[%d].callee: %q is also policies[%d]", i, spec.Callee, j)
		}
		seen[spec.Callee] = i
		ps := breaker.PolicySet{Callee: spec.Callee, Policy: breaker.DefaultPolicy(), By: by, At: now}
		if len(spec.Policy) > 0 {
			p, err := breaker.ParsePolicy(breaker.DefaultPolicy(), spec.Policy)
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "policies[%d] (callee %s).policy: %v", i, spec.Callee, oneLine(err))
			}
			ps.Policy = p
		}
		callers := make([]string, 0, len(spec.Callers))
		for c := range spec.Callers {
			callers = append(callers, c)
		}
		sort.Strings(callers)
		for _, c := range callers {
			if err := breaker.ValidateServiceName(c); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "policies[%d] (callee %s).callers: %v", i, spec.Callee, err)
			}
			p, err := breaker.ParsePolicy(ps.Policy, spec.Callers[c])
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "policies[%d] (callee %s).callers[%s]: %v", i, spec.Callee, c, oneLine(err))
			}
			if ps.Callers == nil {
				ps.Callers = map[string]breaker.Policy{}
			}
			ps.Callers[c] = p
		}
		if err := ps.Validate(); err != nil { // names and policies, once more as a whole
			return nil, status.Errorf(codes.InvalidArgument, "policies[%d]: %v", i, oneLine(err))
		}
		out = append(out, ps)
	}
	return out, nil
}

// oneLine joins a multi-line error (errors.Join) with "; " so that a
// prefix naming the policy applies to every problem in it.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func (a *breakersAPI) ApplyPolicies(ctx context.Context, req *colonyv1.ApplyPoliciesRequest) (*colonyv1.ApplyPoliciesResponse, error) {
	s := a.s
	sets, err := resolvePolicies(req.GetPolicies(), req.GetBy(), time.Now())
	if err != nil {
		return nil, err
	}
	if req.GetDryRun() {
		resp := &colonyv1.ApplyPoliciesResponse{Header: s.header()}
		v := s.fsm.tree.View()
		for _, ps := range sets {
			data, err := json.Marshal(ps)
			if err != nil {
				return nil, toStatus(err)
			}
			cur, _, _ := v.Get(contract.PolicyPath(ps.Callee))
			resp.Applied = append(resp.Applied, &colonyv1.AppliedPolicy{Callee: ps.Callee, PolicySet: data, Changed: !samePolicies(cur, ps)})
		}
		return resp, nil
	}
	var resp *colonyv1.ApplyPoliciesResponse
	err = s.onEngine(ctx,
		func(e *engine) (err error) {
			resp, err = e.applyPolicies(ctx, sets)
			if resp != nil {
				resp.Header = s.header()
			}
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.ApplyPoliciesResponse, error) {
				return c.ApplyPolicies(ctx, req)
			})
			return err
		})
	return resp, toStatus(err)
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

// applyPolicies writes the changed policy sets in one transaction and
// applies them to the pairs they govern.
func (e *engine) applyPolicies(ctx context.Context, sets []breaker.PolicySet) (*colonyv1.ApplyPoliciesResponse, error) {
	e.createMu.Lock() // one policy write at a time: versions are read from the tree
	defer e.createMu.Unlock()
	v := e.s.fsm.tree.View()
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
		return nil, status.Errorf(codes.ResourceExhausted, "policies: %d new callees with %d policies stored would exceed the limit of %d (MaxBreakerPairs plus its override reserve); delete unused ones (colony policy rm)",
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
func (e *engine) repolicy(callee string, now time.Time) {
	for k, p := range e.pairs {
		if k.callee != callee {
			continue
		}
		pol, _ := e.policyFor(k)
		if reflect.DeepEqual(pol, p.b.Policy()) {
			continue
		}
		if err := p.b.SetPolicy(pol, now); err != nil {
			e.s.log.Error("applying policy to breaker failed", "pair", k, "err", err)
		}
	}
}

func (a *breakersAPI) GetPolicy(ctx context.Context, req *colonyv1.GetPolicyRequest) (*colonyv1.GetPolicyResponse, error) {
	s := a.s
	if err := breaker.ValidateServiceName(req.GetCallee()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "callee: %v", err)
	}
	v, err := s.view(ctx, contract.PoliciesRoot, colonyv1.Consistency_CONSISTENCY_LINEARIZABLE, 0)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &colonyv1.GetPolicyResponse{Header: viewHeader(s, v)}
	if data, _, err := v.Get(contract.PolicyPath(req.Callee)); err == nil {
		resp.PolicySet = data
		return resp, nil
	}
	resp.IsDefault = true
	resp.PolicySet, err = json.Marshal(breaker.PolicySet{Callee: req.Callee, Policy: breaker.DefaultPolicy()})
	return resp, toStatus(err)
}

func (a *breakersAPI) DeletePolicy(ctx context.Context, req *colonyv1.DeletePolicyRequest) (*colonyv1.DeletePolicyResponse, error) {
	s := a.s
	if err := breaker.ValidateServiceName(req.GetCallee()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "callee: %v", err)
	}
	var resp *colonyv1.DeletePolicyResponse
	err := s.onEngine(ctx,
		func(e *engine) error {
			if err := e.deletePolicy(ctx, req.Callee); err != nil {
				return err
			}
			resp = &colonyv1.DeletePolicyResponse{Header: s.header()}
			return nil
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.DeletePolicyResponse, error) {
				return c.DeletePolicy(ctx, req)
			})
			return err
		})
	return resp, toStatus(err)
}

func (e *engine) deletePolicy(ctx context.Context, callee string) error {
	e.createMu.Lock()
	defer e.createMu.Unlock()
	p := contract.PolicyPath(callee)
	if _, _, err := e.s.fsm.tree.View().Get(p); err != nil {
		return status.Errorf(codes.NotFound, "callee %s has no policy (it uses the default)", callee)
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
