package coordinator

import (
	"context"
	"errors"
	"sync"

	"github.com/hashicorp/raft"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

var errTermNotReady = errors.New("coordinator: leader has not committed an entry in its term yet")

// readyForRead waits, per the consistency asked for, until this node's FSM
// may serve the read: for LINEARIZABLE until it has applied a read index
// confirmed by the leader; for SESSION until it has applied minZxid.
func (s *Server) readyForRead(ctx context.Context, c colonyv1.Consistency, minZxid uint64) error {
	if c == colonyv1.Consistency_CONSISTENCY_SESSION {
		return s.fsm.waitApplied(ctx, minZxid)
	}
	index, err := s.readIndex(ctx)
	if err != nil {
		return err
	}
	return s.fsm.waitApplied(ctx, index)
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
		return 0, errTermNotReady
	}
	if s.raft.CurrentTerm() != lt.term {
		return 0, raft.ErrLeadershipLost
	}
	index := s.raft.CommitIndex()
	if err := s.verifier.verify(ctx); err != nil {
		return 0, err
	}
	if s.raft.CurrentTerm() != lt.term {
		return 0, raft.ErrLeadershipLost
	}
	return index, nil
}

// leaderVerifier coalesces VerifyLeader calls: every caller waits for a round
// that started after it arrived, and one round answers everyone who arrived
// while the previous round was running. Under load this costs one heartbeat
// round trip per batch of reads instead of one per read.
type leaderVerifier struct {
	r  *raft.Raft
	wg *sync.WaitGroup

	mu      sync.Mutex
	next    *verifyRound // collecting callers for the next round
	running bool
}

type verifyRound struct {
	done chan struct{}
	err  error
}

func newLeaderVerifier(r *raft.Raft, wg *sync.WaitGroup) *leaderVerifier {
	return &leaderVerifier{r: r, wg: wg}
}

func (v *leaderVerifier) verify(ctx context.Context) error {
	v.mu.Lock()
	if v.next == nil {
		v.next = &verifyRound{done: make(chan struct{})}
	}
	round := v.next
	if !v.running {
		v.running = true
		v.next = nil
		v.wg.Add(1)
		go v.run(round)
	}
	v.mu.Unlock()
	select {
	case <-round.done:
		return round.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run verifies rounds until no caller is waiting.
func (v *leaderVerifier) run(round *verifyRound) {
	defer v.wg.Done()
	for round != nil {
		round.err = v.r.VerifyLeader().Error()
		close(round.done)
		v.mu.Lock()
		round, v.next = v.next, nil
		if round == nil {
			v.running = false
		}
		v.mu.Unlock()
	}
}
