package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/internal/wiretime"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// defaultSessionTTL is granted when a client asks for no particular TTL.
const defaultSessionTTL = 10 * time.Second

// sessionsServer serves colony.v1.Sessions. Sessions are opened and closed
// through raft; keep-alives reach the leader's tracker (Node.KeepAlive).
type sessionsServer struct {
	colonyv1.UnimplementedSessionsServer
	s *Service
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

func (a *sessionsServer) Open(ctx context.Context, req *colonyv1.OpenSessionRequest) (*colonyv1.OpenSessionResponse, error) {
	ttl, err := clampTTL(req.TtlMs, a.s.cfg.MinSessionTTL, a.s.cfg.MaxSessionTTL)
	if err != nil {
		return nil, ToStatus(err)
	}
	if len(req.Name) > 256 {
		return nil, ToStatus(fmt.Errorf("%w: name: %d bytes exceeds the limit of 256", ztree.ErrInvalidArgument, len(req.Name)))
	}
	// A bound on the sessions a misbehaving client can leave behind. It is
	// checked on this node's state, so a burst through many nodes may pass
	// it by a little; the point is a safe ceiling, not an exact count.
	if n := a.s.node.LocalView().SessionCount(); n >= a.s.cfg.MaxSessions {
		return nil, status.Errorf(codes.ResourceExhausted, "sessions: the cluster already has %d open sessions, its limit (MaxSessions); close unused ones", n)
	}
	scope, err := requestScope(ctx)
	if err != nil {
		return nil, err
	}
	conn := connKey(ctx)
	isOpen := func(id uint64) bool { _, ok := a.s.node.LocalView().Session(id); return ok }
	if err := a.s.sessions.admit(conn, a.s.cfg.MaxSessionsPerConn, isOpen); err != nil {
		return nil, err
	}
	cmd := &peerv1.Command{ClientId: scope, Owner: a.s.owner(ctx), RequestId: req.RequestId, Op: &peerv1.Command_OpenSession{
		OpenSession: &peerv1.OpenSession{TtlMs: ttl.Milliseconds(), Name: req.Name},
	}}
	res, err := a.s.node.Propose(ctx, cmd)
	if err != nil {
		return nil, ToStatus(err)
	}
	if e := res.GetError(); e != nil {
		return nil, ToStatus(ztree.FromOpError(e))
	}
	o := res.GetOpenSession()
	if o == nil {
		return nil, ToStatus(fmt.Errorf("coordinator: open session answered %v", res))
	}
	a.s.sessions.opened(conn, o.GetSessionId())
	return &colonyv1.OpenSessionResponse{Header: a.s.node.Header(), SessionId: o.GetSessionId(), TtlMs: o.GetTtlMs()}, nil
}

// KeepAlive refreshes a session. A session another identity opened is
// PermissionDenied and not refreshed; an unknown session is left to the
// leader, as before.
func (a *sessionsServer) KeepAlive(ctx context.Context, req *colonyv1.KeepAliveRequest) (*colonyv1.KeepAliveResponse, error) {
	if err := a.s.checkSessionOwner(ctx, req.SessionId, "keep it alive"); err != nil {
		return nil, ToStatus(err)
	}
	ttl, err := a.s.node.KeepAlive(ctx, req.SessionId)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &colonyv1.KeepAliveResponse{Header: a.s.node.Header(), SessionId: req.SessionId, TtlMs: ttl.Milliseconds()}, nil
}

func (a *sessionsServer) KeepAliveStream(stream colonyv1.Sessions_KeepAliveStreamServer) error {
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
func (a *sessionsServer) Close(ctx context.Context, req *colonyv1.CloseSessionRequest) (*colonyv1.CloseSessionResponse, error) {
	scope, err := requestScope(ctx)
	if err != nil {
		return nil, err
	}
	cmd := &peerv1.Command{ClientId: scope, Owner: a.s.owner(ctx), RequestId: req.RequestId, Op: &peerv1.Command_CloseSession{
		CloseSession: &peerv1.CloseSession{SessionId: req.SessionId},
	}}
	res, err := a.s.node.Propose(ctx, cmd)
	if err != nil {
		return nil, ToStatus(err)
	}
	if e := res.GetError(); e != nil {
		return nil, ToStatus(ztree.FromOpError(e))
	}
	return &colonyv1.CloseSessionResponse{Header: a.s.node.Header()}, nil
}

// owner is the identity a command of the request's client is applied for:
// its verified identity, "" on an insecure node. The FSM records it as the
// owner of the sessions the client opens and lets only that identity close
// them or create ephemeral nodes in them (see ztree's DESIGN.md).
func (s *Service) owner(ctx context.Context) string {
	id, ok := s.identity(ctx)
	if !ok {
		return ""
	}
	return id.ID
}

// checkSessionOwner refuses what (e.g. "keep it alive") to the request's
// client on a session another identity opened. Keep-alives are not logged,
// so the FSM cannot check them: this node checks its applied view before
// the keep-alive reaches the leader's tracker. A session the view does not
// hold but that may have been opened by an entry this node has not applied
// yet (its id, the index of that entry, is above the view's) is looked up
// again once the node has caught up with the leader's commit index. A
// session that does not exist, or has no owner, passes: the leader answers
// it as before. Insecure nodes record no owners and check nothing.
func (s *Service) checkSessionOwner(ctx context.Context, id uint64, what string) error {
	if s.cfg.Trust == nil {
		return nil
	}
	v := s.node.LocalView()
	owner, ok := v.SessionOwner(id)
	if !ok && id > v.Index() {
		var err error
		if v, err = s.node.ReadView(ctx, colonyv1.Consistency_CONSISTENCY_LINEARIZABLE, 0); err != nil {
			return err
		}
		owner, ok = v.SessionOwner(id)
	}
	if !ok || owner == "" {
		return nil
	}
	if caller := s.owner(ctx); caller != owner {
		return ztree.SessionNotOwned(id, caller, what)
	}
	return nil
}

func (a *sessionsServer) List(ctx context.Context, _ *colonyv1.ListSessionsRequest) (*colonyv1.ListSessionsResponse, error) {
	v, err := a.s.view(ctx, "/", colonyv1.Consistency_CONSISTENCY_LINEARIZABLE, 0)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &colonyv1.ListSessionsResponse{Header: a.s.viewHeader(v), Sessions: v.Sessions()}, nil
}
