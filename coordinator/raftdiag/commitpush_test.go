package raftdiag

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// pushFSM applies nothing but records the last index applied and, as the
// coordinator's FSM does, tells its node's transport of each commit.
type pushFSM struct {
	tr      *Transport
	applied atomic.Uint64
}

func (f *pushFSM) Apply(l *raft.Log) any {
	f.applied.Store(l.Index)
	f.tr.Committed(l.Index, l.Term)
	return nil
}
func (f *pushFSM) Snapshot() (raft.FSMSnapshot, error) { return new(raft.MockSnapshot), nil }
func (f *pushFSM) Restore(io.ReadCloser) error         { return nil }

// TestFollowersApplyACommitAtOnce: with raft's own commit timer set to 5 s,
// a write made while nothing else is written reaches every follower's FSM
// well before that timer could tell them: the leader's transport pushes the
// commit index as soon as the leader applies the entry.
func TestFollowersApplyACommitAtOnce(t *testing.T) {
	const commitTimeout = 5 * time.Second
	fsms := map[raft.ServerID]*pushFSM{}
	var mu sync.Mutex
	nodes := startTestClusterWith(t, 3,
		func(c *raft.Config) { c.CommitTimeout = commitTimeout },
		func(nd *testNode) raft.FSM {
			f := &pushFSM{tr: nd.tr}
			mu.Lock()
			fsms[nd.id] = f
			mu.Unlock()
			return f
		})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, nd := range nodes {
		wg.Go(func() { nd.tr.RunCommitPush(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	var leader *testNode
	waitFor(t, "leader", func() bool { leader = leaderOf(nodes); return leader != nil })
	applyAll := func(what string) (uint64, time.Duration) {
		f := leader.r.Apply([]byte(what), 5*time.Second)
		if err := f.Error(); err != nil {
			t.Fatalf("apply %s: %v", what, err)
		}
		index, committed := f.Index(), time.Now()
		for _, nd := range nodes {
			deadline := time.Now().Add(3 * commitTimeout)
			for fsms[nd.id].applied.Load() < index {
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s has not applied index %d after %v", what, nd.id, index, 3*commitTimeout)
				}
				time.Sleep(time.Millisecond)
			}
		}
		return index, time.Since(committed)
	}
	// The first write after the election may find a pipeline not open yet
	// (raft opens them after its first successful append), and wait for the
	// timer; the ones after go through the pipelines.
	applyAll("first")
	for i := range 5 {
		index, took := applyAll("next")
		t.Logf("write %d (index %d): every follower applied it %v after the leader", i, index, took)
		if took >= commitTimeout/5 {
			t.Fatalf("index %d reached every follower %v after the leader's commit; raft's own timer fires after %v..%v, the push within a round trip", index, took, commitTimeout, 2*commitTimeout)
		}
	}
}
