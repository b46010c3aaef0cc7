package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

// propose commits cmd through raft, directly when this node leads and
// through the leader otherwise, and returns once this node has applied it,
// so that the caller's next read or watch on this node sees the write.
//
// Leader changes are retried within cfg.LeaderWait (bounded by ctx) with the
// same request id: the FSM applies a command once however often it reaches
// the log, which makes a retry after ErrLeadershipLost (outcome unknown) safe.
func (s *Server) propose(ctx context.Context, cmd *peerv1.Command) (uint64, *peerv1.CommandResult, error) {
	if cmd.RequestId == "" {
		cmd.RequestId = newRequestID()
	}
	var index uint64
	var res *peerv1.CommandResult
	err := s.withLeader(ctx, func(ctx context.Context) error {
		var err error
		index, res, err = s.proposeOnce(ctx, cmd)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	if err := s.fsm.waitApplied(ctx, index); err != nil {
		return 0, nil, err
	}
	return index, res, nil
}

// withLeader runs f until it succeeds or fails with an error that a new
// leader cannot fix, waiting out elections for at most cfg.LeaderWait (and
// ctx). f gets fresh state on every try: a read index, for one, must never
// be reused across leaders (etcd's old stale-read bug).
func (s *Server) withLeader(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LeaderWait)
	defer cancel()
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, 200*time.Millisecond) {
		err := f(ctx)
		if err == nil || !api.Retryable(err) {
			return err
		}
		if !sleepCtx(ctx, backoff) {
			return fmt.Errorf("%w (gave up after %v: %w)", err, s.cfg.LeaderWait, ctx.Err())
		}
	}
}

func (s *Server) proposeOnce(ctx context.Context, cmd *peerv1.Command) (uint64, *peerv1.CommandResult, error) {
	if s.raft.State() == raft.Leader {
		return s.applyLocal(ctx, cmd)
	}
	addr, err := s.leaderAddr()
	if err != nil {
		return 0, nil, err
	}
	f, err := s.peers.proposer(addr).Do(ctx, cmd)
	return f.index, f.res, err
}

// applyLocal appends cmd on this node, which must lead, and returns its
// result once this node applied it.
func (s *Server) applyLocal(ctx context.Context, cmd *peerv1.Command) (uint64, *peerv1.CommandResult, error) {
	f, err := s.enqueue(ctx, cmd)
	if err != nil {
		return 0, nil, err
	}
	return awaitApply(f)
}

// enqueue hands cmd to raft, stamped with the leader's clock and, when it has
// a request id, its fingerprint, without waiting for it: commands enqueued
// together share a group commit. Every command reaches the log through here,
// so the fingerprint is computed in one place and carried in the entry: each
// node compares the logged bytes, whatever version of the code it runs.
func (s *Server) enqueue(ctx context.Context, cmd *peerv1.Command) (raft.ApplyFuture, error) {
	cmd.TimeMs = time.Now().UnixMilli()
	cmd.Fingerprint = nil
	if cmd.RequestId != "" {
		cmd.Fingerprint = ztree.Fingerprint(cmd)
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encoding command: %w", err)
	}
	timeout := time.Duration(0)
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return s.applyTimed(data, timeout), nil
}

// awaitApply waits for an enqueued command to be applied on this node. raft
// answers every future while it runs (committed, or ErrLeadershipLost), which
// is why Close stops all callers before it stops raft.
func awaitApply(f raft.ApplyFuture) (uint64, *peerv1.CommandResult, error) {
	if err := f.Error(); err != nil {
		return 0, nil, err
	}
	switch r := f.Response().(type) {
	case *peerv1.CommandResult:
		return f.Index(), r, nil
	case error:
		return 0, nil, r
	default:
		return 0, nil, fmt.Errorf("coordinator: unexpected apply response %T", r)
	}
}

// newRequestID returns a random 128-bit id for a write whose client gave none,
// so that this node's own retries are still applied once.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return "srv-" + hex.EncodeToString(b[:])
}
