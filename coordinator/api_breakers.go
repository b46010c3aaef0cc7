package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// breakersAPI serves colony.v1.Breakers on every node. Reports are validated
// here and handed to the leader's engine (through the report batcher when
// another node leads); every other call runs on the leader, forwarded as is.
type breakersAPI struct {
	colonyv1.UnimplementedBreakersServer
	s *Server
}

// errEngineNotReady: this node leads but its engine has not loaded yet.
var errEngineNotReady = fmt.Errorf("%w (breaker engine starting)", api.ErrTermNotReady)

// leaderEngine returns this node's engine when it leads and the engine runs.
func (s *Server) leaderEngine() (*engine.Engine, bool) {
	lt := s.currentLeaderTerm()
	if lt == nil {
		return nil, false
	}
	return lt.engine.Load(), true
}

// onEngine runs local on this node's engine when it leads, and remote
// against the leader otherwise, retrying across leader changes.
func (s *Server) onEngine(ctx context.Context, local func(*engine.Engine) error, remote func(context.Context, string) error) error {
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

// knownCallee is engine.CalleeKnown on this node's tree, and when that says
// no, on a linearizable view: a node that lags (it has just restarted, or was
// cut off) must not reject a callee whose policy was committed long ago. The
// second look costs a read index, only on the rare miss.
func (s *Server) knownCallee(ctx context.Context, v *ztree.View, caller, callee string) (bool, error) {
	if engine.CalleeKnown(v, caller, callee) {
		return true, nil
	}
	lv, err := s.view(ctx, contract.PoliciesRoot, colonyv1.Consistency_CONSISTENCY_LINEARIZABLE, 0)
	if err != nil {
		return false, api.ToStatus(err)
	}
	return engine.CalleeKnown(lv, caller, callee), nil
}

func (a *breakersAPI) Report(ctx context.Context, req *colonyv1.ReportRequest) (_ *colonyv1.ReportResponse, err error) {
	s := a.s
	ctx, span := s.traceReport(ctx, req.GetReports())
	defer func() { s.endReport(span, len(req.GetReports()), err) }()
	v := s.fsm.tree.View()
	err = engine.ValidateReports(req.GetReports(), func(caller, callee string) (bool, error) {
		return s.knownCallee(ctx, v, caller, callee)
	})
	if err != nil {
		return nil, api.ToStatus(err)
	}
	err = s.onEngine(ctx,
		func(e *engine.Engine) error { return e.Report(ctx, time.Now(), req.Reports) },
		func(ctx context.Context, addr string) error {
			span.SetAttributes(telemetry.AttrForwarded.Bool(true))
			batch := &peerv1.ReportBatch{Reports: req.Reports, Traceparent: telemetry.Traceparent(span.SpanContext())}
			_, err := s.peers.reporter(addr).do(ctx, batch)
			return err
		})
	if err != nil {
		return nil, api.ToStatus(err)
	}
	return &colonyv1.ReportResponse{Header: s.header(), Accepted: uint32(len(req.Reports))}, nil
}

// ForwardReports is the leader's side of report forwarding.
func (p *peerAPI) ForwardReports(ctx context.Context, req *peerv1.ForwardReportsRequest) (*peerv1.ForwardReportsResponse, error) {
	e, leading := p.s.leaderEngine()
	if !leading {
		return nil, api.ToStatus(raft.ErrNotLeader)
	}
	if e == nil {
		return nil, api.ToStatus(errEngineNotReady)
	}
	now := time.Now()
	resp := &peerv1.ForwardReportsResponse{Errors: make([]*colonyv1.OpError, len(req.Batches))}
	for i, b := range req.Batches {
		if err := e.Report(engine.IngestContext(ctx, b.Traceparent), now, b.Reports); err != nil {
			st := status.Convert(api.ToStatus(err))
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

func (a *breakersAPI) ListBreakers(ctx context.Context, req *colonyv1.ListBreakersRequest) (*colonyv1.ListBreakersResponse, error) {
	s := a.s
	for _, f := range []struct{ name, v string }{{"caller", req.GetCaller()}, {"callee", req.GetCallee()}} {
		if f.v != "" {
			if err := engine.ValidateName(f.name, f.v); err != nil {
				return nil, api.ToStatus(err)
			}
		}
	}
	var resp *colonyv1.ListBreakersResponse
	err := s.onEngine(ctx,
		func(e *engine.Engine) error {
			resp = &colonyv1.ListBreakersResponse{Header: s.header(), Breakers: e.List(req.GetCaller(), req.GetCallee(), time.Now())}
			return nil
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.ListBreakersResponse, error) {
				return c.ListBreakers(ctx, req)
			})
			return err
		})
	return resp, api.ToStatus(err)
}

func (a *breakersAPI) GetBreaker(ctx context.Context, req *colonyv1.GetBreakerRequest) (*colonyv1.GetBreakerResponse, error) {
	s := a.s
	if err := engine.ValidatePair(req.GetCaller(), req.GetCallee()); err != nil {
		return nil, api.ToStatus(err)
	}
	limit, err := engine.HistoryLimit(req.GetHistoryLimit())
	if err != nil {
		return nil, api.ToStatus(err)
	}
	var resp *colonyv1.GetBreakerResponse
	err = s.onEngine(ctx,
		func(e *engine.Engine) (err error) {
			resp, err = e.Get(req.Caller, req.Callee, limit, time.Now())
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
	return resp, api.ToStatus(err)
}

func (a *breakersAPI) SetOverride(ctx context.Context, req *colonyv1.SetOverrideRequest) (*colonyv1.OverrideResponse, error) {
	s := a.s
	if err := engine.ValidatePair(req.GetCaller(), req.GetCallee()); err != nil {
		return nil, api.ToStatus(err)
	}
	o, ttl, err := engine.ParseOverride(req, time.Now())
	if err != nil {
		return nil, api.ToStatus(err)
	}
	if ok, err := s.knownCallee(ctx, s.fsm.tree.View(), req.Caller, req.Callee); err != nil {
		return nil, err
	} else if !ok {
		return nil, api.ToStatus(engine.UnknownCallee("callee", req.Caller, req.Callee))
	}
	var resp *colonyv1.OverrideResponse
	err = s.onEngine(ctx,
		func(e *engine.Engine) (err error) {
			resp, err = e.SetOverride(ctx, req.Caller, req.Callee, o, ttl)
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
	return resp, api.ToStatus(err)
}

func (a *breakersAPI) ClearOverride(ctx context.Context, req *colonyv1.ClearOverrideRequest) (*colonyv1.OverrideResponse, error) {
	s := a.s
	if err := engine.ValidatePair(req.GetCaller(), req.GetCallee()); err != nil {
		return nil, api.ToStatus(err)
	}
	if err := engine.ValidateAudit(req.GetReason(), req.GetBy()); err != nil {
		return nil, api.ToStatus(err)
	}
	var resp *colonyv1.OverrideResponse
	err := s.onEngine(ctx,
		func(e *engine.Engine) (err error) {
			resp, err = e.ClearOverride(ctx, req.Caller, req.Callee, req.GetBy(), req.GetReason())
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
	return resp, api.ToStatus(err)
}

func (a *breakersAPI) DeleteBreaker(ctx context.Context, req *colonyv1.DeleteBreakerRequest) (*colonyv1.DeleteBreakerResponse, error) {
	s := a.s
	if err := engine.ValidatePair(req.GetCaller(), req.GetCallee()); err != nil {
		return nil, api.ToStatus(err)
	}
	if err := engine.ValidateAudit(req.GetReason(), req.GetBy()); err != nil {
		return nil, api.ToStatus(err)
	}
	var resp *colonyv1.DeleteBreakerResponse
	err := s.onEngine(ctx,
		func(e *engine.Engine) error {
			rec, err := e.Delete(ctx, req.Caller, req.Callee, req.GetForce(), req.GetBy(), req.GetReason())
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
	return resp, api.ToStatus(err)
}

func (a *breakersAPI) ApplyPolicies(ctx context.Context, req *colonyv1.ApplyPoliciesRequest) (*colonyv1.ApplyPoliciesResponse, error) {
	s := a.s
	sets, err := engine.ResolvePolicies(req.GetPolicies(), req.GetBy(), time.Now())
	if err != nil {
		return nil, api.ToStatus(err)
	}
	if req.GetDryRun() {
		resp := &colonyv1.ApplyPoliciesResponse{Header: s.header()}
		resp.Applied, err = engine.DryRun(s.fsm.tree.View(), sets)
		if err != nil {
			return nil, api.ToStatus(err)
		}
		return resp, nil
	}
	var resp *colonyv1.ApplyPoliciesResponse
	err = s.onEngine(ctx,
		func(e *engine.Engine) (err error) {
			resp, err = e.ApplyPolicies(ctx, sets)
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
	return resp, api.ToStatus(err)
}

func (a *breakersAPI) GetPolicy(ctx context.Context, req *colonyv1.GetPolicyRequest) (*colonyv1.GetPolicyResponse, error) {
	s := a.s
	if err := engine.ValidateName("callee", req.GetCallee()); err != nil {
		return nil, api.ToStatus(err)
	}
	v, err := s.view(ctx, contract.PoliciesRoot, colonyv1.Consistency_CONSISTENCY_LINEARIZABLE, 0)
	if err != nil {
		return nil, api.ToStatus(err)
	}
	resp := &colonyv1.GetPolicyResponse{Header: viewHeader(s, v)}
	if data, _, err := v.Get(contract.PolicyPath(req.Callee)); err == nil {
		resp.PolicySet = data
		return resp, nil
	}
	resp.IsDefault = true
	resp.PolicySet, err = json.Marshal(breaker.PolicySet{Callee: req.Callee, Policy: breaker.DefaultPolicy()})
	return resp, api.ToStatus(err)
}

func (a *breakersAPI) DeletePolicy(ctx context.Context, req *colonyv1.DeletePolicyRequest) (*colonyv1.DeletePolicyResponse, error) {
	s := a.s
	if err := engine.ValidateName("callee", req.GetCallee()); err != nil {
		return nil, api.ToStatus(err)
	}
	var resp *colonyv1.DeletePolicyResponse
	err := s.onEngine(ctx,
		func(e *engine.Engine) error {
			if err := e.DeletePolicy(ctx, req.Callee); err != nil {
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
	return resp, api.ToStatus(err)
}
