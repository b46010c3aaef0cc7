package api

import (
	"context"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// connKey names a client connection by its remote address, the same key for
// a request's context (peer) and the connection's end (stats).
func connKey(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown"
}

// sessionLimits counts, per client connection, the sessions opened through
// it on this node that are still open, so one client looping on Open hits
// its own ceiling (MaxSessionsPerConn) long before it fills the cluster's
// (MaxSessions) and locks every other client out. Sessions outlive their
// connection, as in ZooKeeper; a connection's count is dropped when the
// connection ends, and closed sessions are pruned when the count reaches
// the limit, so the bookkeeping costs nothing on the common path.
type sessionLimits struct {
	mu     sync.Mutex
	byConn map[string][]uint64
}

// admit refuses a new session on conn when it already has limit open ones;
// isOpen says whether a session counted earlier is still open.
func (l *sessionLimits) admit(conn string, limit int, isOpen func(uint64) bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := l.byConn[conn]
	if len(ids) < limit {
		return nil
	}
	ids = slices.DeleteFunc(ids, func(id uint64) bool { return !isOpen(id) })
	l.byConn[conn] = ids
	if len(ids) < limit {
		return nil
	}
	return status.Errorf(codes.ResourceExhausted,
		"sessions: this connection (%s) already has %d open sessions, the limit (MaxSessionsPerConn); reuse a session or close unused ones", conn, len(ids))
}

// opened counts session id against conn, once: a retried Open answered from
// the dedup table names a session already counted.
func (l *sessionLimits) opened(conn string, id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byConn == nil {
		l.byConn = map[string][]uint64{}
	}
	if !slices.Contains(l.byConn[conn], id) { // at most MaxSessionsPerConn ids
		l.byConn[conn] = append(l.byConn[conn], id)
	}
}

// connEnded forgets conn.
func (l *sessionLimits) connEnded(conn string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byConn, conn)
}

// connStats is the gRPC stats handler that tells the per-connection limits
// when a connection ends. Only connection events are of interest.
type connStats struct{ sessions *sessionLimits }

type connKeyCtx struct{}

func (h connStats) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	if info.RemoteAddr == nil {
		return ctx
	}
	return context.WithValue(ctx, connKeyCtx{}, info.RemoteAddr.String())
}

func (h connStats) HandleConn(ctx context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnEnd); !ok {
		return
	}
	if conn, ok := ctx.Value(connKeyCtx{}).(string); ok {
		h.sessions.connEnded(conn)
	}
}

func (connStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (connStats) HandleRPC(context.Context, stats.RPCStats)                       {}
