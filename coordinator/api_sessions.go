package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/internal/wiretime"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// defaultSessionTTL is granted when a client asks for no particular TTL.
const defaultSessionTTL = 10 * time.Second

func (s *Server) clampTTL(ms int64) (time.Duration, error) {
	return clampTTL(ms, s.cfg.MinSessionTTL, s.cfg.MaxSessionTTL)
}

// clampTTL turns a requested session TTL from the wire into the TTL granted:
// 0 is the default, anything else is clamped to [lo, hi]. The conversion
// saturates before the clamp, so a huge ttl_ms gets hi, never a wrapped
// (small or negative) duration.
func clampTTL(ms int64, lo, hi time.Duration) (time.Duration, error) {
	if ms < 0 {
		return 0, fmt.Errorf("%w: ttl_ms: must not be negative, got %d", ztree.ErrInvalidArgument, ms)
	}
	ttl := wiretime.Millis(ms)
	if ms == 0 {
		ttl = defaultSessionTTL
	}
	return min(max(ttl, lo), hi), nil
}

func (a *publicAPI) Open(ctx context.Context, req *colonyv1.OpenSessionRequest) (*colonyv1.OpenSessionResponse, error) {
	ttl, err := a.s.clampTTL(req.TtlMs)
	if err != nil {
		return nil, api.ToStatus(err)
	}
	if len(req.Name) > 256 {
		return nil, api.ToStatus(fmt.Errorf("%w: name: %d bytes exceeds the limit of 256", ztree.ErrInvalidArgument, len(req.Name)))
	}
	// A bound on the sessions a misbehaving client can leave behind. It is
	// checked on this node's state, so a burst through many nodes may pass
	// it by a little; the point is a safe ceiling, not an exact count.
	if n := a.s.fsm.tree.View().SessionCount(); n >= a.s.cfg.MaxSessions {
		return nil, status.Errorf(codes.ResourceExhausted, "sessions: the cluster already has %d open sessions, its limit (MaxSessions); close unused ones", n)
	}
	scope, err := requestScope(ctx)
	if err != nil {
		return nil, err
	}
	conn := connKey(ctx)
	isOpen := func(id uint64) bool { _, ok := a.s.fsm.tree.View().Session(id); return ok }
	if err := a.s.sessionsPerConn.admit(conn, a.s.cfg.MaxSessionsPerConn, isOpen); err != nil {
		return nil, err
	}
	cmd := &peerv1.Command{ClientId: scope, RequestId: req.RequestId, Op: &peerv1.Command_OpenSession{
		OpenSession: &peerv1.OpenSession{TtlMs: ttl.Milliseconds(), Name: req.Name},
	}}
	_, res, err := a.s.propose(ctx, cmd)
	if err != nil {
		return nil, api.ToStatus(err)
	}
	if e := res.GetError(); e != nil {
		return nil, api.ToStatus(ztree.FromOpError(e))
	}
	o := res.GetOpenSession()
	if o == nil {
		return nil, api.ToStatus(fmt.Errorf("coordinator: open session answered %v", res))
	}
	a.s.sessionsPerConn.opened(conn, o.GetSessionId())
	return &colonyv1.OpenSessionResponse{Header: a.s.header(), SessionId: o.GetSessionId(), TtlMs: o.GetTtlMs()}, nil
}

func (a *publicAPI) KeepAlive(ctx context.Context, req *colonyv1.KeepAliveRequest) (*colonyv1.KeepAliveResponse, error) {
	ttl, err := a.s.keepAlive(ctx, req.SessionId)
	if err != nil {
		return nil, api.ToStatus(err)
	}
	return &colonyv1.KeepAliveResponse{Header: a.s.header(), SessionId: req.SessionId, TtlMs: ttl.Milliseconds()}, nil
}

func (a *publicAPI) KeepAliveStream(stream colonyv1.Sessions_KeepAliveStreamServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := a.KeepAlive(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// Close ends a session. A session that does not exist (never opened, closed
// or expired) is NotFound, always: the FSM decides, so every node answers
// alike. The leader's tracker stops tracking the session only once the
// applied state no longer holds it (sessionTracker.observeApplied), never
// because of this reply.
func (a *publicAPI) Close(ctx context.Context, req *colonyv1.CloseSessionRequest) (*colonyv1.CloseSessionResponse, error) {
	scope, err := requestScope(ctx)
	if err != nil {
		return nil, err
	}
	cmd := &peerv1.Command{ClientId: scope, RequestId: req.RequestId, Op: &peerv1.Command_CloseSession{
		CloseSession: &peerv1.CloseSession{SessionId: req.SessionId},
	}}
	_, res, err := a.s.propose(ctx, cmd)
	if err != nil {
		return nil, api.ToStatus(err)
	}
	if e := res.GetError(); e != nil {
		return nil, api.ToStatus(ztree.FromOpError(e))
	}
	return &colonyv1.CloseSessionResponse{Header: a.s.header()}, nil
}

func (a *publicAPI) List(ctx context.Context, _ *colonyv1.ListSessionsRequest) (*colonyv1.ListSessionsResponse, error) {
	v, err := a.s.view(ctx, "/", colonyv1.Consistency_CONSISTENCY_LINEARIZABLE, 0)
	if err != nil {
		return nil, api.ToStatus(err)
	}
	return &colonyv1.ListSessionsResponse{Header: viewHeader(a.s, v), Sessions: v.Sessions()}, nil
}

// keepAlive refreshes a session in the leader's tracker, through the leader
// when this node follows.
func (s *Server) keepAlive(ctx context.Context, id uint64) (time.Duration, error) {
	var ttl time.Duration
	err := s.withLeader(ctx, func(ctx context.Context) error {
		if s.raft.State() == raft.Leader {
			ttls, err := s.leaderKeepAlive(ctx, []uint64{id})
			if err != nil {
				return err
			}
			ttl = ttls[0]
			return nil
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		// Batched with other keep-alives through this node: a sidecar
		// fleet's keep-alives cost the leader one RPC per batch.
		ttl, err = s.peers.keepAliver(addr).do(ctx, id)
		return err
	})
	if err != nil {
		return 0, err
	}
	if ttl <= 0 {
		return 0, ztree.SessionNotFound(id)
	}
	return ttl, nil
}

// leaderKeepAlive touches sessions in the tracker and confirms leadership
// before anyone is told: a deposed leader that has not noticed yet must not
// acknowledge a keep-alive the new leader never saw. The new leader armed
// every session with a full TTL when it took over, after this keep-alive was
// sent, so the guarantee holds from the client's send time. A zero TTL in
// the result means the session is unknown or expiring.
func (s *Server) leaderKeepAlive(ctx context.Context, ids []uint64) ([]time.Duration, error) {
	lt := s.currentLeaderTerm()
	if lt == nil {
		return nil, raft.ErrNotLeader
	}
	select {
	case <-lt.ready:
	case <-ctx.Done():
		return nil, api.ErrTermNotReady
	}
	ttls := make([]time.Duration, len(ids))
	for i, id := range ids {
		ttl, ok, err := s.sessions.touch(id)
		if err != nil {
			return nil, err
		}
		if ok {
			ttls[i] = ttl
		}
	}
	if err := s.verifier.verify(ctx); err != nil {
		return nil, err
	}
	return ttls, nil
}
