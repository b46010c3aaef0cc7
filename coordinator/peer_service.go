package coordinator

import (
	"context"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/api"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// peerAPI serves the other nodes of the cluster. The leader-only calls answer
// Unavailable on a follower, which the caller retries against the new leader:
// they never forward again, so a request cannot loop between nodes.
type peerAPI struct {
	peerv1.UnimplementedPeerServer
	s *Server
}

var errNotLeaderStatus = status.Error(codes.Unavailable, "not the leader")

// ProposeBatch enqueues every command before waiting for any, so a
// follower's batch lands in as few raft group commits as possible.
func (p *peerAPI) ProposeBatch(ctx context.Context, req *peerv1.ProposeBatchRequest) (*peerv1.ProposeBatchResponse, error) {
	if p.s.raft.State() != raft.Leader {
		return nil, errNotLeaderStatus
	}
	futures := make([]raft.ApplyFuture, len(req.Commands))
	results := make([]*peerv1.ProposeResult, len(req.Commands))
	for i, cmd := range req.Commands {
		if cmd == nil {
			results[i] = &peerv1.ProposeResult{Error: &colonyv1.OpError{Code: int32(codes.InvalidArgument), Message: "command is required"}}
			continue
		}
		f, err := p.s.enqueue(ctx, cmd)
		if err != nil {
			results[i] = &peerv1.ProposeResult{Error: statusOpError(err)}
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		index, res, err := awaitApply(f)
		if err != nil {
			results[i] = &peerv1.ProposeResult{Error: statusOpError(err)}
			continue
		}
		results[i] = &peerv1.ProposeResult{Index: index, Result: res}
	}
	return &peerv1.ProposeBatchResponse{Results: results}, nil
}

// statusOpError carries err's gRPC code and message to the follower.
func statusOpError(err error) *colonyv1.OpError { return api.OpError(err) }

func (p *peerAPI) ReadIndex(ctx context.Context, _ *peerv1.ReadIndexRequest) (*peerv1.ReadIndexResponse, error) {
	if p.s.raft.State() != raft.Leader {
		return nil, errNotLeaderStatus
	}
	index, err := p.s.leaderReadIndex(ctx)
	if err != nil {
		return nil, api.ToStatus(err)
	}
	return &peerv1.ReadIndexResponse{Index: index}, nil
}

func (p *peerAPI) KeepAliveSessions(ctx context.Context, req *peerv1.KeepAliveSessionsRequest) (*peerv1.KeepAliveSessionsResponse, error) {
	if p.s.raft.State() != raft.Leader {
		return nil, errNotLeaderStatus
	}
	ttls, err := p.s.leaderKeepAlive(ctx, req.SessionIds)
	if err != nil {
		return nil, api.ToStatus(err)
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
