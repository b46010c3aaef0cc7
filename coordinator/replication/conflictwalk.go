package replication

import (
	"sync"

	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/coordinator/raftdiag"
)

// ConflictWalk shortens how long a leader takes to find where a follower's
// log stops matching its own.
//
// A follower that led a term alone (isolated, its writes never committed)
// comes back with a tail of entries the new leader does not have. Each
// AppendEntries that names one of them as its previous entry is refused with
// "previous log term mis-match", and hashicorp/raft (v1.7.3 replication.go,
// replicateTo) then steps its next index back by exactly one, since the
// follower's last index is above it. Every step resends up to
// MaxAppendEntries entries from there on, so a tail of N entries costs N
// round trips of a large request: a robustness run on a loaded machine saw a
// follower walked back one entry every 0.5-1.5 s for 10 s, never catching up
// before the leader's log was compacted under it (etcd's leader instead
// jumps with the follower's reject hint).
//
// SawReply lowers the follower's reported last index on each consecutive
// mismatch so that raft steps back 1, 2, 4, 8... entries: O(log N) round
// trips. Stepping back too far is always safe: the follower checks the
// previous entry as before, skips the entries it already has and replaces
// the conflicting ones; the cost is resending at most N entries once. A
// follower whose log is merely short is left alone: raft already jumps to
// its last index. Diagnostics see the true reply; only raft sees the hint.
type ConflictWalk struct {
	mu     sync.Mutex
	streak map[raft.ServerID]uint // consecutive term mismatches, per follower
}

// SawReply updates resp, the reply of follower id to args, before raft reads it.
func (w *ConflictWalk) SawReply(id raft.ServerID, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if w == nil || raftdiag.IsHeartbeat(args) {
		return
	}
	// A term mismatch at the previous entry: refused, not for a newer term
	// (raft steps down on those), and the follower has an entry there.
	mismatch := !resp.Success && resp.NoRetryBackoff && resp.Term <= args.Term && resp.LastLog >= args.PrevLogEntry && args.PrevLogEntry > 0
	w.mu.Lock()
	defer w.mu.Unlock()
	if !mismatch {
		delete(w.streak, id)
		return
	}
	if w.streak == nil {
		w.streak = map[raft.ServerID]uint{}
	}
	n := w.streak[id]
	w.streak[id] = min(n+1, 62)
	// raft's next index becomes min(prev, LastLog+1): prev - 2^n + 1, at
	// least 1 (raft's own floor).
	step := uint64(1) << n
	if step >= args.PrevLogEntry {
		resp.LastLog = 0
	} else {
		resp.LastLog = args.PrevLogEntry - step
	}
}
