package coordinator

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/internal/watchhub"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// apiNode is the node as the public services (package api) see it: a small
// adapter, so that what they may call is listed in one place (api.Node) and
// Server's exported methods stay the ones its users need.
type apiNode struct{ s *Server }

var _ api.Node = apiNode{}

// apiConfig is the part of the node's configuration the services check.
func (s *Server) apiConfig() api.Config {
	return api.Config{
		NodeID:                s.cfg.NodeID,
		Trust:                 s.cfg.TLS,
		Limits:                s.limits,
		MinSessionTTL:         s.cfg.MinSessionTTL,
		MaxSessionTTL:         s.cfg.MaxSessionTTL,
		MaxSessions:           s.cfg.MaxSessions,
		MaxSessionsPerConn:    s.cfg.MaxSessionsPerConn,
		MaxWatches:            s.cfg.MaxWatches,
		MaxWatchesPerConn:     s.cfg.MaxWatchesPerConn,
		MaxWatchBytesPerConn:  s.cfg.MaxWatchBytesPerConn,
		WatchBatchBytes:       s.cfg.WatchBatchBytes,
		WatchProgressInterval: s.cfg.WatchProgressInterval,
		Tracer:                s.tracer,
		ReportsReceived: func(result string, n int) {
			s.metrics.ReportsReceived.WithLabelValues(result).Add(float64(n))
		},
	}
}

// header is a response header at this node's applied index.
func (s *Server) header() *colonyv1.ResponseHeader {
	return &colonyv1.ResponseHeader{
		Zxid:     s.fsm.applied.Load(),
		MemberId: s.cfg.NodeID,
		Term:     s.raft.CurrentTerm(),
	}
}

func (n apiNode) Propose(ctx context.Context, cmd *peerv1.Command) (*peerv1.CommandResult, error) {
	_, res, err := n.s.propose(ctx, cmd)
	return res, err
}

func (n apiNode) ReadView(ctx context.Context, c colonyv1.Consistency, minZxid uint64) (*ztree.View, error) {
	if err := n.s.readyForRead(ctx, c, minZxid); err != nil {
		return nil, err
	}
	return n.s.fsm.tree.View(), nil
}

func (n apiNode) LocalView() *ztree.View { return n.s.fsm.tree.View() }

func (n apiNode) Header() *colonyv1.ResponseHeader { return n.s.header() }

func (n apiNode) WaitApplied(ctx context.Context, index uint64) error {
	return n.s.fsm.waitApplied(ctx, index)
}

func (n apiNode) KeepAlive(ctx context.Context, id uint64) (time.Duration, error) {
	return n.s.keepAlive(ctx, id)
}

func (n apiNode) WatchIndex() uint64 { return n.s.hub.Index() }

func (n apiNode) Subscribe(f watchhub.Filter, after uint64) (*watchhub.Subscription, error) {
	return n.s.hub.Subscribe(f, after)
}

func (n apiNode) ClusterStatus(ctx context.Context) (*colonyv1.StatusResponse, error) {
	return n.s.clusterStatus(ctx)
}

func (n apiNode) AddMember(ctx context.Context, req *colonyv1.AddMemberRequest) error {
	return n.s.addMember(ctx, req)
}

func (n apiNode) RemoveMember(ctx context.Context, req *colonyv1.RemoveMemberRequest) error {
	return n.s.removeMember(ctx, req)
}

func (n apiNode) TransferLeadership(ctx context.Context, req *colonyv1.TransferLeadershipRequest) (string, error) {
	return n.s.transferLeadership(ctx, req)
}

func (n apiNode) OnEngine(ctx context.Context, local func(*engine.Engine) error, remote func(context.Context, string) error) error {
	return n.s.onEngine(ctx, local, remote)
}

func (n apiNode) ForwardReports(ctx context.Context, addr string, batch *peerv1.ReportBatch) error {
	_, err := n.s.peers.reporter(addr).Do(ctx, batch)
	return err
}

func (n apiNode) Conn(addr string) grpc.ClientConnInterface { return n.s.peers.conn(addr) }
