package raftdiag

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Config is what the diagnostics need to know of their node.
type Config struct {
	// NodeID is this node's raft server ID.
	NodeID raft.ServerID
	// HeartbeatTimeout is raft's: it sets the floors below which a
	// follower's silence (half of it) or round trip (a fiftieth) is never
	// called slow. Zero: any difference beyond slowFactor counts.
	HeartbeatTimeout time.Duration
	// LeaderLeaseTimeout is raft's: a leader that stepped down without
	// having heard from a majority within it lost its quorum.
	LeaderLeaseTimeout time.Duration
	// MaxAppendEntries is raft's: lag within one append batch is never
	// called slow. Zero: no such allowance.
	MaxAppendEntries int
	// Metrics receive the events the diagnostics see; nil fields are not
	// counted.
	Metrics Metrics
}

// Metrics are the Prometheus collectors the diagnostics feed as events
// happen. The node owns and registers them.
type Metrics struct {
	// LeaderChanges counts the new leaders this node observed.
	LeaderChanges prometheus.Counter
	// HeartbeatRTT observes, on the leader, each heartbeat's round trip in
	// seconds, by follower (one label).
	HeartbeatRTT prometheus.ObserverVec
	// FailedHeartbeats counts, on the leader, the failed heartbeats to
	// each follower (one label).
	FailedHeartbeats *prometheus.CounterVec
}

// Diagnostics holds a node's cluster diagnostics. Its methods are called
// from raft's goroutines (through the Transport), from its own loop (Start)
// and from the node's status and metrics handlers.
type Diagnostics struct {
	id               raft.ServerID
	heartbeatTimeout time.Duration
	leaseTimeout     time.Duration
	maxAppend        int
	metrics          Metrics
	raft             atomic.Pointer[raft.Raft] // set once raft runs

	mu sync.Mutex
	// Elections, oldest first.
	elections  []*colonyv1.LeaderChange
	leader     raft.ServerID // current leader as last observed ("": none)
	lastLeader raft.ServerID // last leader known (never reset to "")
	state      raft.RaftState
	leadTerm   uint64 // the term this node leads in, 0 when it does not
	// Per term: this node took part in its election (sent or received a
	// vote request, or stood), and whether that was a leadership transfer.
	votes map[uint64]bool
	// Terms in which this node led and stepped down with the term
	// unchanged: it could not reach a majority within the lease timeout.
	lostQuorum map[uint64]time.Time

	// The leader's view of its followers, for statsTerm.
	statsTerm  uint64
	statsSince time.Time
	followers  map[raft.ServerID]*followerStats
}

// New returns a node's diagnostics, idle until Start.
func New(cfg Config) *Diagnostics {
	return &Diagnostics{
		id: cfg.NodeID, heartbeatTimeout: cfg.HeartbeatTimeout, leaseTimeout: cfg.LeaderLeaseTimeout,
		maxAppend: cfg.MaxAppendEntries, metrics: cfg.Metrics,
		votes: map[uint64]bool{}, lostQuorum: map[uint64]time.Time{},
		followers: map[raft.ServerID]*followerStats{},
	}
}

// Raft is the raft node given to Start, nil before.
func (d *Diagnostics) Raft() *raft.Raft { return d.raft.Load() }

// Start registers a raft observer and runs the diagnostics loop until ctx
// ends: observations, and the slow-follower samples while this node leads.
// goFunc runs the loop on a goroutine its owner waits for.
func (d *Diagnostics) Start(ctx context.Context, r *raft.Raft, goFunc func(func())) {
	d.raft.Store(r)
	ch := make(chan raft.Observation, 256)
	// Not blocking: raft drops an observation rather than wait for us.
	ob := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState, raft.PeerObservation, raft.RequestVoteRequest,
			raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(ob)
	d.mu.Lock()
	d.state = r.State()
	d.mu.Unlock()
	goFunc(func() {
		defer r.DeregisterObserver(ob)
		tick := time.NewTicker(slowSampleTick)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case o := <-ch:
				d.observe(r, o)
			case now := <-tick.C:
				d.sample(r, now)
			}
		}
	})
}

func (d *Diagnostics) observe(r *raft.Raft, o raft.Observation) {
	term := r.CurrentTerm()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch ob := o.Data.(type) {
	case raft.RequestVoteRequest:
		d.votes[ob.Term] = d.votes[ob.Term] || ob.LeadershipTransfer
	case raft.RaftState:
		if ob == raft.Candidate {
			d.votes[term] = d.votes[term] || false
		}
		if d.state == raft.Leader && ob == raft.Follower && term == d.leadTerm && !d.quorumContacted(r, time.Now()) {
			// Stepped down with the term unchanged, and too few voters
			// answered within the lease: raft's checkLeaderLease.
			d.lostQuorum[d.leadTerm] = time.Now()
		}
		if ob != raft.Leader {
			d.leadTerm = 0
		}
		d.state = ob
	case raft.LeaderObservation:
		prev := d.leader
		d.leader = ob.LeaderID
		if ob.LeaderID == d.id {
			d.leadTerm = term
		}
		if ob.LeaderID == "" || ob.LeaderID == prev {
			return
		}
		if d.metrics.LeaderChanges != nil {
			d.metrics.LeaderChanges.Inc()
		}
		d.recordElection(term, ob.LeaderID)
		d.lastLeader = ob.LeaderID
	case raft.PeerObservation:
		if ob.Removed {
			delete(d.followers, ob.Peer.ID)
		}
	case raft.FailedHeartbeatObservation:
		f := d.follower(ob.PeerID)
		f.failed++
		f.failing = true
		if d.metrics.FailedHeartbeats != nil {
			d.metrics.FailedHeartbeats.WithLabelValues(string(ob.PeerID)).Inc()
		}
	case raft.ResumedHeartbeatObservation:
		d.follower(ob.PeerID).failing = false
	}
}

// FillNodeStatus adds this node's diagnostics to its NodeStatus answer:
// the leader's view of its followers (none on other nodes) and the
// elections this node saw.
func (d *Diagnostics) FillNodeStatus(st *peerv1.NodeStatusResponse) {
	st.Replication = d.Replication(time.Now())
	st.Elections = d.Elections()
}

// FillStatus completes a Status response from the members' answers
// (statuses[i] belongs to resp.Members[i], nil when it did not answer): the
// leader's view of each follower, and the merged election history.
func FillStatus(resp *colonyv1.StatusResponse, statuses []*peerv1.NodeStatusResponse) {
	var repl map[string]*colonyv1.FollowerReplication
	for i, st := range statuses {
		if st != nil && resp.Members[i].GetLeader() && st.GetReplication() != nil {
			repl = st.GetReplication()
		}
	}
	for _, m := range resp.Members {
		if fr, ok := repl[m.Id]; ok && !m.Leader {
			m.Replication = fr
		}
	}
	var all [][]*colonyv1.LeaderChange
	for _, st := range statuses {
		all = append(all, st.GetElections())
	}
	resp.LeaderHistory = MergeElections(all, statusElections)
}
