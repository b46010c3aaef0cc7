package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Cluster diagnostics: what raft lets a node see of the cluster's health.
//
//   - Elections, from raft's observations (leader changes, state changes,
//     vote requests received) and the vote and TimeoutNow requests this node
//     sends: who won which term, and why the term started (first leader,
//     heartbeat timeout, leadership transfer, lost quorum). Each node keeps
//     its own last maxElections in memory; Status merges every member's.
//   - On the leader, every follower's replies, seen through
//     observedTransport: hashicorp/raft keeps its per-follower replication
//     state unexported (and sends its per-peer timings to go-metrics'
//     process-global sink), so the node watches the AppendEntries calls
//     raft makes. Heartbeats go to every follower every HeartbeatTimeout/10
//     whatever the write load, and every reply carries the follower's last
//     log index: that gives last contact, heartbeat round trip and lag in
//     entries per follower.
//   - A slow-follower flag: a follower whose round trip, lag or silence is
//     well beyond the other followers' for slowSamples samples in a row.
const (
	maxElections   = 32
	slowSampleTick = 250 * time.Millisecond
	// slowSamples consecutive samples set (and clear) the slow flag: 2s.
	slowSamples = 8
	// slowFactor: how many times the other followers' median a follower's
	// round trip, silence or lag must exceed.
	slowFactor = 4
	// rttAlpha smooths heartbeat round trips (TCP's SRTT weight).
	rttAlpha = 0.125
)

// diagnostics holds a node's cluster diagnostics. Its methods are called
// from raft's goroutines (through observedTransport) and from its own loop.
type diagnostics struct {
	id               raft.ServerID
	heartbeatTimeout time.Duration
	leaseTimeout     time.Duration
	maxAppend        int
	metrics          *nodeMetrics
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

type followerStats struct {
	lastContact time.Time
	rtt         time.Duration // smoothed heartbeat round trip; 0: no sample yet
	lastLog     uint64        // the follower's last log index at its last reply
	lag         uint64        // the leader's last index minus lastLog, then
	failed      uint64        // failed heartbeats this term
	failing     bool          // between a failed and a resumed heartbeat
	slowRun     int           // consecutive samples that looked slow
	fastRun     int           // consecutive samples that did not
	slow        bool
	reason      string // why it looks slow (the latest slow sample)
}

func newDiagnostics(cfg *Config, m *nodeMetrics) *diagnostics {
	return &diagnostics{
		id: raft.ServerID(cfg.NodeID), heartbeatTimeout: cfg.HeartbeatTimeout, leaseTimeout: cfg.LeaderLeaseTimeout,
		maxAppend: cfg.MaxAppendEntries, metrics: m,
		votes: map[uint64]bool{}, lostQuorum: map[uint64]time.Time{},
		followers: map[raft.ServerID]*followerStats{},
	}
}

// observedTransport is the raft transport with the calls the diagnostics
// need to see. Embedding keeps every other method (and the optional
// WithClose and WithPreVote interfaces) of the network transport.
type observedTransport struct {
	*raft.NetworkTransport
	d *diagnostics
	// stall fails this node's AppendEntries while its disk hangs
	// (diskstall.go).
	stall *stallGuard
	// hold retries a failed replication call while the follower is
	// unreachable instead of letting raft back off (rejoin.go). Nil: never.
	hold *replicationHold
	// pipes are the open pipelines, closed when the node shuts down.
	pipes *pipelines
	// walk steps back faster over a follower's conflicting entries
	// (conflictwalk.go). Nil: raft's own one-by-one walk.
	walk *conflictWalk
}

var (
	_ raft.Transport   = (*observedTransport)(nil)
	_ raft.WithClose   = (*observedTransport)(nil)
	_ raft.WithPreVote = (*observedTransport)(nil)
)

func (t *observedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if err := t.stall.check(); err != nil {
		return err
	}
	start := time.Now()
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err != nil && !isHeartbeat(args) {
		err = t.hold.retry(id, target, args.Term, err, func() error {
			start = time.Now()
			return t.NetworkTransport.AppendEntries(id, target, args, resp)
		})
	}
	if err == nil {
		t.d.sawReply(id, args.Term, isHeartbeat(args), start, time.Now(), resp.LastLog)
		t.walk.sawReply(id, args, resp)
	}
	return err
}

// InstallSnapshot is the network transport's, held after a failure until
// the follower answers again (rejoin.go).
func (t *observedTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	start := time.Now()
	err := t.NetworkTransport.InstallSnapshot(id, target, args, resp, data)
	if err != nil {
		t.hold.untilReachable(id, target, args.Term, start)
	}
	return err
}

// AppendEntriesPipeline is the network transport's pipeline behind the
// disk-stall guard: raft's replication goroutines also send the commit
// index every CommitTimeout through it, which would keep the followers'
// leader alive as surely as heartbeats.
func (t *observedTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if err := t.stall.check(); err != nil {
		return nil, err
	}
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	g := &guardedPipeline{AppendPipeline: p, stall: t.stall, set: t.pipes}
	if err := t.pipes.add(g); err != nil {
		p.Close()
		return nil, err
	}
	return g, nil
}

// pipelines tracks a node's open replication pipelines so that Close can
// end them before raft's Shutdown. hashicorp/raft's pipelineReplicate can
// sit forever in a pipeline's AppendEntries once its decoder has returned
// (both of the pipeline's queues full, nobody reading them), and
// raft.Shutdown then waits for it forever: CI caught a node's Close hanging
// there after a leadership transfer. Closing the pipeline releases that
// send; raft then stops replicating as it would on any pipeline error.
type pipelines struct {
	mu   sync.Mutex
	open map[*guardedPipeline]struct{}
	shut bool
}

var errPipelinesShut = errors.New("coordinator: shutting down, no new replication pipelines")

func (ps *pipelines) add(g *guardedPipeline) error {
	if ps == nil {
		return nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.shut {
		return errPipelinesShut
	}
	if ps.open == nil {
		ps.open = map[*guardedPipeline]struct{}{}
	}
	ps.open[g] = struct{}{}
	return nil
}

func (ps *pipelines) remove(g *guardedPipeline) {
	if ps == nil {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.open, g)
}

// closeAll closes every open pipeline and refuses new ones.
func (ps *pipelines) closeAll() {
	ps.mu.Lock()
	ps.shut = true
	open := ps.open
	ps.open = nil
	ps.mu.Unlock()
	for g := range open {
		g.AppendPipeline.Close() // the network pipeline tolerates a second Close
	}
}

type guardedPipeline struct {
	raft.AppendPipeline
	stall *stallGuard
	set   *pipelines
}

func (p *guardedPipeline) Close() error {
	p.set.remove(p)
	return p.AppendPipeline.Close()
}

func (p *guardedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if err := p.stall.check(); err != nil {
		return nil, err
	}
	return p.AppendPipeline.AppendEntries(args, resp)
}

func (t *observedTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	t.d.sawVote(args.Term, args.LeadershipTransfer)
	return t.NetworkTransport.RequestVote(id, target, args, resp)
}

// isHeartbeat matches raft's own test (net_transport.go): a heartbeat
// carries nothing but the term and the leader.
func isHeartbeat(a *raft.AppendEntriesRequest) bool {
	return a.PrevLogEntry == 0 && a.PrevLogTerm == 0 && len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}

// sawReply records a follower's reply to this node, the leader of term.
func (d *diagnostics) sawReply(id raft.ServerID, term uint64, heartbeat bool, start, end time.Time, lastLog uint64) {
	var leaderLast uint64
	if r := d.raft.Load(); r != nil {
		leaderLast = r.LastIndex()
	}
	rtt := end.Sub(start)
	d.mu.Lock()
	defer d.mu.Unlock()
	if term < d.statsTerm {
		return // a late reply from an earlier term
	}
	if term > d.statsTerm {
		d.statsTerm, d.statsSince = term, start
		clear(d.followers)
	}
	f := d.follower(id)
	f.lastContact = end
	f.lastLog = lastLog
	f.lag = leaderLast - min(leaderLast, lastLog)
	if heartbeat {
		if f.rtt == 0 {
			f.rtt = rtt
		} else {
			f.rtt += time.Duration(rttAlpha * float64(rtt-f.rtt))
		}
		d.metrics.heartbeat.WithLabelValues(string(id)).Observe(rtt.Seconds())
	}
}

// repliedSince reports whether follower id replied to this node, as leader
// of the current stats term, after t.
func (d *diagnostics) repliedSince(id raft.ServerID, t time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.followers[id]
	return ok && f.lastContact.After(t)
}

func (d *diagnostics) follower(id raft.ServerID) *followerStats {
	f, ok := d.followers[id]
	if !ok {
		f = &followerStats{}
		d.followers[id] = f
	}
	return f
}

// sawVote records a vote request for term, sent or received.
func (d *diagnostics) sawVote(term uint64, transfer bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.votes[term] = d.votes[term] || transfer
	for t := range d.votes { // keep the recent terms only
		if t+maxElections < term {
			delete(d.votes, t)
		}
	}
}

// start registers a raft observer and runs the diagnostics loop until ctx
// ends: observations, and the slow-follower samples while this node leads.
func (d *diagnostics) start(ctx context.Context, r *raft.Raft, goFunc func(func())) {
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

func (d *diagnostics) observe(r *raft.Raft, o raft.Observation) {
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
		d.metrics.leaderChanges.Inc()
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
		d.metrics.failedHeartbeats.WithLabelValues(string(ob.PeerID)).Inc()
	case raft.ResumedHeartbeatObservation:
		d.follower(ob.PeerID).failing = false
	}
}

// quorumContacted reports whether a majority of the voters (this node
// included) replied within the leader lease, as this node's follower stats
// say (under mu).
func (d *diagnostics) quorumContacted(r *raft.Raft, now time.Time) bool {
	f := r.GetConfiguration() // answered from raft's copy, without its loop
	if f.Error() != nil {
		return true
	}
	voters, contacted := 0, 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		voters++
		if srv.ID == d.id {
			contacted++
		} else if fs, ok := d.followers[srv.ID]; ok && now.Sub(fs.lastContact) <= d.leaseTimeout {
			contacted++
		}
	}
	return contacted >= voters/2+1
}

// recordElection adds what this node knows of term's election (under mu).
func (d *diagnostics) recordElection(term uint64, leader raft.ServerID) {
	e := &colonyv1.LeaderChange{
		Term: term, LeaderId: string(leader), PreviousLeaderId: string(d.lastLeader), AtMs: time.Now().UnixMilli(),
	}
	transfer, voted := d.votes[term]
	var lostAt time.Time
	if d.lastLeader == d.id {
		for t, at := range d.lostQuorum {
			if t < term && at.After(lostAt) {
				lostAt = at
			}
		}
	}
	switch {
	case transfer:
		e.Cause = colonyv1.ElectionCause_ELECTION_CAUSE_LEADERSHIP_TRANSFER
		e.Detail = fmt.Sprintf("%s handed leadership over", e.PreviousLeaderId)
	case !lostAt.IsZero():
		e.Cause = colonyv1.ElectionCause_ELECTION_CAUSE_LOST_QUORUM
		e.Detail = fmt.Sprintf("%s could not reach a majority within the lease timeout and stepped down", d.id)
	case d.lastLeader != "":
		e.Cause = colonyv1.ElectionCause_ELECTION_CAUSE_HEARTBEAT_TIMEOUT
		e.Detail = fmt.Sprintf("followers stopped hearing from %s", e.PreviousLeaderId)
	case voted || leader == d.id:
		e.Cause = colonyv1.ElectionCause_ELECTION_CAUSE_FIRST_LEADER
		e.Detail = "no earlier leader known: the cluster started"
	default:
		e.Detail = fmt.Sprintf("%s was leading when %s started", leader, d.id)
	}
	if n := len(d.elections); n > 0 && d.elections[n-1].Term == term {
		d.elections[n-1] = e
		return
	}
	d.elections = append(d.elections, e)
	if len(d.elections) > maxElections {
		d.elections = slices.Delete(d.elections, 0, len(d.elections)-maxElections)
	}
	for t := range d.lostQuorum {
		if t+maxElections < term {
			delete(d.lostQuorum, t)
		}
	}
	for t := range d.votes {
		if t+maxElections < term {
			delete(d.votes, t)
		}
	}
}

// sample judges every follower against the others, while this node leads.
func (d *diagnostics) sample(r *raft.Raft, now time.Time) {
	leading := r.State() == raft.Leader
	term := r.CurrentTerm()
	d.mu.Lock()
	defer d.mu.Unlock()
	if leading && term == d.statsTerm {
		d.judge(now)
	}
}

// judge takes one slow-follower sample at now (under mu).
func (d *diagnostics) judge(now time.Time) {
	if len(d.followers) < 2 {
		return // one follower alone has no others to lag behind
	}
	type view struct {
		id       raft.ServerID
		age, rtt time.Duration
		lag      uint64
	}
	views := make([]view, 0, len(d.followers))
	for id, f := range d.followers {
		v := view{id: id, rtt: f.rtt, lag: f.lag, age: now.Sub(f.lastContact)}
		if f.lastContact.IsZero() {
			v.age = now.Sub(d.statsSince)
		}
		views = append(views, v)
	}
	for _, v := range views {
		var ages, rtts []time.Duration
		var lags []uint64
		for _, o := range views {
			if o.id != v.id {
				ages, rtts, lags = append(ages, o.age), append(rtts, o.rtt), append(lags, o.lag)
			}
		}
		refAge, refRTT, refLag := median(ages), median(rtts), median(lags)
		var reason string
		switch {
		case v.age > max(slowFactor*refAge, d.heartbeatTimeout/2):
			reason = fmt.Sprintf("no reply for %v (the others: %v)", v.age.Round(time.Millisecond), refAge.Round(time.Millisecond))
		case v.rtt > slowFactor*refRTT && v.rtt-refRTT > d.heartbeatTimeout/50:
			reason = fmt.Sprintf("heartbeat round trip %v (the others: %v)", v.rtt.Round(100*time.Microsecond), refRTT.Round(100*time.Microsecond))
		case v.lag > slowFactor*refLag+uint64(d.maxAppend):
			reason = fmt.Sprintf("%d entries behind (the others: %d)", v.lag, refLag)
		}
		f := d.followers[v.id]
		if reason != "" {
			f.slowRun, f.fastRun = f.slowRun+1, 0
			f.reason = reason
			if f.slowRun >= slowSamples {
				f.slow = true
			}
		} else {
			f.slowRun, f.fastRun = 0, f.fastRun+1
			if f.fastRun >= slowSamples {
				f.slow, f.reason = false, ""
			}
		}
	}
}

func median[T time.Duration | uint64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// replication returns the leader's view of each follower, nil when this
// node does not lead.
func (d *diagnostics) replication(r *raft.Raft, now time.Time) map[string]*colonyv1.FollowerReplication {
	if r.State() != raft.Leader {
		return nil
	}
	term := r.CurrentTerm()
	d.mu.Lock()
	defer d.mu.Unlock()
	if term != d.statsTerm {
		return nil
	}
	out := make(map[string]*colonyv1.FollowerReplication, len(d.followers))
	for id, f := range d.followers {
		fr := &colonyv1.FollowerReplication{
			LastContactMs: -1, HeartbeatRttMs: float64(f.rtt) / float64(time.Millisecond),
			LastLogIndex: f.lastLog, LagEntries: f.lag, FailedHeartbeats: f.failed, Slow: f.slow,
		}
		if f.slow {
			fr.SlowReason = f.reason
		}
		if !f.lastContact.IsZero() {
			fr.LastContactMs = now.Sub(f.lastContact).Milliseconds()
		}
		out[string(id)] = fr
	}
	return out
}

// electionsSeen returns this node's election records, oldest first.
func (d *diagnostics) electionsSeen() []*colonyv1.LeaderChange {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.elections)
}

// fillNodeStatus adds this node's diagnostics to its NodeStatus answer.
func (s *Server) fillNodeStatus(st *peerv1.NodeStatusResponse) {
	st.Replication = s.diag.replication(s.raft, time.Now())
	st.Elections = s.diag.electionsSeen()
}

// addDiagnostics completes a Status response from the members' answers
// (statuses[i] belongs to resp.Members[i], nil when it did not answer): the
// leader's view of each follower, and the merged election history.
func addDiagnostics(resp *colonyv1.StatusResponse, statuses []*peerv1.NodeStatusResponse) {
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
	resp.LeaderHistory = mergeElections(all, 20)
}

// causeRank orders what members may say about the same election: the most
// specific account wins (a follower that only saw heartbeats stop cannot
// know the old leader lost its quorum, or handed over).
var causeRank = map[colonyv1.ElectionCause]int{
	colonyv1.ElectionCause_ELECTION_CAUSE_UNSPECIFIED:         0,
	colonyv1.ElectionCause_ELECTION_CAUSE_FIRST_LEADER:        1,
	colonyv1.ElectionCause_ELECTION_CAUSE_HEARTBEAT_TIMEOUT:   2,
	colonyv1.ElectionCause_ELECTION_CAUSE_LOST_QUORUM:         3,
	colonyv1.ElectionCause_ELECTION_CAUSE_LEADERSHIP_TRANSFER: 4,
}

// mergeElections merges the members' records into one entry per term,
// newest first, at most limit: the earliest time anyone saw the leader, the
// most specific cause, a previous leader when anyone knew it.
func mergeElections(views [][]*colonyv1.LeaderChange, limit int) []*colonyv1.LeaderChange {
	byTerm := map[uint64]*colonyv1.LeaderChange{}
	for _, v := range views {
		for _, e := range v {
			cur, ok := byTerm[e.Term]
			if !ok {
				byTerm[e.Term] = proto.CloneOf(e)
				continue
			}
			if causeRank[e.Cause] > causeRank[cur.Cause] {
				cur.Cause, cur.Detail = e.Cause, e.Detail
			}
			if e.AtMs < cur.AtMs {
				cur.AtMs = e.AtMs
			}
			if cur.PreviousLeaderId == "" {
				cur.PreviousLeaderId = e.PreviousLeaderId
			}
		}
	}
	out := make([]*colonyv1.LeaderChange, 0, len(byTerm))
	for _, e := range byTerm {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Term > out[j].Term })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}
