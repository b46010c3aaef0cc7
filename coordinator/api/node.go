package api

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/internal/watchhub"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Node is what the services need of the coordinator node that serves them.
// Package coordinator implements it; errors it returns are mapped by
// ToStatus (and may be statuses already, forwarded from another node).
type Node interface {
	Writer
	Reader
	SessionKeeper
	Watcher
	Membership
	Engines
}

// Writer commits writes through raft.
type Writer interface {
	// Propose commits cmd, directly when the node leads and through the
	// leader otherwise, retrying leader changes, and returns its result
	// once this node has applied it.
	Propose(ctx context.Context, cmd *peerv1.Command) (*peerv1.CommandResult, error)
}

// Reader serves reads from the node's applied state.
type Reader interface {
	// ReadView waits until the node may serve a read at consistency c
	// (minZxid is the SESSION consistency's lower bound) and returns the
	// tree as of then.
	ReadView(ctx context.Context, c colonyv1.Consistency, minZxid uint64) (*ztree.View, error)
	// LocalView returns the tree the node has applied, without waiting.
	LocalView() *ztree.View
	// Header returns a response header at the node's applied index.
	Header() *colonyv1.ResponseHeader
	// WaitApplied waits until the node has applied index.
	WaitApplied(ctx context.Context, index uint64) error
}

// SessionKeeper keeps sessions alive in the leader's tracker.
type SessionKeeper interface {
	// KeepAlive refreshes session id, through the leader when the node
	// follows, and returns its TTL.
	KeepAlive(ctx context.Context, id uint64) (time.Duration, error)
}

// Watcher serves watches from the node's own watch hub.
type Watcher interface {
	// WatchIndex is the zxid up to which the hub has published events.
	WatchIndex() uint64
	// Subscribe starts a subscription to the events after zxid after.
	Subscribe(f watchhub.Filter, after uint64) (*watchhub.Subscription, error)
}

// Membership reports and changes the cluster's membership.
type Membership interface {
	// ClusterStatus is this node's view of the cluster, with every member's
	// own status.
	ClusterStatus(ctx context.Context) (*colonyv1.StatusResponse, error)
	// AddMember adds a node as a non-voter, through the leader.
	AddMember(ctx context.Context, req *colonyv1.AddMemberRequest) error
	// RemoveMember removes a node from the configuration and the registry,
	// through the leader.
	RemoveMember(ctx context.Context, req *colonyv1.RemoveMemberRequest) error
	// TransferLeadership hands leadership to the request's target (or to
	// the most up-to-date voter), through the leader, and returns the new
	// leader's id once one is known.
	TransferLeadership(ctx context.Context, req *colonyv1.TransferLeadershipRequest) (string, error)
}

// Engines runs breaker calls on the breaker engine of the leader's term.
type Engines interface {
	// OnEngine runs local on this node's engine when it leads and the
	// engine runs, and remote against the leader's gRPC address otherwise,
	// retrying across leader changes.
	OnEngine(ctx context.Context, local func(*engine.Engine) error, remote func(ctx context.Context, addr string) error) error
	// ForwardReports hands a batch of reports to the leader at addr
	// (batched with other reports through this node).
	ForwardReports(ctx context.Context, addr string, batch *peerv1.ReportBatch) error
	// Conn is a client connection to the node at addr.
	Conn(addr string) grpc.ClientConnInterface
}

// Config holds the limits the services check at the API edge. Every field
// must be set (coordinator.Config's defaults fill them).
type Config struct {
	// NodeID names this node in traces.
	NodeID string
	// Trust is the node's TLS material: with it every request carries the
	// identity of its verified client certificate, which the authorizer
	// (authz.go) checks. Nil: the node is insecure and authorizes anyone.
	Trust *trust.Material
	// Limits bounds data sizes and ops per transaction.
	Limits ztree.Limits
	// MinSessionTTL and MaxSessionTTL clamp requested session TTLs.
	MinSessionTTL, MaxSessionTTL time.Duration
	// MaxSessions bounds the cluster's open sessions, MaxSessionsPerConn
	// those opened through one client connection.
	MaxSessions, MaxSessionsPerConn int
	// MaxWatches bounds the node's open watches, MaxWatchesPerConn those
	// of one client connection.
	MaxWatches, MaxWatchesPerConn int
	// MaxWatchBytesPerConn bounds the watch messages one connection has
	// queued; WatchBatchBytes the events of one message.
	MaxWatchBytesPerConn, WatchBatchBytes int
	// WatchProgressInterval is how often an idle watch that asked for
	// progress gets a progress message.
	WatchProgressInterval time.Duration
	// Tracer starts the span of a Report call.
	Tracer trace.Tracer
	// ReportsReceived counts the reports of a Report call by result
	// ("accepted" or "rejected"); nil counts nothing.
	ReportsReceived func(result string, n int)
}

// Service is the public API of one node. Create it with New, give the gRPC
// server its StatsHandler and Register it.
type Service struct {
	node Node
	cfg  Config

	watches  watchLimits   // open watches per connection and node
	sessions sessionLimits // open sessions per connection
	acl      aclCache      // the authorization rules, parsed (acl.go)
}

// New returns the services of node.
func New(node Node, cfg Config) *Service {
	return &Service{node: node, cfg: cfg}
}

// StatsHandler is the gRPC stats handler that tells the per-connection
// limits when a client connection ends; the server must be built with it.
func (s *Service) StatsHandler() stats.Handler {
	return connStats{sessions: &s.sessions}
}

// Register registers every public service on srv.
func (s *Service) Register(srv grpc.ServiceRegistrar) {
	colonyv1.RegisterTreeServer(srv, &treeServer{s: s})
	colonyv1.RegisterSessionsServer(srv, &sessionsServer{s: s})
	colonyv1.RegisterWatchServer(srv, &watchServer{s: s})
	colonyv1.RegisterClusterServer(srv, &clusterServer{s: s})
	colonyv1.RegisterBreakersServer(srv, &breakersServer{s: s})
	colonyv1.RegisterMaintenanceServer(srv, &maintenanceServer{s: s})
}

// SessionConns reports how many client connections have sessions counted
// against MaxSessionsPerConn (a connection's count goes when it ends).
func (s *Service) SessionConns() int {
	s.sessions.mu.Lock()
	defer s.sessions.mu.Unlock()
	return len(s.sessions.byConn)
}

// viewHeader is the node's header at the index of the view a read served.
func (s *Service) viewHeader(v *ztree.View) *colonyv1.ResponseHeader {
	h := s.node.Header()
	h.Zxid = v.Index()
	return h
}
