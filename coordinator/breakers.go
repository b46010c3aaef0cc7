package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/coordinator/engine"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The node's side of the Breakers API (package api serves it): the engine
// of this node's leadership term, or forwarding to the leader's, and the
// leader's side of report forwarding.

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
			resp.Errors[i] = api.OpError(err)
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
				errs[i] = api.FromOpError(e)
			}
		}
		return make([]struct{}, len(batches)), errs, nil
	}
}
