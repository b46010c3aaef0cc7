package api

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// clusterServer serves colony.v1.Cluster: membership changes run on the
// leader (Node.AddMember and the rest forward to it).
type clusterServer struct {
	colonyv1.UnimplementedClusterServer
	s *Service
}

// Status reports this node's view of the cluster and every member's own
// (state, applied index, time since it last heard from the leader).
func (a *clusterServer) Status(ctx context.Context, _ *colonyv1.StatusRequest) (*colonyv1.StatusResponse, error) {
	resp, err := a.s.node.ClusterStatus(ctx)
	if err != nil {
		return nil, ToStatus(err)
	}
	return resp, nil
}

// AddMember adds a node as a non-voter; the leader promotes it once it has
// caught up, unless it asked to stay a non-voter. Adding a member that is
// already in the configuration at the same address is a no-op.
func (a *clusterServer) AddMember(ctx context.Context, req *colonyv1.AddMemberRequest) (*colonyv1.AddMemberResponse, error) {
	if req.Id == "" || req.RaftAddress == "" || req.GrpcAddress == "" {
		return nil, status.Error(codes.InvalidArgument, "id, raft_address and grpc_address are required")
	}
	if err := a.s.node.AddMember(ctx, req); err != nil {
		return nil, ToStatus(err)
	}
	return &colonyv1.AddMemberResponse{Header: a.s.node.Header()}, nil
}

// RemoveMember removes a node from the raft configuration and the registry.
func (a *clusterServer) RemoveMember(ctx context.Context, req *colonyv1.RemoveMemberRequest) (*colonyv1.RemoveMemberResponse, error) {
	if req.Id == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	if err := a.s.node.RemoveMember(ctx, req); err != nil {
		return nil, ToStatus(err)
	}
	return &colonyv1.RemoveMemberResponse{Header: a.s.node.Header()}, nil
}

// TransferLeadership hands leadership to target (or to the most up-to-date
// voter) and waits until a leader is known again.
func (a *clusterServer) TransferLeadership(ctx context.Context, req *colonyv1.TransferLeadershipRequest) (*colonyv1.TransferLeadershipResponse, error) {
	id, err := a.s.node.TransferLeadership(ctx, req)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &colonyv1.TransferLeadershipResponse{Header: a.s.node.Header(), LeaderId: id}, nil
}
