// Package replication adds to hashicorp/raft's replication what a Colony
// leader needs to get a failed follower its log again quickly: Hold keeps
// a failed replication call from counting as a failure while the follower
// is unreachable (raft's backoff would otherwise sleep up to 10 s after it
// is back), and ConflictWalk walks back over a follower's conflicting
// entries in O(log N) round trips instead of N. Both plug into raft's
// transport through raftdiag.Hooks (Retry, SnapshotFailed, Replied); the
// node wires them in coordinator/observe.go.
package replication

import (
	"time"

	"github.com/hashicorp/raft"
)

// Rejoin: how a follower that failed (crashed, restarted, partitioned) gets
// its log again as soon as it can take it.
//
// hashicorp/raft (v1.7.3 replication.go, replicateTo) counts every failed
// AppendEntries to a follower and sleeps backoff(10ms, failures, 12) before
// the next: 10 ms doubling to 10.24 s after a few seconds of failures. The
// sleep is not interrupted when the follower answers heartbeats again, so a
// restarted member knew the leader but got no entries, and so no commit
// index, for up to 10 s: it answered reads "catching up" and held writes
// forwarded through it.
//
// Hold keeps the failures from counting up while the follower is
// unreachable: the transport does not hand raft a failed replication call
// at once but retries it every interval, and returns as soon as the retry
// succeeds (raft sees no failure and resets nothing: it never backed off).
// A failed InstallSnapshot (a follower too far behind for the log) cannot be
// resent, so it is returned once the follower answers heartbeats again.
// It gives raft the error, so raft's own handling (and backoff) runs, as
// soon as holding is no longer right: the follower answers heartbeats but
// replication to it still fails (it is up but refuses: a broken disk), this
// node stops leading in the call's term, the peer leaves the configuration
// or changes address, the node begins shutting down (done), or the local
// disk stalls (raftlog.StallGuard). Heartbeats are never held: raft's
// heartbeat loop has its own short, capped backoff and must keep reporting
// failures.
//
// While held, raft's replication goroutine for that peer is inside the call,
// as it would be inside its own backoff sleep; everything raft could ask of
// it meanwhile (stop on step-down or removal, shutdown) is covered by the
// conditions above, checked every interval.
type Hold struct {
	interval time.Duration
	done     <-chan struct{}
	d        Diagnostics
	stall    DiskCheck
}

// Diagnostics is what Hold asks of the node's raft diagnostics
// (raftdiag.Diagnostics).
type Diagnostics interface {
	// Raft is the running raft, nil until it runs.
	Raft() *raft.Raft
	// RepliedSince reports whether peer id answered this node after t.
	RepliedSince(id raft.ServerID, t time.Time) bool
}

// DiskCheck fails while this node's disk stalls (raftlog.StallGuard).
type DiskCheck interface {
	Check() error
}

// NewHold returns a Hold that retries every interval until done is closed;
// d tells it about raft and the followers' replies, stall (may be nil) about
// the local disk.
func NewHold(interval time.Duration, done <-chan struct{}, d Diagnostics, stall DiskCheck) *Hold {
	return &Hold{interval: interval, done: done, d: d, stall: stall}
}

// Retry calls call every interval until it succeeds, fails although peer id
// answered heartbeats meanwhile, or holding stops being right for a
// replication call in term to id at target; it returns the last error then
// (first, when it never retried).
func (h *Hold) Retry(id raft.ServerID, target raft.ServerAddress, term uint64, first error, call func() error) error {
	if h == nil {
		return first
	}
	err := first
	since := time.Now()
	t := time.NewTimer(h.interval)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return err
		case <-t.C:
		}
		if !h.shouldHold(id, target, term) {
			return err
		}
		if err = call(); err == nil {
			return nil
		}
		if h.d.RepliedSince(id, since) {
			return err // reachable, yet replication fails: raft's backoff
		}
		t.Reset(h.interval)
	}
}

// UntilReachable returns once peer id has answered this node (a heartbeat
// reply, as the diagnostics saw it) after since, or holding stops being
// right. For a failed InstallSnapshot, whose snapshot reader cannot be sent
// twice: raft then counts one failure per outage instead of one per retry,
// and retries after its shortest backoff.
func (h *Hold) UntilReachable(id raft.ServerID, target raft.ServerAddress, term uint64, since time.Time) {
	if h == nil {
		return
	}
	t := time.NewTimer(h.interval)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		if !h.shouldHold(id, target, term) || h.d.RepliedSince(id, since) {
			return
		}
		t.Reset(h.interval)
	}
}

// shouldHold reports whether this node still leads in term with a working
// disk, and id is still in the configuration at target.
func (h *Hold) shouldHold(id raft.ServerID, target raft.ServerAddress, term uint64) bool {
	if h.stall != nil && h.stall.Check() != nil {
		return false
	}
	r := h.d.Raft()
	if r == nil || r.State() != raft.Leader || r.CurrentTerm() != term {
		return false
	}
	f := r.GetConfiguration() // raft's copy, answered without its loop
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if srv.ID == id {
			return srv.Address == target
		}
	}
	return false
}
