//go:build unix

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestWriteThroughFollowerLinearizableReadOnAnother: a client that writes
// through one follower and reads through another sees every write it had
// acknowledged, and the cluster keeps serving after its leader is stopped
// gracefully.
func TestWriteThroughFollowerLinearizableReadOnAnother(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 90*time.Second)
	leader := c.WaitLeader(t, ctx)
	fs := c.Others(leader)
	w, r := fs[0], fs[1]
	t.Logf("leader %s, writing through %s, reading through %s", leader.ID, w.ID, r.ID)

	mustRetry(t, ctx, "create /lin", func(ctx context.Context) (*colonyv1.CreateResponse, error) {
		return w.Tree().Create(ctx, &colonyv1.CreateRequest{Path: "/lin", Data: []byte("v0"), RequestId: "lin-create"})
	})

	// readSees reads /lin linearizably through node and checks it shows the
	// acknowledged write that made version.
	readSees := func(node *Node, version int64, ack *colonyv1.SetResponse) {
		t.Helper()
		got := mustRetry(t, ctx, "linearizable get through "+node.ID, func(ctx context.Context) (*colonyv1.GetResponse, error) {
			return node.Tree().Get(ctx, &colonyv1.GetRequest{Path: "/lin"})
		})
		if want := fmt.Sprintf("v%d", version); string(got.Data) != want || got.Stat.GetVersion() != version {
			t.Fatalf("linearizable read through %s after write %d was acknowledged through %s: got %q version %d, want %q version %d",
				node.ID, version, w.ID, got.Data, got.Stat.GetVersion(), want, version)
		}
		if got.Header.GetMemberId() != node.ID {
			t.Errorf("read through %s was served by %q", node.ID, got.Header.GetMemberId())
		}
		if got.Header.GetZxid() < ack.Stat.GetMzxid() {
			t.Errorf("read through %s reflects zxid %d, older than the acknowledged write's zxid %d",
				node.ID, got.Header.GetZxid(), ack.Stat.GetMzxid())
		}
	}

	const writes = 30
	var last *colonyv1.SetResponse
	for i := int64(1); i <= writes; i++ {
		ack := mustRetry(t, ctx, fmt.Sprintf("set %d through %s", i, w.ID), func(ctx context.Context) (*colonyv1.SetResponse, error) {
			return w.Tree().Set(ctx, &colonyv1.SetRequest{
				Path: "/lin", Data: fmt.Appendf(nil, "v%d", i), ExpectedVersion: proto.Int64(i - 1),
				RequestId: fmt.Sprintf("lin-set-%d", i),
			})
		})
		if ack.Header.GetZxid() < ack.Stat.GetMzxid() {
			t.Errorf("set %d: reply header zxid %d is older than the write's zxid %d", i, ack.Header.GetZxid(), ack.Stat.GetMzxid())
		}
		readSees(r, i, ack)
		last = ack
	}

	// A graceful stop of the leader (SIGTERM) hands leadership over; the
	// followers keep every acknowledged write and keep accepting writes.
	signalled := time.Now()
	leader.Stop(t)
	t.Logf("%s exited %v after SIGTERM", leader.ID, time.Since(signalled).Round(time.Millisecond))
	readSees(r, writes, last)
	readSees(w, writes, last)
	start := time.Now()
	ack, attempts, err := retry(ctx, func(ctx context.Context) (*colonyv1.SetResponse, error) {
		return w.Tree().Set(ctx, &colonyv1.SetRequest{
			Path: "/lin", Data: fmt.Appendf(nil, "v%d", writes+1), ExpectedVersion: proto.Int64(writes),
			RequestId: "lin-after-stop",
		})
	})
	if err != nil {
		t.Fatalf("write after a graceful stop of the leader: %v", err)
	}
	t.Logf("first write after the leader's graceful stop took %v (%d attempts)", time.Since(start).Round(time.Millisecond), attempts)
	readSees(r, writes+1, ack)
	newLeader := c.WaitLeader(t, ctx)
	t.Logf("new leader: %s", newLeader.ID)
}
