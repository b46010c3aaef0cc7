package coordinator

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/internal/watchhub"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

// fsm connects raft to the znode tree and the watch hub. raft calls
// ApplyBatch, Snapshot and Restore from one goroutine; everything else reads
// the tree's immutable views and the applied index concurrently.
//
// The applied index only counts entries the FSM sees (commands and
// configuration changes): raft keeps its own no-op and barrier entries from a
// batching FSM. The node therefore never calls raft.Barrier and, after
// winning an election, commits a Noop command of its own before it serves
// linearizable reads, so every read index it hands out is an index this FSM
// reaches.
type fsm struct {
	tree *ztree.Tree
	hub  *watchhub.Hub

	applied atomic.Uint64
	// membersGen changes whenever the member registry may have changed, so
	// readers can cache it.
	membersGen atomic.Uint64

	mu      sync.Mutex
	applyCh chan struct{} // closed and replaced whenever applied advances

	// config is the newest raft configuration entry applied since this
	// node started (nil: none yet), for peers asking whether they are
	// still members (membership.go).
	config atomic.Pointer[appliedConfig]

	// onApplied, if set, is called on the apply goroutine after each batch
	// with the commands and their results (the leader's session tracker
	// learns about opened and closed sessions this way).
	onApplied func(entries []ztree.Entry, results []*peerv1.CommandResult)
	// onCommitted, if set, is told the index and term of the last entry of
	// each batch (on the leader, the transport pushes the commit to the
	// followers: raftdiag's commit push).
	onCommitted func(index, term uint64)
}

var _ raft.BatchingFSM = (*fsm)(nil)

// appliedConfig is where a raft configuration entry the FSM applied lies
// in the log.
type appliedConfig struct{ index, term uint64 }

func newFSM(hub *watchhub.Hub) *fsm {
	return &fsm{tree: ztree.New(), hub: hub, applyCh: make(chan struct{})}
}

// Apply is required by raft.FSM; with batching enabled raft calls ApplyBatch.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed entries in one tree transaction, then makes
// them visible: tree first, applied index second, watch events third, so that
// a watcher or waiter woken by an index can read the state it names.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	entries := make([]ztree.Entry, len(logs))
	resp := make([]any, len(logs))
	membersChanged := false
	for i, l := range logs {
		entries[i].Index = l.Index
		if l.Type == raft.LogConfiguration {
			f.config.Store(&appliedConfig{index: l.Index, term: l.Term})
		}
		if l.Type != raft.LogCommand {
			continue // configuration change, no-op: only advances the index
		}
		cmd := new(peerv1.Command)
		if err := proto.Unmarshal(l.Data, cmd); err != nil {
			// Never produced by this code; applying nothing is deterministic
			// on every node, so the log stays consistent.
			resp[i] = fmt.Errorf("decoding raft entry %d: %w", l.Index, err)
			continue
		}
		entries[i].Cmd = cmd
		switch cmd.Op.(type) {
		case *peerv1.Command_RegisterMember, *peerv1.Command_ForgetMember:
			membersChanged = true
		}
	}
	results, events := f.tree.Apply(entries)
	if membersChanged {
		f.membersGen.Add(1) // after the tree shows the change
	}
	for i, r := range results {
		if r != nil {
			resp[i] = r
		}
	}
	last := logs[len(logs)-1].Index
	f.setApplied(last)
	f.hub.Publish(last, events)
	if f.onApplied != nil {
		f.onApplied(entries, results)
	}
	if f.onCommitted != nil {
		f.onCommitted(last, logs[len(logs)-1].Term)
	}
	return resp
}

func (f *fsm) setApplied(index uint64) {
	f.applied.Store(index)
	f.mu.Lock()
	close(f.applyCh)
	f.applyCh = make(chan struct{})
	f.mu.Unlock()
}

// waitApplied blocks until the FSM has applied index, or ctx ends.
func (f *fsm) waitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		ch := f.applyCh
		f.mu.Unlock()
		if f.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (applied %d): %w", index, f.applied.Load(), ctx.Err())
		}
	}
}

// Snapshot captures an immutable view in O(1); Persist writes it while apply
// goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{view: f.tree.View()}, nil
}

// Restore replaces all state with a snapshot and tells every watcher to
// resync: the history between its position and the snapshot is gone.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.tree.Restore(bufio.NewReaderSize(rc, 1<<16)); err != nil {
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	index := f.tree.View().Index()
	f.membersGen.Add(1)
	f.setApplied(index)
	f.hub.Reset(index)
	return nil
}

type fsmSnapshot struct {
	view *ztree.View
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<16)
	if err := s.view.WriteSnapshot(w); err != nil {
		sink.Cancel()
		return fmt.Errorf("writing snapshot: %w", err)
	}
	if err := w.Flush(); err != nil {
		sink.Cancel()
		return fmt.Errorf("writing snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
