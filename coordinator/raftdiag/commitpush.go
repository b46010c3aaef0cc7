package raftdiag

import (
	"context"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// Commit push: followers hear of a commit as soon as the leader applies it.
//
// hashicorp/raft (v1.7.3 replication.go, pipelineReplicate) sends a
// follower the leader's commit index only with its next AppendEntries: when
// new entries come, or when the per-follower CommitTimeout timer (random,
// CommitTimeout..2x) fires. A change written while nothing else is being
// written is therefore applied on the followers 5-10 ms after the leader,
// and everything served by a follower waits that long: its watch events,
// the answer to a write forwarded through it (it waits to apply the write),
// a linearizable read there, a lock handoff to a waiter on it. etcd's raft
// sends the new commit index as soon as it moves.
//
// Committed tells the transport the leader applied an entry; the push loop
// then sends, on each open replication pipeline, an AppendEntries with no
// entries whose previous entry is that one and whose commit index is its
// index: the message raft's own timer sends when nothing is new, only
// sooner. It goes only on a pipeline that already carried the entry and
// has not carried that commit index yet, and is serialized with raft's own
// sends, so the follower reads it after the entry itself. Raft's rules make
// it safe: the follower checks that it holds the same entry (index and
// term) before committing up to it, an entry once committed stays
// committed, and a follower in a later term refuses it. Raft reads the
// reply as it reads its own pipelined ones: a contact from the follower in
// this term. A commit applied before raft sent the entry on a follower's
// pipeline (the other followers made the quorum first) is pushed once it
// has. Newer commits coalesce while a notice is being sent, and none is
// sent where raft's own appends already carried the commit index.

// commitPush is the newest commit the leader applied, for the push loop.
type commitPush struct {
	mu          sync.Mutex
	index, term uint64
	wake        chan struct{} // capacity 1: a pending wake-up
}

// Committed records that this node's FSM applied the entry at index, of
// term. On a follower (no pipelines) it costs a lock and a channel send.
func (t *Transport) Committed(index, term uint64) {
	t.push.mu.Lock()
	if index > t.push.index {
		t.push.index, t.push.term = index, term
	}
	t.push.mu.Unlock()
	t.push.poke()
}

// poke wakes the push loop, or leaves the wake-up already pending.
func (c *commitPush) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// pending is the newest commit the leader applied.
func (c *commitPush) pending() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.index
}

// RunCommitPush sends the commit notices until ctx ends. The node runs it
// for its whole life: it has work only while the node leads.
func (t *Transport) RunCommitPush(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.push.wake:
		}
		t.push.mu.Lock()
		index, term := t.push.index, t.push.term
		t.push.mu.Unlock()
		for _, p := range t.pipes.list() {
			p.pushCommit(index, term)
		}
	}
}

// wakeIfPushable wakes the push loop when a commit the leader applied can
// go on p now: p carried its entry and is idle. forward calls it on each
// reply: the commit may have been applied before the entry reached this
// follower's pipeline (the other followers made the quorum first), or while
// raft's requests were in flight.
func (p *guardedPipeline) wakeIfPushable() {
	pending := p.t.push.pending()
	if pending > p.commitSent.Load() && pending <= p.lastSent.Load() && p.sent.Load() == p.answered.Load() {
		p.t.push.poke()
	}
}

// list returns the open pipelines.
func (ps *pipelines) list() []*guardedPipeline {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]*guardedPipeline, 0, len(ps.open))
	for g := range ps.open {
		out = append(out, g)
	}
	return slices.Clip(out)
}

// pushCommit sends the follower a notice that the entry at index (of term)
// is committed, unless raft has not sent it that entry yet on this
// pipeline, or has already sent that commit index.
func (p *guardedPipeline) pushCommit(index, term uint64) {
	if p.t.refuse() != nil {
		return // a node whose disk stalls asserts nothing
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Only on an idle pipeline that has not failed: raft stops reading the
	// replies of a pipeline once one fails, and a send then waits for good;
	// with nothing in flight, the network pipeline takes the notice at once.
	// (With raft's own request waiting on mu meanwhile, the follower reads
	// the notice first, which is as good: it already holds the entry.)
	// answered before failed: forward marks a failure before it counts
	// the reply, so a count that includes it shows the mark too.
	if p.term == 0 || p.sent.Load() != p.answered.Load() || p.failed.Load() ||
		p.lastSent.Load() < index || p.commitSent.Load() >= index {
		return
	}
	args := &raft.AppendEntriesRequest{
		RPCHeader: p.header, Term: p.term, // the header's Addr names the leader
		PrevLogEntry: index, PrevLogTerm: term, LeaderCommitIndex: index,
	}
	if _, err := p.AppendPipeline.AppendEntries(args, new(raft.AppendEntriesResponse)); err != nil {
		return // the pipeline is closing; raft's own send will fail too
	}
	p.sent.Add(1)
	p.commitSent.Store(index)
}
