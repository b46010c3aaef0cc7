// Package leaderverify coalesces a raft leader's leadership checks
// (raft.VerifyLeader, one heartbeat round to a quorum): every caller waits
// for a round that started after it arrived, and all callers that arrive
// while a round runs share the next one. The node's linearizable reads and
// keep-alives confirm leadership through it, so a burst of them costs one
// round trip.
package leaderverify

import (
	"context"
	"sync"

	"github.com/hashicorp/raft"
)

// Verifier coalesces VerifyLeader calls: every caller waits for a round
// that started after it arrived, and one round answers everyone who arrived
// while the previous round was running. Under load this costs one heartbeat
// round trip per batch of reads instead of one per read.
type Verifier struct {
	r  Raft
	wg *sync.WaitGroup

	mu      sync.Mutex
	next    *verifyRound // collecting callers for the next round
	running bool
}

type verifyRound struct {
	done chan struct{}
	err  error
}

// Raft is what a Verifier asks of raft (a *raft.Raft).
type Raft interface {
	VerifyLeader() raft.Future
}

// New returns a Verifier of r's leadership whose rounds run in goroutines
// counted in wg, so their owner can wait for them.
func New(r Raft, wg *sync.WaitGroup) *Verifier {
	return &Verifier{r: r, wg: wg}
}

// Verify returns nil once a VerifyLeader round that started after the call
// confirmed this node's leadership, that round's error, or ctx's.
func (v *Verifier) Verify(ctx context.Context) error {
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
func (v *Verifier) run(round *verifyRound) {
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
