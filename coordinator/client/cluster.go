package client

import (
	"context"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Status returns the cluster's status as the serving node sees it: leader,
// indexes and every member's self-report.
func (c *Client) Status(ctx context.Context) (*colonyv1.StatusResponse, error) {
	var resp *colonyv1.StatusResponse
	err := c.call(ctx, retrySafe, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cluster.Status(ctx, &colonyv1.StatusRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	c.observe(resp.GetHeader())
	return resp, nil
}

// MemberOption sets an optional field of AddMember.
type MemberOption func(*colonyv1.AddMemberRequest)

// NonVoter keeps the new member a non-voter; by default the leader promotes it
// to voter once it has caught up.
func NonVoter() MemberOption {
	return func(r *colonyv1.AddMemberRequest) { r.NonvoterOnly = true }
}

// AddMember adds a node to the cluster. Cluster operations carry no request
// id, so they are retried on another endpoint only when the server answered
// Unavailable (it did not act).
func (c *Client) AddMember(ctx context.Context, id, raftAddress, grpcAddress string, opts ...MemberOption) error {
	req := &colonyv1.AddMemberRequest{Id: id, RaftAddress: raftAddress, GrpcAddress: grpcAddress}
	for _, opt := range opts {
		opt(req)
	}
	var resp *colonyv1.AddMemberResponse
	err := c.call(ctx, retryUnavailable, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cluster.AddMember(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	c.observe(resp.GetHeader())
	return nil
}

// RemoveMember removes the member with id from the cluster.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	var resp *colonyv1.RemoveMemberResponse
	err := c.call(ctx, retryUnavailable, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cluster.RemoveMember(ctx, &colonyv1.RemoveMemberRequest{Id: id})
		return err
	})
	if err != nil {
		return err
	}
	c.observe(resp.GetHeader())
	return nil
}

// TransferLeadership hands leadership to the member targetID (empty: the most
// up-to-date voter) and returns the new leader's id.
func (c *Client) TransferLeadership(ctx context.Context, targetID string) (string, error) {
	var resp *colonyv1.TransferLeadershipResponse
	err := c.call(ctx, retryUnavailable, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cluster.TransferLeadership(ctx, &colonyv1.TransferLeadershipRequest{TargetId: targetID})
		return err
	})
	if err != nil {
		return "", err
	}
	c.observe(resp.GetHeader())
	return resp.GetLeaderId(), nil
}
