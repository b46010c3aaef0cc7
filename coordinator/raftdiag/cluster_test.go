package raftdiag

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// testNode is one raft member on loopback with in-memory stores, its
// transport wrapped by its diagnostics.
type testNode struct {
	id        raft.ServerID
	d         *Diagnostics
	tr        *Transport
	r         *raft.Raft
	elections prometheus.Counter
}

// startTestCluster runs n voters whose diagnostics run until the test
// ends; the cleanup closes pipelines, shuts raft down and waits for the
// diagnostics loops.
func startTestCluster(t *testing.T, n int) []*testNode {
	return startTestClusterWith(t, n, nil, nil)
}

// startTestClusterWith is startTestCluster with tweak adjusting each node's
// raft config (nil: none), and the node's FSM fsm(node) (nil: a MockFSM).
func startTestClusterWith(t *testing.T, n int, tweak func(*raft.Config), fsm func(*testNode) raft.FSM) []*testNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	goFunc := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	nodes := make([]*testNode, n)
	var conf raft.Configuration
	for i := range nodes {
		id := raft.ServerID(fmt.Sprintf("n%d", i+1))
		nt, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 5*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig
		cfg.NodeID = id
		cfg.HeartbeatTimeout, cfg.LeaderLeaseTimeout = 300*time.Millisecond, 150*time.Millisecond
		cfg.Metrics.LeaderChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "leader_changes"})
		d := New(cfg)
		nodes[i] = &testNode{id: id, d: d, tr: d.WrapTransport(nt, Hooks{}), elections: cfg.Metrics.LeaderChanges}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: id, Address: nt.LocalAddr()})
	}
	for _, nd := range nodes {
		rc := raft.DefaultConfig()
		rc.LocalID = nd.id
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
		rc.LogOutput = io.Discard
		if tweak != nil {
			tweak(rc)
		}
		var f raft.FSM = new(raft.MockFSM)
		if fsm != nil {
			f = fsm(nd)
		}
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(rc, f, store, store, raft.NewInmemSnapshotStore(), nd.tr)
		if err != nil {
			t.Fatal(err)
		}
		nd.r = r
		nd.d.Start(ctx, r, goFunc)
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.tr.ClosePipelines()
			if err := nd.r.Shutdown().Error(); err != nil {
				t.Errorf("%s: shutdown: %v", nd.id, err)
			}
			nd.tr.CloseStreams()
			nd.tr.Close()
		}
		cancel()
		wg.Wait()
	})
	if err := nodes[0].r.BootstrapCluster(conf).Error(); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// waitFor polls cond every 20 ms until it holds, failing after 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 15s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(nodes []*testNode) *testNode {
	for _, nd := range nodes {
		if nd.r.State() == raft.Leader {
			return nd
		}
	}
	return nil
}

// clusterStatus is what a Status answer would say, every member answering.
func clusterStatus(nodes []*testNode) *colonyv1.StatusResponse {
	resp := &colonyv1.StatusResponse{}
	var statuses []*peerv1.NodeStatusResponse
	for _, nd := range nodes {
		resp.Members = append(resp.Members, &colonyv1.Member{Id: string(nd.id), Leader: nd.r.State() == raft.Leader})
		st := &peerv1.NodeStatusResponse{}
		nd.d.FillNodeStatus(st)
		statuses = append(statuses, st)
	}
	FillStatus(resp, statuses)
	return resp
}

// TestDiagnosticsOfARaftCluster runs the diagnostics on a real three-node
// raft: the leader sees both followers through the wrapped transport, every
// node records the first election, and a leadership transfer is told as
// one; the cleanup's shutdown after ClosePipelines must not hang.
func TestDiagnosticsOfARaftCluster(t *testing.T) {
	nodes := startTestCluster(t, 3)
	var first *testNode
	waitFor(t, "leader", func() bool { first = leaderOf(nodes); return first != nil })

	waitFor(t, "reply from both followers", func() bool {
		repl := first.d.Replication(time.Now())
		if len(repl) != 2 {
			return false
		}
		for id, fr := range repl {
			if id == string(first.id) || fr.LastContactMs < 0 || fr.HeartbeatRttMs <= 0 {
				return false
			}
		}
		return true
	})
	for _, nd := range nodes {
		if nd != first && nd.d.Replication(time.Now()) != nil {
			t.Errorf("follower %s answers a replication view", nd.id)
		}
	}
	waitFor(t, "election record on every node", func() bool {
		for _, nd := range nodes {
			if len(nd.d.Elections()) == 0 {
				return false
			}
		}
		return true
	})
	var m dto.Metric
	if err := first.elections.Write(&m); err != nil || m.GetCounter().GetValue() < 1 {
		t.Errorf("the leader counted %v leader changes (%v), want at least its own", m.GetCounter().GetValue(), err)
	}
	st := clusterStatus(nodes)
	if h := st.LeaderHistory; len(h) == 0 || h[len(h)-1].LeaderId == "" || h[len(h)-1].Term == 1 && h[len(h)-1].Cause != colonyv1.ElectionCause_ELECTION_CAUSE_FIRST_LEADER {
		t.Errorf("history %v: want the first leader's term", h)
	}

	if err := first.r.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	var next *testNode
	waitFor(t, "new leader", func() bool { next = leaderOf(nodes); return next != nil && next != first })
	term := next.r.CurrentTerm()
	waitFor(t, "the transfer in the merged history", func() bool {
		for _, e := range clusterStatus(nodes).LeaderHistory {
			if e.Term == term {
				return e.LeaderId == string(next.id) && e.PreviousLeaderId == string(first.id) &&
					e.Cause == colonyv1.ElectionCause_ELECTION_CAUSE_LEADERSHIP_TRANSFER
			}
		}
		return false
	})
}
