package coordinator

import (
	"fmt"
	"sync"
)

// transferGuard keeps leadership transfers away from a hashicorp/raft bug
// (v1.7.3; hashicorp/raft#696, open) that leaves a leader unable to write
// for good.
//
// raft's leadershipTransfer asks the target's replication goroutine to
// catch the target up by a blocking send on a channel of capacity 1
// (triggerDeferErrorCh), outside any select. A transfer that times out can
// leave its request in that channel while the replication goroutine is busy
// (a follower that does not answer: raft's backoff, or rejoin.go's hold).
// A second transfer to the same target in the same term then blocks on
// that send; if the leader steps down before the replication goroutine
// reads the channel again, nobody ever does, the transfer never reports
// done, and raft's leadership-transfer-in-progress flag stays set. When
// the node is elected again, every write it makes, its first no-op
// included, fails with "leadership transfer in progress" until it
// restarts. The robustness harness hit this (seed 9117: a transfer storm
// during a kill; the re-elected leader refused writes for 3 minutes).
//
// The guard refuses the second transfer instead: once a transfer in a term
// failed, no transfer to the same target (or with no target, where raft
// picks one we cannot see) starts again in that term. A transfer to
// another named target uses another channel and is allowed. The next
// election, or a successful transfer, starts a new term.
type transferGuard struct {
	mu     sync.Mutex
	term   uint64
	failed map[string]bool // targets ("" = raft's pick) whose transfer failed in term
}

// allow reports whether a transfer to target ("" for raft's pick) may start
// in term.
func (g *transferGuard) allow(term uint64, target string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if term != g.term {
		return nil
	}
	if g.failed[""] || g.failed[target] || (target == "" && len(g.failed) > 0) {
		return fmt.Errorf("an earlier leadership transfer in term %d did not complete, and raft cannot safely start another to the same member in this term (hashicorp/raft#696); retry after the next election or name another member", term)
	}
	return nil
}

// done records the outcome of a transfer to target in term.
func (g *transferGuard) done(term uint64, target string, err error) {
	if err == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if term != g.term {
		g.term, g.failed = term, map[string]bool{}
	}
	g.failed[target] = true
}
