package coordinator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/api"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// A SESSION read whose min_zxid the cluster has not committed can never be
// served: every node answers at once with OutOfRange naming min_zxid and
// the commit index (etcd's "future revision"), even when the caller set no
// deadline, instead of holding the read.
func TestSessionReadFutureZxidFailsAtOnce(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	l := c.leader()
	created, err := l.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/f", Data: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	future := created.Header.Zxid + 1_000_000
	for _, n := range append([]*testNode{l}, c.followers()...) {
		t.Run(n.cfg.NodeID, func(t *testing.T) {
			// No deadline: the old code parked this read until the
			// caller gave up; cancel only so a failing test ends.
			rctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := n.tree.Get(rctx, &colonyv1.GetRequest{Path: "/f", Consistency: colonyv1.Consistency_CONSISTENCY_SESSION, MinZxid: future})
				done <- err
			}()
			select {
			case err = <-done:
			case <-ctx.Done():
				t.Fatalf("a read with min_zxid %d (the cluster is at %d) is still waiting", future, created.Header.Zxid)
			}
			if status.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "min_zxid") ||
				!strings.Contains(err.Error(), fmt.Sprint(future)) {
				t.Errorf("read with a future min_zxid: %v; want OutOfRange naming min_zxid %d and the commit index", err, future)
			}
		})
	}
	// A zxid the cluster has committed is still served.
	got, err := c.followers()[0].tree.Get(ctx, &colonyv1.GetRequest{Path: "/f", Consistency: colonyv1.Consistency_CONSISTENCY_SESSION, MinZxid: created.Header.Zxid})
	if err != nil || string(got.Data) != "1" {
		t.Errorf("session read at a committed zxid: %v, %v", got, err)
	}
}

// Reads waiting for this node to apply an index are bounded: past
// MaxParkedReads the next one gets ResourceExhausted naming the limit at
// once; the parked ones leave the count when they end.
func TestParkedReadsBounded(t *testing.T) {
	c := newTestCluster(t, 1, func(c *Config) {
		c.MaxParkedReads = 2
		c.LeaderWait = time.Minute // the parked reads wait until canceled
	})
	ctx := ctxT(t)
	s := c.leader().srv
	// An index far ahead (this node leads, so it is never "catching up"):
	// background writes cannot release the parked reads.
	index := s.fsm.applied.Load() + 1_000_000
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.awaitApplied(pctx, index)
		}()
	}
	for s.parkedReads.Load() < 2 {
		select {
		case <-ctx.Done():
			t.Fatal("the reads never parked")
		case <-time.After(5 * time.Millisecond):
		}
	}
	err := api.ToStatus(s.awaitApplied(ctx, index))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "MaxParkedReads") {
		t.Errorf("a read past the bound: %v; want ResourceExhausted naming MaxParkedReads", err)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if status.Code(api.ToStatus(err)) != codes.Canceled {
			t.Errorf("parked read after its caller canceled: %v", err)
		}
	}
	if got := s.parkedReads.Load(); got != 0 {
		t.Errorf("%d reads still counted as parked", got)
	}
}

// A parked read is bounded in time too: after LeaderWait it gets
// Unavailable ("catching up"), so the client tries another node, even when
// its caller set no deadline.
func TestParkedReadGivesUpAfterLeaderWait(t *testing.T) {
	c := newTestCluster(t, 1, func(c *Config) { c.LeaderWait = 200 * time.Millisecond })
	s := c.leader().srv
	err := api.ToStatus(s.awaitApplied(context.Background(), s.fsm.applied.Load()+1_000_000))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "catching up: applied") {
		t.Errorf("a read parked past LeaderWait: %v; want Unavailable \"catching up: applied X of Y\"", err)
	}
}

// A follower far behind the index a read needs (a restarted node before
// raft caught it up) answers at once with Unavailable "catching up",
// instead of holding the read for LeaderWait, so the client tries another
// node.
func TestFarBehindFollowerRefusesReadsAtOnce(t *testing.T) {
	c := newTestCluster(t, 3, func(c *Config) { c.LeaderWait = time.Hour })
	f := c.followers()[0].srv
	applied := f.fsm.applied.Load()
	// No deadline: only an immediate answer ends this call.
	err := api.ToStatus(f.awaitApplied(context.Background(), applied+uint64(f.cfg.MaxAppendEntries)+1))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), fmt.Sprintf("catching up: applied %d of", applied)) {
		t.Errorf("read far ahead of a follower: %v; want Unavailable \"catching up: applied %d of ...\"", err, applied)
	}
}
