package robustness

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/colonymesh/colony/coordinator/raftlog"
)

// TestPowerLoss cuts the power of whole nodes under the key-value and
// watch load: a node's process is killed (SIGKILL) and every write its
// files took since their last fsync is undone (faultfs's volatile writes),
// which is what a power loss leaves on a disk that acknowledged writes into
// its cache; then the node starts again on what survived. Three rounds:
// a follower, the leader, and every node at once (a data centre losing
// power; see below). In the first two the node's disk holds its fsyncs first, so
// there certainly are writes to undo; in the last, fsyncs are slow and the
// power goes at a random moment of the load. After each round the cluster
// must come back, and at the end the usual checks follow: linearizability
// with final reads through every node (an acknowledged write that was lost
// fails it), watches, convergence of applied index and tree.
//
// After the every-node round a node may no longer hold the events after
// the zxid a watch resumes from (a restarted node's history starts where
// its restart did): the watch is told to resync, and the harness's
// recorders start a fresh segment (they once retried
// forever instead: a resync answered before the watch was created was
// ignored).
//
// It runs once per log store (ROBUSTNESS_LOG_STORE picks one).
// ROBUSTNESS_CANARY=no-fsync runs the nodes with --unsafe-no-fsync, and
// the test must then fail: the whole-cluster power loss takes acknowledged
// writes with it.
func TestPowerLoss(t *testing.T) {
	stores := []string{raftlog.Bolt, raftlog.Pebble}
	if ls := os.Getenv(envLogStore); ls != "" {
		stores = []string{ls}
	}
	for i, store := range stores {
		t.Run("store="+store, func(t *testing.T) {
			seed := uint64(29 + i)
			sc := newScenario(seed, 0, []faultKind{faultSlowDisk})
			sc.LogStore = store
			sc.UnsafeNoFsync = os.Getenv(envCanary) == "no-fsync"
			r, ds := newDiskRun(t, sc, "power loss")
			for i := range r.c.Nodes {
				ds.disk(i).SetVolatile(true)
			}
			w := r.startWorkload(nil)
			time.Sleep(2 * time.Second) // writes in flight before the first fault

			undone := 0
			for _, round := range []string{"follower", "leader", "every node"} {
				undone += r.powerLoss(ds, round)
				rctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
				if _, err := r.c.WaitReady(rctx); err != nil {
					r.fail("the cluster did not come back after the power loss of %s: %v", round, err)
				}
				cancel()
				time.Sleep(time.Second)
			}
			if undone == 0 {
				r.fail("no power loss undid a write: the test proved nothing")
			}
			r.events.note("healed", "every node powered back")
			r.finishKV(w, nil)
			r.logStats(w.clients)
		})
	}
}

// powerLoss cuts the power of the follower, the leader or every node
// (round) and starts them again; it returns how many files lost writes.
func (r *run) powerLoss(ds *diskSet, round string) int {
	ctx := context.Background()
	var idxs []int
	leader, _ := leaderAndTerm(ctx, r.c)
	for i, n := range r.c.Nodes {
		if round == "every node" || (n.ID == leader) == (round == "leader") {
			idxs = append(idxs, i)
		}
	}
	if round != "every node" {
		if len(idxs) == 0 || leader == "" {
			r.fail("power loss: no %s (leader %q)", round, leader)
			return 0
		}
		idxs = idxs[:1]
	}
	end := r.events.begin("power-loss", "%s: %s", round, r.nodeIDs(idxs))
	defer end()
	if round == "every node" {
		// Slow fsyncs, so that writes wait for them at any moment, then
		// the power goes at once for all, at a moment of the load.
		for _, i := range idxs {
			ds.disk(i).SetLatency(20*time.Millisecond, 0, 30*time.Millisecond)
		}
		time.Sleep(1500 * time.Millisecond)
	} else {
		// Hold the node's fsyncs until one waits: the writes before it
		// are unsynced when the power goes.
		d := ds.disk(idxs[0])
		d.Stall()
		for deadline := time.Now().Add(10 * time.Second); d.Stats().WaitingFsyncs == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if d.Stats().WaitingFsyncs == 0 {
			r.fail("power loss of the %s: no fsync reached its disk in 10s", round)
		}
	}
	var wg sync.WaitGroup
	for _, i := range idxs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.c.Nodes[i].Kill(); err != nil {
				r.fail("killing %s: %v", r.c.Nodes[i].ID, err)
			}
		}()
	}
	wg.Wait()
	undone := 0
	for _, i := range idxs {
		n, d := r.c.Nodes[i], ds.disk(i)
		logName := filepath.Base(n.LogPath)
		restored, err := d.PowerLoss(func(rel string) bool { return rel == logName })
		if err != nil {
			r.fail("power loss of %s: %v", n.ID, err)
		}
		d.Heal()
		undone += len(restored)
		r.events.note("power-loss-undo", "%s: writes since the last fsync undone in %s", n.ID, strings.Join(restored, ", "))
		r.t.Logf("power loss (%s) of %s: writes since the last fsync undone in %d files %v", round, n.ID, len(restored), restored)
	}
	for _, i := range idxs {
		n := r.c.Nodes[i]
		if err := n.Restart(ctx); err != nil {
			r.fail("restarting %s after the power loss: %v", n.ID, err)
		}
	}
	return undone
}

func (r *run) nodeIDs(idxs []int) string {
	var ids []string
	for _, i := range idxs {
		ids = append(ids, r.c.Nodes[i].ID)
	}
	return strings.Join(ids, ", ")
}
