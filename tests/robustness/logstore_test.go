//go:build unix

package robustness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/raftlog"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestFailingFsync is the fsyncgate fault: a node's disk starts failing
// every fsync with EIO (faultfs), first the leader's, then a follower's.
// A store that got EIO from fsync cannot tell what reached the disk (Linux
// may have dropped the dirty pages while the page cache still shows them),
// so the pebble store must neither acknowledge the write nor go on as if it
// had succeeded: the node must exit. The two others keep committing, the
// node is restarted on the healed disk, and the usual checks follow:
// linearizability with final reads through every node (an acknowledged
// write that was lost fails it), watches, convergence of applied index and
// tree. ROBUSTNESS_LOG_STORE picks the store (default here: pebble).
func TestFailingFsync(t *testing.T) {
	const seed = 17
	sc := newScenario(seed, 0, []faultKind{faultSlowDisk})
	sc.LogStore = raftlog.Pebble
	if ls := os.Getenv(envLogStore); ls != "" {
		sc.LogStore = ls
	}
	r, _ := newDiskRun(t, sc, "failing fsync")

	w := r.startWorkload(nil)
	time.Sleep(2 * time.Second) // writes in flight before the first fault

	for _, role := range []string{"leader", "follower"} {
		r.failFsync(role)
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := r.c.WaitReady(rctx); err != nil {
			r.fail("cluster did not recover after the %s's fsync failed: %v", role, err)
		}
		cancel()
		time.Sleep(time.Second)
	}
	r.events.note("healed", "every fault healed")
	time.Sleep(time.Second)
	r.finishKV(w, nil)
	r.logStats(w.clients)
}

// failFsync makes every fsync of one node's disk (the leader's or a
// follower's) fail with EIO until that node has exited, checks that it did
// exit and said why, then heals the disk and restarts the node.
func (r *run) failFsync(role string) {
	ctx := context.Background()
	leader, _ := leaderAndTerm(ctx, r.c)
	idx := -1
	for i, n := range r.c.Nodes {
		if (n.ID == leader) == (role == "leader") {
			idx = i
			break
		}
	}
	if idx < 0 {
		r.fail("failing fsync: no %s (leader %s)", role, leader)
		return
	}
	n, disk := r.c.Nodes[idx], disksOf(r.c).disk(idx)
	pid := n.Pid()
	before := disk.Stats()
	end := r.events.begin("failing-fsync", "%s %s: every fsync fails with EIO", role, n.ID)
	disk.SetFsyncError(syscall.EIO)
	// The node fsyncs on its next log append: the workload keeps them coming.
	exited := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			exited = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	failed := disk.Stats().FailedFsyncs - before.FailedFsyncs
	disk.Heal()
	end()
	if failed == 0 {
		r.fail("failing fsync on %s: no fsync failed", n.ID)
	}
	if !exited {
		r.fail("%s %s went on running for 20s after %d fsyncs failed: it must stop rather than trust what the disk may have dropped", role, n.ID, failed)
		if err := n.Kill(); err != nil {
			r.fail("%v", err)
		}
	} else {
		// The framework reaped it; Kill reports how it ended and forgets it.
		err := n.Kill()
		r.c.t.Logf("failing fsync: %s %s exited after %d failed fsyncs (%v)", role, n.ID, failed, err)
		if log, rerr := os.ReadFile(n.LogPath); rerr != nil || !strings.Contains(string(log), "raftlog: pebble: fatal") {
			r.fail("%s exited without the store's fatal message in its log (%v)", n.ID, rerr)
		}
	}
	if err := n.Restart(ctx); err != nil {
		r.fail("restarting %s after its fsync failed: %v", n.ID, err)
	}
	r.events.note("failing-fsync-restart", "%s restarted on the healed disk", n.ID)
}

// TestMigrateBoltToPebble moves a running boltdb cluster onto the pebble
// store the way an operator would: one node at a time, stop it and start
// it again with --log-store pebble, so a majority serves throughout. Each
// node migrates its raft.db on start, keeps its log, term and vote (it
// rejoins without a snapshot from scratch and the cluster converges), and
// every write made before, during and after is readable through every
// node. Starting a migrated node with boltdb again is refused, naming the
// flag that opens it.
func TestMigrateBoltToPebble(t *testing.T) {
	const seed = 18
	events := newEventLog(time.Now())
	c := newCluster(t, t.TempDir(), clusterOptions{Nodes: 3, Seed: seed, ExtraArgs: []string{"--log-store", raftlog.Bolt}}, events)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var paths []string
	create := func(p string) {
		t.Helper()
		err := retryAdmin(ctx, c, func(ctx context.Context, n *Node) error {
			_, err := n.Tree().Create(ctx, &colonyv1.CreateRequest{Path: p, Data: []byte(p), RequestId: "mig-" + p})
			if status.Code(err) == codes.AlreadyExists {
				return nil // an earlier attempt applied
			}
			return err
		})
		if err != nil {
			t.Fatalf("creating %s: %v", p, err)
		}
		paths = append(paths, p)
	}
	withStore := func(args []string, store string) []string {
		out := slices.Clone(args)
		i := slices.Index(out, "--log-store")
		if i < 0 || i+1 >= len(out) {
			t.Fatalf("no --log-store in %q", args)
		}
		out[i+1] = store
		return out
	}
	for i := range 20 {
		create(fmt.Sprintf("/mig-bolt-%d", i))
	}
	for _, n := range c.Nodes {
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		create("/mig-while-" + n.ID + "-down")
		n.SetArgs(withStore(n.Args(), raftlog.Pebble))
		if err := n.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitReady(ctx); err != nil {
			t.Fatalf("after moving %s to pebble: %v", n.ID, err)
		}
		for name, want := range map[string]bool{"raft-pebble": true, "raft.db.migrated": true, "raft.db": false} {
			if _, err := os.Stat(filepath.Join(n.DataDir, name)); (err == nil) != want {
				t.Fatalf("%s after migrating: %s present %v, want %v", n.ID, name, err == nil, want)
			}
		}
		create("/mig-after-" + n.ID)
	}
	for _, n := range c.Nodes {
		for _, p := range paths {
			rctx, rcancel := context.WithTimeout(ctx, rpcTimeout)
			resp, err := n.Tree().Get(rctx, &colonyv1.GetRequest{Path: p})
			rcancel()
			if err != nil || string(resp.GetData()) != p {
				t.Fatalf("%s: reading %s after the migration: %q, %v", n.ID, p, resp.GetData(), err)
			}
		}
	}

	// Back to boltdb: refused, since raft.db.migrated is older than the log.
	n := c.Nodes[0]
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	n.SetArgs(withStore(n.Args(), raftlog.Bolt))
	err := n.Restart(ctx)
	if err == nil || !strings.Contains(err.Error(), "--log-store pebble") {
		t.Fatalf("starting a migrated node with boltdb: %v, want a refusal naming --log-store pebble", err)
	}
	_ = n.Kill() // it exited; forget the process
	n.SetArgs(withStore(n.Args(), raftlog.Pebble))
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}
