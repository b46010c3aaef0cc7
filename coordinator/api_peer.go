package coordinator

import (
	"context"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

// peerAPI serves the other nodes of the cluster. The leader-only calls answer
// Unavailable on a follower, which the caller retries against the new leader:
// they never forward again, so a request cannot loop between nodes.
type peerAPI struct {
	peerv1.UnimplementedPeerServer
	s *Server
}

var errNotLeaderStatus = status.Error(codes.Unavailable, "not the leader")

func (p *peerAPI) Propose(ctx context.Context, req *peerv1.ProposeRequest) (*peerv1.ProposeResponse, error) {
	if p.s.raft.State() != raft.Leader {
		return nil, errNotLeaderStatus
	}
	if req.Command == nil {
		return nil, status.Error(codes.InvalidArgument, "command is required")
	}
	index, res, err := p.s.applyLocal(ctx, req.Command)
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerv1.ProposeResponse{Index: index, Result: res}, nil
}

func (p *peerAPI) ReadIndex(ctx context.Context, _ *peerv1.ReadIndexRequest) (*peerv1.ReadIndexResponse, error) {
	if p.s.raft.State() != raft.Leader {
		return nil, errNotLeaderStatus
	}
	index, err := p.s.leaderReadIndex(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerv1.ReadIndexResponse{Index: index}, nil
}

func (p *peerAPI) KeepAliveSessions(ctx context.Context, req *peerv1.KeepAliveSessionsRequest) (*peerv1.KeepAliveSessionsResponse, error) {
	if p.s.raft.State() != raft.Leader {
		return nil, errNotLeaderStatus
	}
	ttls, err := p.s.leaderKeepAlive(ctx, req.SessionIds)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &peerv1.KeepAliveSessionsResponse{TtlMs: make([]int64, len(ttls))}
	for i, ttl := range ttls {
		resp.TtlMs[i] = ttl.Milliseconds()
	}
	return resp, nil
}

func (p *peerAPI) NodeStatus(context.Context, *peerv1.NodeStatusRequest) (*peerv1.NodeStatusResponse, error) {
	return p.s.nodeStatus(), nil
}
