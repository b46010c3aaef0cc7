package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// breakersServer serves colony.v1.Breakers on every node. Reports are validated
// here and handed to the leader's engine (through the report batcher when
// another node leads); every other call runs on the leader, forwarded as is.
type breakersServer struct {
	colonyv1.UnimplementedBreakersServer
	s *Service
}

// forwardBreakers calls the leader's Breakers service and, for a write, waits
// until this node has applied it, so the caller's next read here sees it.
func forwardBreakers[Res interface {
	GetHeader() *colonyv1.ResponseHeader
}](s *Service, ctx context.Context, addr string, call func(colonyv1.BreakersClient) (Res, error)) (Res, error) {
	res, err := call(colonyv1.NewBreakersClient(s.node.Conn(addr)))
	if err != nil {
		return res, err
	}
	if z := res.GetHeader().GetZxid(); z > 0 {
		if err := s.node.WaitApplied(ctx, z); err != nil {
			return res, err
		}
	}
	return res, nil
}

// knownCallee is engine.CalleeKnown on this node's tree, and when that says
// no, on a linearizable view: a node that lags (it has just restarted, or was
// cut off) must not reject a callee whose policy was committed long ago. The
// second look costs a read index, only on the rare miss.
func (s *Service) knownCallee(ctx context.Context, v *ztree.View, caller, callee string) (bool, error) {
	if engine.CalleeKnown(v, caller, callee) {
		return true, nil
	}
	lv, err := s.view(ctx, contract.PoliciesRoot, colonyv1.Consistency_CONSISTENCY_LINEARIZABLE, 0)
	if err != nil {
		return false, ToStatus(err)
	}
	return engine.CalleeKnown(lv, caller, callee), nil
}

func (a *breakersServer) Report(ctx context.Context, req *colonyv1.ReportRequest) (*colonyv1.ReportResponse, error) {
	if _, err := a.s.report(ctx, req.GetReports(), false); err != nil {
		return nil, err
	}
	return &colonyv1.ReportResponse{Header: a.s.node.Header(), Accepted: uint32(len(req.Reports))}, nil
}

// report validates one caller instance's reports and hands them to the
// leader's engine: the work of a Report call and of each ReportStream
// message alike (streamed: its span starts a trace of its own). leading
// says the engine was this node's. The error is a status.
func (s *Service) report(ctx context.Context, reports []*colonyv1.OutcomeReport, streamed bool) (leading bool, err error) {
	ctx, span := s.traceReport(ctx, reports, streamed)
	defer func() { s.endReport(span, len(reports), err) }()
	v := s.node.LocalView()
	err = engine.ValidateReports(reports, func(caller, callee string) (bool, error) {
		return s.knownCallee(ctx, v, caller, callee)
	})
	if err != nil {
		return false, ToStatus(err)
	}
	err = s.node.OnEngine(ctx,
		func(e *engine.Engine) error {
			leading = true
			return e.Report(ctx, time.Now(), reports)
		},
		func(ctx context.Context, addr string) error {
			leading = false
			span.SetAttributes(telemetry.AttrForwarded.Bool(true))
			batch := &peerv1.ReportBatch{Reports: reports, Traceparent: telemetry.Traceparent(span.SpanContext())}
			return s.node.ForwardReports(ctx, addr, batch)
		})
	if err != nil {
		return leading, ToStatus(err)
	}
	return leading, nil
}

// ReportStream serves a stream of report periods. Each message goes through
// what a Report call does (the stream interceptor authorizes each message as
// it is received; report validates and counts it), one at a time, in
// order, and is acknowledged once handled. A message that is refused
// (unauthorized, invalid, unknown callee, over a limit, no leader) is named
// in its ack and the stream goes on; only a seq that does not increase ends
// it.
func (a *breakersServer) ReportStream(stream colonyv1.Breakers_ReportStreamServer) error {
	ctx := stream.Context()
	var last uint64
	for {
		req := new(colonyv1.ReportStreamRequest)
		err := stream.RecvMsg(req)
		var denied *deniedMessage
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.As(err, &denied):
			// Refused alone, as the same Report would be; authorization
			// is per message, so the next may pass.
		case err != nil:
			return err
		}
		if req.GetSeq() <= last {
			return status.Errorf(codes.InvalidArgument, "seq: %d does not increase (the previous message's was %d)", req.GetSeq(), last)
		}
		last = req.GetSeq()
		ack := &colonyv1.ReportStreamResponse{AckedSeq: last}
		leading := false
		if denied == nil {
			leading, err = a.s.report(ctx, req.GetReports(), true)
		}
		if err != nil {
			ack.Rejected = []*colonyv1.ReportRejection{{Seq: last, Error: OpError(err)}}
		} else {
			ack.Accepted = uint32(len(req.GetReports()))
		}
		ack.Leader = leading
		ack.Header = a.s.node.Header()
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

func (a *breakersServer) ListBreakers(ctx context.Context, req *colonyv1.ListBreakersRequest) (*colonyv1.ListBreakersResponse, error) {
	s := a.s
	for _, f := range []struct{ name, v string }{{"caller", req.GetCaller()}, {"callee", req.GetCallee()}} {
		if f.v != "" {
			if err := engine.ValidateName(f.name, f.v); err != nil {
				return nil, ToStatus(err)
			}
		}
	}
	var resp *colonyv1.ListBreakersResponse
	err := s.node.OnEngine(ctx,
		func(e *engine.Engine) error {
			resp = &colonyv1.ListBreakersResponse{Header: s.node.Header(), Breakers: e.List(req.GetCaller(), req.GetCallee(), time.Now())}
			return nil
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.ListBreakersResponse, error) {
				return c.ListBreakers(ctx, req)
			})
			return err
		})
	return resp, ToStatus(err)
}

func (a *breakersServer) GetBreaker(ctx context.Context, req *colonyv1.GetBreakerRequest) (*colonyv1.GetBreakerResponse, error) {
	s := a.s
	if err := engine.ValidatePair(req.GetCaller(), req.GetCallee()); err != nil {
		return nil, ToStatus(err)
	}
	limit, err := engine.HistoryLimit(req.GetHistoryLimit())
	if err != nil {
		return nil, ToStatus(err)
	}
	var resp *colonyv1.GetBreakerResponse
	err = s.node.OnEngine(ctx,
		func(e *engine.Engine) (err error) {
			resp, err = e.Get(ctx, req.Caller, req.Callee, limit, time.Now())
			if resp != nil {
				resp.Header = s.node.Header()
			}
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.GetBreakerResponse, error) {
				return c.GetBreaker(ctx, req)
			})
			return err
		})
	return resp, ToStatus(err)
}

func (a *breakersServer) SetOverride(ctx context.Context, req *colonyv1.SetOverrideRequest) (*colonyv1.OverrideResponse, error) {
	s := a.s
	if err := engine.ValidatePair(req.GetCaller(), req.GetCallee()); err != nil {
		return nil, ToStatus(err)
	}
	req.By = auditBy(ctx, req.GetBy())
	o, ttl, err := engine.ParseOverride(req, time.Now())
	if err != nil {
		return nil, ToStatus(err)
	}
	if ok, err := s.knownCallee(ctx, s.node.LocalView(), req.Caller, req.Callee); err != nil {
		return nil, err
	} else if !ok {
		return nil, ToStatus(engine.UnknownCallee("callee", req.Caller, req.Callee))
	}
	var resp *colonyv1.OverrideResponse
	err = s.node.OnEngine(ctx,
		func(e *engine.Engine) (err error) {
			resp, err = e.SetOverride(ctx, req.Caller, req.Callee, o, ttl)
			if resp != nil {
				resp.Header = s.node.Header()
			}
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.OverrideResponse, error) {
				return c.SetOverride(ctx, req)
			})
			return err
		})
	return resp, ToStatus(err)
}

func (a *breakersServer) ClearOverride(ctx context.Context, req *colonyv1.ClearOverrideRequest) (*colonyv1.OverrideResponse, error) {
	s := a.s
	if err := engine.ValidatePair(req.GetCaller(), req.GetCallee()); err != nil {
		return nil, ToStatus(err)
	}
	req.By = auditBy(ctx, req.GetBy())
	if err := engine.ValidateAudit(req.GetReason(), req.GetBy()); err != nil {
		return nil, ToStatus(err)
	}
	var resp *colonyv1.OverrideResponse
	err := s.node.OnEngine(ctx,
		func(e *engine.Engine) (err error) {
			resp, err = e.ClearOverride(ctx, req.Caller, req.Callee, req.GetBy(), req.GetReason())
			if resp != nil {
				resp.Header = s.node.Header()
			}
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.OverrideResponse, error) {
				return c.ClearOverride(ctx, req)
			})
			return err
		})
	return resp, ToStatus(err)
}

func (a *breakersServer) DeleteBreaker(ctx context.Context, req *colonyv1.DeleteBreakerRequest) (*colonyv1.DeleteBreakerResponse, error) {
	s := a.s
	if err := engine.ValidatePair(req.GetCaller(), req.GetCallee()); err != nil {
		return nil, ToStatus(err)
	}
	req.By = auditBy(ctx, req.GetBy())
	if err := engine.ValidateAudit(req.GetReason(), req.GetBy()); err != nil {
		return nil, ToStatus(err)
	}
	var resp *colonyv1.DeleteBreakerResponse
	err := s.node.OnEngine(ctx,
		func(e *engine.Engine) error {
			rec, err := e.Delete(ctx, req.Caller, req.Callee, req.GetForce(), req.GetBy(), req.GetReason())
			if err != nil {
				return err
			}
			data, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			resp = &colonyv1.DeleteBreakerResponse{Header: s.node.Header(), Record: data}
			return nil
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.DeleteBreakerResponse, error) {
				return c.DeleteBreaker(ctx, req)
			})
			return err
		})
	return resp, ToStatus(err)
}

func (a *breakersServer) ApplyPolicies(ctx context.Context, req *colonyv1.ApplyPoliciesRequest) (*colonyv1.ApplyPoliciesResponse, error) {
	s := a.s
	req.By = auditBy(ctx, req.GetBy())
	sets, err := engine.ResolvePolicies(req.GetPolicies(), req.GetBy(), time.Now())
	if err != nil {
		return nil, ToStatus(err)
	}
	if req.GetDryRun() {
		resp := &colonyv1.ApplyPoliciesResponse{Header: s.node.Header()}
		resp.Applied, err = engine.DryRun(s.node.LocalView(), sets)
		if err != nil {
			return nil, ToStatus(err)
		}
		return resp, nil
	}
	var resp *colonyv1.ApplyPoliciesResponse
	err = s.node.OnEngine(ctx,
		func(e *engine.Engine) (err error) {
			resp, err = e.ApplyPolicies(ctx, sets)
			if resp != nil {
				resp.Header = s.node.Header()
			}
			return err
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.ApplyPoliciesResponse, error) {
				return c.ApplyPolicies(ctx, req)
			})
			return err
		})
	return resp, ToStatus(err)
}

func (a *breakersServer) GetPolicy(ctx context.Context, req *colonyv1.GetPolicyRequest) (*colonyv1.GetPolicyResponse, error) {
	s := a.s
	if err := engine.ValidateName("callee", req.GetCallee()); err != nil {
		return nil, ToStatus(err)
	}
	v, err := s.view(ctx, contract.PoliciesRoot, colonyv1.Consistency_CONSISTENCY_LINEARIZABLE, 0)
	if err != nil {
		return nil, ToStatus(err)
	}
	resp := &colonyv1.GetPolicyResponse{Header: s.viewHeader(v)}
	if data, _, err := v.Get(contract.PolicyPath(req.Callee)); err == nil {
		resp.PolicySet = data
		return resp, nil
	}
	resp.IsDefault = true
	resp.PolicySet, err = json.Marshal(breaker.PolicySet{Callee: req.Callee, Policy: breaker.DefaultPolicy()})
	return resp, ToStatus(err)
}

func (a *breakersServer) DeletePolicy(ctx context.Context, req *colonyv1.DeletePolicyRequest) (*colonyv1.DeletePolicyResponse, error) {
	s := a.s
	if err := engine.ValidateName("callee", req.GetCallee()); err != nil {
		return nil, ToStatus(err)
	}
	req.By = auditBy(ctx, req.GetBy())
	var resp *colonyv1.DeletePolicyResponse
	err := s.node.OnEngine(ctx,
		func(e *engine.Engine) error {
			if err := e.DeletePolicy(ctx, req.Callee); err != nil {
				return err
			}
			resp = &colonyv1.DeletePolicyResponse{Header: s.node.Header()}
			return nil
		},
		func(ctx context.Context, addr string) (err error) {
			resp, err = forwardBreakers(s, ctx, addr, func(c colonyv1.BreakersClient) (*colonyv1.DeletePolicyResponse, error) {
				return c.DeletePolicy(ctx, req)
			})
			return err
		})
	return resp, ToStatus(err)
}

// auditBy is who the audit trail records for a change: on a secure node the
// verified identity, with the name the client declared only as "(for
// NAME)", dropped when the two would not fit breaker.MaxByLen; on an
// insecure node the declared name. A node forwarding a call to the leader
// has already recorded its client's identity, so a node's by is kept.
func auditBy(ctx context.Context, declared string) string {
	id, ok := verifiedIdentity(ctx)
	if !ok || id.Role == trust.RoleNode {
		return declared
	}
	if declared == "" || declared == id.ID {
		return id.ID
	}
	if by := id.ID + " (for " + declared + ")"; len(by) <= breaker.MaxByLen {
		return by
	}
	return id.ID
}
