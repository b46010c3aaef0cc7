package coordinator

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/internal/wiretime"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

// A follower forwards proposals, keep-alives and reports to the leader in
// batches (package internal/batcher); here are their round trips.

// forwarded is a proposal's outcome on the leader.
type forwarded struct {
	index uint64
	res   *peerv1.CommandResult
}

// sendProposals is the ProposeBatch round trip of a proposal batcher.
func sendProposals(client peerv1.PeerClient) func(context.Context, []*peerv1.Command) ([]forwarded, []error, error) {
	return func(ctx context.Context, cmds []*peerv1.Command) ([]forwarded, []error, error) {
		resp, err := client.ProposeBatch(ctx, &peerv1.ProposeBatchRequest{Commands: cmds})
		if err != nil {
			return nil, nil, err
		}
		if len(resp.Results) != len(cmds) {
			return nil, nil, status.Errorf(codes.Unavailable, "leader answered %d results for %d commands", len(resp.Results), len(cmds))
		}
		out := make([]forwarded, len(cmds))
		errs := make([]error, len(cmds))
		for i, r := range resp.Results {
			switch {
			case r.Error != nil:
				errs[i] = api.FromOpError(r.Error)
			case r.Result == nil:
				errs[i] = fmt.Errorf("coordinator: leader returned no result for command %d of a batch", i)
			default:
				out[i] = forwarded{index: r.Index, res: r.Result}
			}
		}
		return out, errs, nil
	}
}

// sendKeepAlives is the KeepAliveSessions round trip of a keep-alive
// batcher: the result is the session's TTL, zero when it is unknown.
func sendKeepAlives(client peerv1.PeerClient) func(context.Context, []uint64) ([]time.Duration, []error, error) {
	return func(ctx context.Context, ids []uint64) ([]time.Duration, []error, error) {
		resp, err := client.KeepAliveSessions(ctx, &peerv1.KeepAliveSessionsRequest{SessionIds: ids})
		if err != nil {
			return nil, nil, err
		}
		if len(resp.TtlMs) != len(ids) {
			return nil, nil, status.Errorf(codes.Unavailable, "leader answered %d keep-alives for %d", len(resp.TtlMs), len(ids))
		}
		ttls := make([]time.Duration, len(ids))
		for i, ms := range resp.TtlMs {
			ttls[i] = wiretime.Millis(ms)
		}
		return ttls, make([]error, len(ids)), nil
	}
}
