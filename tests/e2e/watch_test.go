//go:build unix

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestFollowerWatchAcrossLeaderChange: a persistent watch served by a
// follower delivers every version of a key exactly once and in order while
// the leader is killed and writes go on. A broken stream is resumed on the
// same node after the last zxid seen; a resync would mean events were lost
// and fails the test.
func TestFollowerWatchAcrossLeaderChange(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 120*time.Second)
	leader := c.WaitLeader(t, ctx)
	watched := c.Others(leader)[0] // never killed
	t.Logf("leader %s, watching and writing through %s", leader.ID, watched.ID)

	mustRetry(t, ctx, "create /w", func(ctx context.Context) (*colonyv1.CreateResponse, error) {
		return watched.Tree().Create(ctx, &colonyv1.CreateRequest{Path: "/w", Data: []byte("0"), RequestId: "w-create"})
	})

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	// open starts the watch on the watched node, after zxid when resuming.
	open := func(after *uint64) (colonyv1.Watch_WatchClient, uint64, error) {
		stream, err := watched.Watch().Watch(wctx, &colonyv1.WatchRequest{
			Path: "/w", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, AfterZxid: after,
		})
		if err != nil {
			return nil, 0, err
		}
		first, err := stream.Recv()
		if err != nil {
			return nil, 0, err
		}
		if first.Resync {
			t.Fatalf("watch on %s (after_zxid %v) answered resync: %s", watched.ID, after, first.ResyncReason)
		}
		if !first.Created {
			return nil, 0, fmt.Errorf("first watch message is not created: %v", first)
		}
		return stream, first.StartZxid, nil
	}
	stream, lastZxid, err := open(nil)
	if err != nil {
		t.Fatalf("watch /w on %s: %v", watched.ID, err)
	}

	const writes = 40
	const killAfter = 15
	writerErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		writerErr <- func() error {
			for v := int64(1); v <= writes; v++ {
				_, _, err := retry(wctx, func(ctx context.Context) (*colonyv1.SetResponse, error) {
					return watched.Tree().Set(ctx, &colonyv1.SetRequest{
						Path: "/w", Data: []byte(strconv.FormatInt(v, 10)), ExpectedVersion: proto.Int64(v - 1),
						RequestId: fmt.Sprintf("w-set-%d", v),
					})
				})
				if err != nil {
					return fmt.Errorf("set /w to version %d through %s: %w", v, watched.ID, err)
				}
			}
			return nil
		}()
	}()
	defer wg.Wait()
	defer stopWatch()

	var versions []int64
	resumes := 0
	killed := false
	for len(versions) < writes {
		msg, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("watch: %v after %d events (versions %v)", ctx.Err(), len(versions), versions)
			}
			// Resume on the same node right after the last event seen.
			t.Logf("watch stream on %s broke after zxid %d: %v; resuming", watched.ID, lastZxid, err)
			resumes++
			if resumes > 20 {
				t.Fatalf("watch stream on %s broke %d times", watched.ID, resumes)
			}
			after := lastZxid
			for {
				stream, _, err = open(proto.Uint64(after))
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("resuming the watch on %s after zxid %d: %v", watched.ID, after, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		if msg.Resync {
			t.Fatalf("watch on %s asked to resync after %d events (versions %v): %s", watched.ID, len(versions), versions, msg.ResyncReason)
		}
		for _, ev := range msg.Events {
			if ev.Zxid <= lastZxid {
				t.Fatalf("event at zxid %d after zxid %d: out of order or duplicated (%v)", ev.Zxid, lastZxid, ev)
			}
			lastZxid = ev.Zxid
			if ev.Type != colonyv1.EventType_EVENT_TYPE_DATA_CHANGED || ev.Path != "/w" {
				t.Fatalf("unexpected event %v", ev)
			}
			v := ev.Stat.GetVersion()
			if string(ev.Data) != strconv.FormatInt(v, 10) {
				t.Errorf("event for version %d carries data %q", v, ev.Data)
			}
			versions = append(versions, v)
		}
		if !killed && len(versions) >= killAfter {
			leader.Kill(t)
			killed = true
		}
	}
	if err := <-writerErr; err != nil {
		t.Fatal(err)
	}
	for i, v := range versions {
		if v != int64(i+1) {
			t.Fatalf("watch saw versions %v; want every version 1..%d exactly once, in order", versions, writes)
		}
	}
	if len(versions) != writes {
		t.Fatalf("watch saw %d versions, want %d", len(versions), writes)
	}
	t.Logf("watch on %s saw all %d versions in order across the kill of %s (%d resumes)", watched.ID, writes, leader.ID, resumes)

	// The next event is the next write: nothing was queued twice behind the
	// last one.
	other := c.Others(watched)[0]
	mustRetry(t, ctx, "final set through "+other.ID, func(ctx context.Context) (*colonyv1.SetResponse, error) {
		return other.Tree().Set(ctx, &colonyv1.SetRequest{
			Path: "/w", Data: []byte(strconv.Itoa(writes + 1)), ExpectedVersion: proto.Int64(writes), RequestId: "w-final",
		})
	})
	for {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch after the last write: %v", err)
		}
		if msg.Resync {
			t.Fatalf("watch asked to resync: %s", msg.ResyncReason)
		}
		if len(msg.Events) == 0 {
			continue
		}
		if v := msg.Events[0].Stat.GetVersion(); v != writes+1 || msg.Events[0].Zxid <= lastZxid {
			t.Fatalf("after version %d (zxid %d) the watch delivered %v, want version %d", writes, lastZxid, msg.Events[0], writes+1)
		}
		break
	}
}
