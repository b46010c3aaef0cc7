//go:build unix

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestWatchOnPausedLeaderDeliversAfterResume: a persistent watch served by
// the leader, without progress notifications, keeps its stream while the
// leader is stopped (SIGSTOP) past the election timeout, a new leader takes
// writes, and the old one resumes as a follower: the stream then delivers
// every change made during and after the pause, with no resync and no
// resume. The robustness harness saw watches fall silent only on paused
// nodes (issue 13 item 10); this checks that a pause alone does not leave
// a stream silent once the node runs again.
func TestWatchOnPausedLeaderDeliversAfterResume(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 120*time.Second)
	leader := c.WaitLeader(t, ctx)
	writer := c.Others(leader)[0]
	mustRetry(t, ctx, "create /p", func(ctx context.Context) (*colonyv1.CreateResponse, error) {
		return writer.Tree().Create(ctx, &colonyv1.CreateRequest{Path: "/p", RequestId: "p-create"})
	})

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := leader.Watch().Watch(wctx, &colonyv1.WatchRequest{Path: "/p", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, Recursive: true})
	if err != nil {
		t.Fatalf("watch on %s: %v", leader.ID, err)
	}
	if first, err := stream.Recv(); err != nil || !first.GetCreated() {
		t.Fatalf("watch on %s: first message %v, %v", leader.ID, first, err)
	}
	events := make(chan *colonyv1.Event, 100)
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if resp.GetResync() {
				recvErr <- fmt.Errorf("resync: %s", resp.GetResyncReason())
				return
			}
			for _, ev := range resp.GetEvents() {
				events <- ev
			}
		}
	}()

	write := func(i int) {
		mustRetry(t, ctx, fmt.Sprintf("create /p/k%d", i), func(ctx context.Context) (*colonyv1.CreateResponse, error) {
			return writer.Tree().Create(ctx, &colonyv1.CreateRequest{Path: fmt.Sprintf("/p/k%d", i), RequestId: fmt.Sprintf("p-%d", i)})
		})
	}
	if err := leader.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	for i := range 5 {
		write(i) // through the other nodes, once they elect a leader
	}
	time.Sleep(time.Until(paused.Add(3 * time.Second)))
	if err := leader.Resume(); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 10; i++ {
		write(i)
	}
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < 10 {
		select {
		case ev := <-events:
			seen[ev.GetPath()] = true
		case err := <-recvErr:
			t.Fatalf("the watch on %s ended after %d of 10 events: %v", leader.ID, len(seen), err)
		case <-deadline:
			t.Fatalf("the watch on %s, paused and resumed, delivered %d of 10 events in 30 s and then nothing: %v", leader.ID, len(seen), seen)
		}
	}
}
