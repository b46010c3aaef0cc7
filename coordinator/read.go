package coordinator

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/coordinator/api"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// readyForRead waits, per the consistency asked for, until this node's FSM
// may serve the read: for LINEARIZABLE until it has applied a read index
// confirmed by the leader; for SESSION until it has applied minZxid. A
// minZxid the cluster has not committed fails at once (api.ErrFutureZxid).
func (s *Server) readyForRead(ctx context.Context, c colonyv1.Consistency, minZxid uint64) error {
	if c == colonyv1.Consistency_CONSISTENCY_SESSION {
		if s.fsm.applied.Load() >= minZxid {
			return nil
		}
		if minZxid > s.raft.CommitIndex() {
			// This node may not have learned the commit index yet (a
			// follower learns it from the leader's next append): ask.
			committed, err := s.readIndex(ctx)
			if err != nil {
				return err
			}
			if minZxid > committed {
				return fmt.Errorf("%w: min_zxid %d is beyond the cluster's commit index %d; use a zxid from a response of this cluster",
					api.ErrFutureZxid, minZxid, committed)
			}
		}
		return s.awaitApplied(ctx, minZxid)
	}
	index, err := s.readIndex(ctx)
	if err != nil {
		return err
	}
	return s.awaitApplied(ctx, index)
}

// awaitApplied waits until this node's FSM has applied index, which the
// cluster has committed. A follower more than one append (MaxAppendEntries)
// behind, as a restarted node is until raft has caught it up, answers
// api.ErrCatchingUp at once instead of holding the read, so the client tries
// another node. Otherwise the read parks: at most MaxParkedReads at a time,
// each for at most LeaderWait.
func (s *Server) awaitApplied(ctx context.Context, index uint64) error {
	applied := s.fsm.applied.Load()
	if applied >= index {
		return nil
	}
	if index-applied > uint64(s.cfg.MaxAppendEntries) && s.raft.State() != raft.Leader {
		return fmt.Errorf("%w: applied %d of %d", api.ErrCatchingUp, applied, index)
	}
	limit := int64(s.cfg.MaxParkedReads)
	if s.parkedReads.Add(1) > limit {
		s.parkedReads.Add(-1)
		return fmt.Errorf("%w: %d already wait, the limit (MaxParkedReads); retry later or read from another node",
			api.ErrTooManyParked, limit)
	}
	defer s.parkedReads.Add(-1)
	wctx, cancel := context.WithTimeout(ctx, s.cfg.LeaderWait)
	defer cancel()
	err := s.fsm.waitApplied(wctx, index)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: applied %d of %d after waiting %v", api.ErrCatchingUp, s.fsm.applied.Load(), index, s.cfg.LeaderWait)
	}
	return err
}

// readIndex returns an index such that every write acknowledged before the
// call is at or below it, waiting out elections as writes do.
func (s *Server) readIndex(ctx context.Context) (uint64, error) {
	var index uint64
	err := s.withLeader(ctx, func(ctx context.Context) error {
		var err error
		index, err = s.readIndexOnce(ctx)
		return err
	})
	return index, err
}

func (s *Server) readIndexOnce(ctx context.Context) (uint64, error) {
	if s.raft.State() == raft.Leader {
		return s.leaderReadIndex(ctx)
	}
	addr, err := s.leaderAddr()
	if err != nil {
		return 0, err
	}
	resp, err := s.peers.peer(addr).ReadIndex(ctx, &peerv1.ReadIndexRequest{})
	if err != nil {
		return 0, err
	}
	return resp.Index, nil
}

// leaderReadIndex is the read-index protocol on the leader: note the term;
// require an entry committed in it; take the commit index; confirm
// leadership with a heartbeat round that started after the index was taken;
// check the term did not move.
func (s *Server) leaderReadIndex(ctx context.Context) (uint64, error) {
	lt := s.currentLeaderTerm()
	if lt == nil {
		return 0, raft.ErrNotLeader
	}
	select {
	case <-lt.ready:
	case <-ctx.Done():
		return 0, api.ErrTermNotReady
	}
	if s.raft.CurrentTerm() != lt.term {
		return 0, raft.ErrLeadershipLost
	}
	index := s.raft.CommitIndex()
	if err := s.verifier.Verify(ctx); err != nil {
		return 0, err
	}
	if s.raft.CurrentTerm() != lt.term {
		return 0, raft.ErrLeadershipLost
	}
	return index, nil
}
