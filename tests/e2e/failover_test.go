//go:build unix

package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/framework"
)

// writeAttemptTimeout bounds one attempt of a write in
// TestKillLeaderWhileWriting: far above a write's usual latency, below an
// election's.
const writeAttemptTimeout = 400 * time.Millisecond

// ack is one acknowledged write of TestKillLeaderWhileWriting.
type ack struct {
	n    int       // the write's sequence number: counter value and item data
	path string    // the sequential item it created
	at   time.Time // when the acknowledgement arrived
}

// TestKillLeaderWhileWriting: a client writes through a follower while the
// leader is killed with SIGKILL. Writes resume under a new leader, every
// acknowledged write survives on every remaining node, and no write, however
// often it was retried, is applied twice.
//
// Each write is one multi: a compare-and-set of /kl/counter from n-1 to n
// and a sequential create under /kl/items with data n. A retry that were
// applied a second time would fail its compare-and-set (the writer is the
// only one) or leave a second item with the same data.
func TestKillLeaderWhileWriting(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 120*time.Second)
	leader := c.WaitLeader(t, ctx)
	via := c.Others(leader)[0]
	t.Logf("leader %s, writing through %s", leader.ID, via.ID)

	for _, p := range []string{"/kl", "/kl/items"} {
		mustRetry(t, ctx, "create "+p, func(ctx context.Context) (*colonyv1.CreateResponse, error) {
			return via.Tree().Create(ctx, &colonyv1.CreateRequest{Path: p, RequestId: "kl-setup" + p})
		})
	}
	mustRetry(t, ctx, "create /kl/counter", func(ctx context.Context) (*colonyv1.CreateResponse, error) {
		return via.Tree().Create(ctx, &colonyv1.CreateRequest{Path: "/kl/counter", Data: []byte("0"), RequestId: "kl-setup-counter"})
	})

	var (
		mu      sync.Mutex
		acks    []ack
		retries int
	)
	acked := func() []ack {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(acks)
	}
	stop := make(chan struct{})
	writerErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		writerErr <- func() error {
			for n := 1; ; n++ {
				select {
				case <-stop:
					return nil
				default:
				}
				req := &colonyv1.MultiRequest{
					Ops: []*colonyv1.Op{
						{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{
							Path: "/kl/counter", Data: []byte(strconv.Itoa(n)), ExpectedVersion: proto.Int64(int64(n - 1)),
						}}},
						{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{
							Path: "/kl/items/item-", Data: []byte(strconv.Itoa(n)), Sequential: true,
						}}},
					},
					RequestId: fmt.Sprintf("kl-write-%d", n), // the same on every retry
				}
				// A short per-attempt timeout: attempts caught in the
				// election time out with their outcome unknown and are
				// sent again, perhaps after the first one was applied.
				resp, attempts, err := retryEvery(ctx, writeAttemptTimeout, func(ctx context.Context) (*colonyv1.MultiResponse, error) {
					return via.Tree().Multi(ctx, req)
				})
				if err != nil {
					return fmt.Errorf("write %d through %s: %w", n, via.ID, err)
				}
				if !resp.Succeeded {
					return fmt.Errorf("write %d through %s (after %d attempts) failed: op %d: %v; a retry applied twice would fail its compare-and-set",
						n, via.ID, attempts, resp.FailedOp, resp.Results[resp.FailedOp].GetError())
				}
				mu.Lock()
				acks = append(acks, ack{n: n, path: resp.Results[1].GetCreate().GetPath(), at: time.Now()})
				retries += attempts - 1
				mu.Unlock()
			}
		}()
	}()
	stopWriter := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriter()

	// waitAcks waits until cond holds for the acknowledged writes, or the
	// writer fails.
	waitAcks := func(what string, cond func([]ack) bool) {
		t.Helper()
		for !cond(acked()) {
			select {
			case err := <-writerErr:
				t.Fatalf("writer stopped while waiting for %s: %v", what, err)
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v (%d writes acknowledged)", what, ctx.Err(), len(acked()))
			case <-time.After(10 * time.Millisecond):
			}
		}
	}

	waitAcks("20 writes before the kill", func(a []ack) bool { return len(a) >= 20 })
	killedAt := time.Now()
	leader.Kill(t)
	waitAcks("20 writes after the kill", func(a []ack) bool {
		return len(a) >= 20 && a[len(a)-20].at.After(killedAt)
	})
	stopWriter()
	if err := <-writerErr; err != nil {
		t.Fatal(err)
	}

	all := acked()
	var firstAfter time.Time
	var maxGap time.Duration
	for i, a := range all {
		if firstAfter.IsZero() && a.at.After(killedAt) {
			firstAfter = a.at
		}
		if i > 0 {
			maxGap = max(maxGap, a.at.Sub(all[i-1].at))
		}
	}
	t.Logf("%d writes acknowledged (%d retried attempts); first acknowledgement %v after the kill; longest gap between acknowledgements %v",
		len(all), retries, firstAfter.Sub(killedAt).Round(time.Millisecond), maxGap.Round(time.Millisecond))
	newLeader := c.WaitLeader(t, ctx)
	t.Logf("new leader: %s", newLeader.ID)

	// Every acknowledged write is there, once, on every surviving node.
	for _, node := range c.Running() {
		kids := mustRetry(t, ctx, "children of /kl/items through "+node.ID, func(ctx context.Context) (*colonyv1.ChildrenResponse, error) {
			return node.Tree().Children(ctx, &colonyv1.ChildrenRequest{Path: "/kl/items"})
		})
		byData := map[string][]string{} // item data -> item paths
		for _, name := range kids.Names {
			p := "/kl/items/" + name
			got := mustRetry(t, ctx, "get "+p+" through "+node.ID, func(ctx context.Context) (*colonyv1.GetResponse, error) {
				return node.Tree().Get(ctx, &colonyv1.GetRequest{Path: p})
			})
			byData[string(got.Data)] = append(byData[string(got.Data)], p)
		}
		for d, paths := range byData {
			if len(paths) > 1 {
				t.Errorf("%s: write %s applied %d times: %v", node.ID, d, len(paths), paths)
			}
		}
		for _, a := range all {
			paths := byData[strconv.Itoa(a.n)]
			if len(paths) == 0 {
				t.Errorf("%s: acknowledged write %d (item %s) is missing", node.ID, a.n, a.path)
			} else if paths[0] != a.path {
				t.Errorf("%s: acknowledged write %d created %s, but its item is %s", node.ID, a.n, a.path, paths[0])
			}
		}
		if len(kids.Names) != len(all) {
			t.Errorf("%s: %d items, want exactly the %d acknowledged writes", node.ID, len(kids.Names), len(all))
		}
		counter := mustRetry(t, ctx, "get /kl/counter through "+node.ID, func(ctx context.Context) (*colonyv1.GetResponse, error) {
			return node.Tree().Get(ctx, &colonyv1.GetRequest{Path: "/kl/counter"})
		})
		if want := len(all); string(counter.Data) != strconv.Itoa(want) || counter.Stat.GetVersion() != int64(want) {
			t.Errorf("%s: /kl/counter is %q version %d, want %d version %d", node.ID, counter.Data, counter.Stat.GetVersion(), want, want)
		}
	}
}

// TestRestartKilledNodeCatchesUp: a node killed with SIGKILL and restarted
// from its data dir catches up on the writes it missed and is a voter again.
func TestRestartKilledNodeCatchesUp(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 120*time.Second)
	leader := c.WaitLeader(t, ctx)
	via := c.Others(leader)[0]

	mustRetry(t, ctx, "create /rs", func(ctx context.Context) (*colonyv1.CreateResponse, error) {
		return via.Tree().Create(ctx, &colonyv1.CreateRequest{Path: "/rs", RequestId: "rs-root"})
	})
	create := func(i int) {
		t.Helper()
		p := fmt.Sprintf("/rs/k%02d", i)
		mustRetry(t, ctx, "create "+p, func(ctx context.Context) (*colonyv1.CreateResponse, error) {
			return via.Tree().Create(ctx, &colonyv1.CreateRequest{Path: p, Data: []byte(strconv.Itoa(i)), RequestId: "rs-" + p})
		})
	}
	for i := range 10 {
		create(i)
	}

	// Kill the leader: the restarted node comes back as a former leader of
	// an old term.
	victim := leader
	victim.Kill(t)
	t.Logf("new leader: %s", c.WaitLeader(t, ctx).ID)
	for i := 10; i < 30; i++ {
		create(i)
	}
	last := mustRetry(t, ctx, "create /rs/latest", func(ctx context.Context) (*colonyv1.CreateResponse, error) {
		return via.Tree().Create(ctx, &colonyv1.CreateRequest{Path: "/rs/latest", Data: []byte("final"), RequestId: "rs-latest"})
	})
	lastZxid := last.Stat.GetMzxid()

	restarted := time.Now()
	victim.Restart(t)

	// A session-consistent read through the restarted node waits until it
	// has applied the last write, and then shows it.
	got := mustRetry(t, ctx, "session read through "+victim.ID, func(ctx context.Context) (*colonyv1.GetResponse, error) {
		return victim.Tree().Get(ctx, &colonyv1.GetRequest{
			Path: "/rs/latest", Consistency: colonyv1.Consistency_CONSISTENCY_SESSION, MinZxid: lastZxid,
		})
	})
	t.Logf("restarted %s served the last write %v after its restart began", victim.ID, time.Since(restarted).Round(time.Millisecond))
	if string(got.Data) != "final" || got.Header.GetZxid() < lastZxid || got.Header.GetMemberId() != victim.ID {
		t.Errorf("session read through restarted %s with min_zxid %d: data %q, zxid %d, served by %q; want %q at zxid >= %d by %s",
			victim.ID, lastZxid, got.Data, got.Header.GetZxid(), got.Header.GetMemberId(), "final", lastZxid, victim.ID)
	}
	kids := mustRetry(t, ctx, "session children through "+victim.ID, func(ctx context.Context) (*colonyv1.ChildrenResponse, error) {
		return victim.Tree().Children(ctx, &colonyv1.ChildrenRequest{
			Path: "/rs", Consistency: colonyv1.Consistency_CONSISTENCY_SESSION, MinZxid: lastZxid,
		})
	})
	if len(kids.Names) != 31 {
		t.Errorf("restarted %s lists %d children of /rs, want 31: %v", victim.ID, len(kids.Names), kids.Names)
	}
	// It serves linearizable reads again (it knows the new leader).
	mustRetry(t, ctx, "linearizable read through "+victim.ID, func(ctx context.Context) (*colonyv1.GetResponse, error) {
		return victim.Tree().Get(ctx, &colonyv1.GetRequest{Path: "/rs/k29"})
	})

	// Its own Cluster.Status shows it as a voter, in touch with the leader.
	var st *colonyv1.StatusResponse
	err := framework.Eventually(ctx, 100*time.Millisecond, func() error {
		st = mustRetry(t, ctx, "status through "+victim.ID, func(ctx context.Context) (*colonyv1.StatusResponse, error) {
			return victim.Cluster().Status(ctx, &colonyv1.StatusRequest{})
		})
		if problem := voterProblem(st, victim.ID, 3); problem != "" {
			return errors.New(problem)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("status through restarted %s: %v\n%v", victim.ID, err, st)
	}
	t.Logf("status through %s: leader %s, term %d, applied %d", victim.ID, st.LeaderId, st.Term, st.AppliedIndex)
}

// voterProblem says what keeps st from showing id as a healthy voter in a
// cluster of n members with a leader, or "" when nothing does.
func voterProblem(st *colonyv1.StatusResponse, id string, n int) string {
	if st.LeaderId == "" {
		return "no leader known"
	}
	if len(st.Members) != n {
		return fmt.Sprintf("%d members, want %d", len(st.Members), n)
	}
	for _, m := range st.Members {
		if m.Error != "" {
			return fmt.Sprintf("member %s: %s", m.Id, m.Error)
		}
		if m.Id != id {
			continue
		}
		if m.Suffrage != colonyv1.Suffrage_SUFFRAGE_VOTER {
			return fmt.Sprintf("%s is a %s", id, m.Suffrage)
		}
		if m.State != "Follower" && m.State != "Leader" {
			return fmt.Sprintf("%s is in state %q", id, m.State)
		}
		return ""
	}
	return fmt.Sprintf("%s is not a member", id)
}
