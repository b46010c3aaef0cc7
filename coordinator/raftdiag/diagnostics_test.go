package raftdiag

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestSawReply: replies build the leader's view of a term's followers; a
// newer term starts it afresh and a late reply from an older term is
// dropped. Without a running raft the leader's last index reads 0.
func TestSawReply(t *testing.T) {
	rtts := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rtt"}, []string{"follower"})
	cfg := testConfig
	cfg.Metrics.HeartbeatRTT = rtts
	d := New(cfg)
	t0 := time.Unix(1000, 0)

	d.sawReply("n2", 3, true, t0, t0.Add(8*time.Millisecond), 40)
	d.sawReply("n2", 3, true, t0.Add(time.Second), t0.Add(time.Second+16*time.Millisecond), 41)
	d.sawReply("n3", 3, false, t0, t0.Add(50*time.Millisecond), 7) // an append: no round trip sample
	f := d.followers["n2"]
	if want := 9 * time.Millisecond; f.rtt != want { // 8ms + (16ms-8ms)/8
		t.Errorf("n2 smoothed round trip %v, want %v", f.rtt, want)
	}
	if f.lastLog != 41 || f.lag != 0 || !f.lastContact.Equal(t0.Add(time.Second+16*time.Millisecond)) {
		t.Errorf("n2: %+v", f)
	}
	if d.followers["n3"].rtt != 0 || d.followers["n3"].lastLog != 7 {
		t.Errorf("n3: %+v", d.followers["n3"])
	}
	if n := seriesOf(rtts); n != 1 {
		t.Errorf("%d heartbeat series, want n2's only", n)
	}
	if !d.RepliedSince("n2", t0) || d.RepliedSince("n2", t0.Add(2*time.Second)) || d.RepliedSince("n4", t0) {
		t.Error("RepliedSince does not follow the replies")
	}

	d.sawReply("n2", 4, true, t0.Add(2*time.Second), t0.Add(2*time.Second+time.Millisecond), 50)
	if len(d.followers) != 1 || d.statsTerm != 4 || !d.statsSince.Equal(t0.Add(2*time.Second)) {
		t.Errorf("term 4 kept term 3's followers or start: %v followers, term %d since %v", len(d.followers), d.statsTerm, d.statsSince)
	}
	if d.followers["n2"].rtt != time.Millisecond {
		t.Errorf("term 4's round trip %v, want a fresh sample", d.followers["n2"].rtt)
	}
	d.sawReply("n3", 3, true, t0.Add(3*time.Second), t0.Add(3*time.Second), 60)
	if _, ok := d.followers["n3"]; ok {
		t.Error("a late reply from term 3 was counted in term 4")
	}
}

// seriesOf counts the series c has.
func seriesOf(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

func TestReplicationView(t *testing.T) {
	d := New(testConfig)
	now := time.Unix(1000, 0)
	if got := d.Replication(now); got != nil {
		t.Errorf("before raft runs: %v, want nil", got)
	}
	d.followers["n2"] = &followerStats{lastContact: now.Add(-1500 * time.Millisecond), rtt: 2500 * time.Microsecond, lastLog: 9, lag: 3, failed: 2, reason: "an old doubt"}
	d.followers["n3"] = &followerStats{failing: true, slow: true, reason: "no reply for 3s (the others: 1ms)"}
	got := d.replicationAt(now)
	n2, n3 := got["n2"], got["n3"]
	if n2.GetLastContactMs() != 1500 || n2.GetHeartbeatRttMs() != 2.5 || n2.GetLastLogIndex() != 9 || n2.GetLagEntries() != 3 ||
		n2.GetFailedHeartbeats() != 2 || n2.GetSlow() || n2.GetSlowReason() != "" {
		t.Errorf("n2: %v", n2)
	}
	if n3.GetLastContactMs() != -1 || !n3.GetSlow() || n3.GetSlowReason() != "no reply for 3s (the others: 1ms)" {
		t.Errorf("n3: %v", n3)
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []uint64
		want uint64
	}{{nil, 0}, {[]uint64{7}, 7}, {[]uint64{9, 1, 5}, 5}, {[]uint64{10, 2, 4, 8}, 6}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
	in := []time.Duration{3, 1, 2}
	if median(in) != 2 || in[0] != 3 {
		t.Error("median of durations is wrong or sorted its input")
	}
}

// TestRecordElectionCause: what a node says about a term's election from
// what it saw before the new leader appeared.
func TestRecordElectionCause(t *testing.T) {
	tests := []struct {
		name       string
		lastLeader raft.ServerID
		votes      map[uint64]bool
		lostQuorum map[uint64]time.Time
		leader     raft.ServerID
		cause      colonyv1.ElectionCause
		detail     string
	}{
		{name: "a transfer vote", lastLeader: "n2", votes: map[uint64]bool{5: true}, leader: "n3",
			cause: colonyv1.ElectionCause_ELECTION_CAUSE_LEADERSHIP_TRANSFER, detail: "n2 handed leadership over"},
		{name: "this node led and lost its quorum", lastLeader: "n1", lostQuorum: map[uint64]time.Time{4: time.Now()}, leader: "n2",
			cause: colonyv1.ElectionCause_ELECTION_CAUSE_LOST_QUORUM, detail: "n1 could not reach a majority"},
		{name: "another node's lost quorum is not this node's to tell", lastLeader: "n2", lostQuorum: map[uint64]time.Time{4: time.Now()}, leader: "n3",
			cause: colonyv1.ElectionCause_ELECTION_CAUSE_HEARTBEAT_TIMEOUT, detail: "followers stopped hearing from n2"},
		{name: "lost quorum in this very term does not count", lastLeader: "n1", lostQuorum: map[uint64]time.Time{5: time.Now()}, leader: "n2",
			cause: colonyv1.ElectionCause_ELECTION_CAUSE_HEARTBEAT_TIMEOUT, detail: "followers stopped hearing from n1"},
		{name: "a previous leader known", lastLeader: "n2", votes: map[uint64]bool{5: false}, leader: "n1",
			cause: colonyv1.ElectionCause_ELECTION_CAUSE_HEARTBEAT_TIMEOUT, detail: "followers stopped hearing from n2"},
		{name: "voted, no leader before", votes: map[uint64]bool{5: false}, leader: "n2",
			cause: colonyv1.ElectionCause_ELECTION_CAUSE_FIRST_LEADER, detail: "the cluster started"},
		{name: "won, no leader before", leader: "n1",
			cause: colonyv1.ElectionCause_ELECTION_CAUSE_FIRST_LEADER, detail: "the cluster started"},
		{name: "joined while n2 led", leader: "n2",
			cause: colonyv1.ElectionCause_ELECTION_CAUSE_UNSPECIFIED, detail: "n2 was leading when n1 started"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(testConfig)
			d.lastLeader = tt.lastLeader
			for term, transfer := range tt.votes {
				d.votes[term] = transfer
			}
			for term, at := range tt.lostQuorum {
				d.lostQuorum[term] = at
			}
			d.recordElection(5, tt.leader)
			got := d.Elections()
			if len(got) != 1 {
				t.Fatalf("%d records, want 1", len(got))
			}
			e := got[0]
			if e.Term != 5 || e.LeaderId != string(tt.leader) || e.PreviousLeaderId != string(tt.lastLeader) || e.AtMs == 0 {
				t.Errorf("record %v", e)
			}
			if e.Cause != tt.cause || !strings.Contains(e.Detail, tt.detail) {
				t.Errorf("cause %v %q, want %v saying %q", e.Cause, e.Detail, tt.cause, tt.detail)
			}
		})
	}
}

// TestElectionHistoryBounded: a node keeps its last maxElections terms, one
// record per term (a second leader seen in the same term replaces the
// first), and forgets the votes and lost quorums of terms that old.
func TestElectionHistoryBounded(t *testing.T) {
	d := New(testConfig)
	const last = maxElections + 10
	for term := uint64(1); term <= last; term++ {
		d.sawVote(term, false)
		d.lostQuorum[term] = time.Now()
		d.recordElection(term, "n2")
		d.lastLeader = "n2"
	}
	d.recordElection(last, "n3")
	got := d.Elections()
	if len(got) != maxElections {
		t.Fatalf("%d records, want %d", len(got), maxElections)
	}
	if got[0].Term != last-maxElections+1 || got[len(got)-1].Term != last || got[len(got)-1].LeaderId != "n3" {
		t.Errorf("kept terms %d..%d (last led by %s), want %d..%d led by n3", got[0].Term, got[len(got)-1].Term, got[len(got)-1].LeaderId, last-maxElections+1, last)
	}
	for term := range d.votes {
		if term+maxElections < last {
			t.Errorf("the vote of term %d is still kept", term)
		}
	}
	for term := range d.lostQuorum {
		if term+maxElections < last {
			t.Errorf("the lost quorum of term %d is still kept", term)
		}
	}
	got[0] = nil
	if d.Elections()[0] == nil {
		t.Error("Elections returned the node's own slice")
	}
}

func TestSawVote(t *testing.T) {
	d := New(testConfig)
	d.sawVote(3, true)
	d.sawVote(3, false)
	if transfer, ok := d.votes[3]; !ok || !transfer {
		t.Errorf("term 3: voted %v, transfer %v; want a transfer remembered", ok, transfer)
	}
	d.sawVote(3+maxElections+1, false)
	if _, ok := d.votes[3]; ok {
		t.Error("a vote more than maxElections terms old is still kept")
	}
}

// TestFillStatus: the leader's answer gives the followers' replication
// view (never the leader's own), and the history merges every answer.
func TestFillStatus(t *testing.T) {
	resp := &colonyv1.StatusResponse{Members: []*colonyv1.Member{{Id: "n1"}, {Id: "n2", Leader: true}, {Id: "n3"}, {Id: "n4"}}}
	repl := map[string]*colonyv1.FollowerReplication{"n1": {LagEntries: 1}, "n2": {LagEntries: 2}, "n3": {LagEntries: 3}}
	statuses := []*peerv1.NodeStatusResponse{
		{Replication: map[string]*colonyv1.FollowerReplication{"n3": {LagEntries: 99}}, // not the leader: ignored
			Elections: []*colonyv1.LeaderChange{{Term: 2, LeaderId: "n2", AtMs: 20}}},
		{Replication: repl, Elections: []*colonyv1.LeaderChange{{Term: 1, LeaderId: "n1", AtMs: 10}, {Term: 2, LeaderId: "n2", AtMs: 21}}},
		nil, // did not answer
		{},
	}
	FillStatus(resp, statuses)
	for _, m := range resp.Members {
		want := repl[m.Id]
		if m.Leader {
			want = nil
		}
		if m.Replication != want {
			t.Errorf("%s: replication %v, want %v", m.Id, m.Replication, want)
		}
	}
	h := resp.LeaderHistory
	if len(h) != 2 || h[0].Term != 2 || h[0].AtMs != 20 || h[1].Term != 1 {
		t.Errorf("history %v", h)
	}

	big := make([]*colonyv1.LeaderChange, statusElections+5)
	for i := range big {
		big[i] = &colonyv1.LeaderChange{Term: uint64(i + 1), LeaderId: fmt.Sprint("n", i%3)}
	}
	resp = &colonyv1.StatusResponse{Members: []*colonyv1.Member{{Id: "n1", Leader: true}}}
	FillStatus(resp, []*peerv1.NodeStatusResponse{{Elections: big}})
	if len(resp.LeaderHistory) != statusElections || resp.LeaderHistory[0].Term != uint64(len(big)) {
		t.Errorf("a Status lists %d terms from %d, want the newest %d", len(resp.LeaderHistory), resp.LeaderHistory[0].Term, statusElections)
	}
}

func TestIsHeartbeat(t *testing.T) {
	for _, tt := range []struct {
		req  raft.AppendEntriesRequest
		want bool
	}{
		{raft.AppendEntriesRequest{Term: 4, RPCHeader: raft.RPCHeader{ID: []byte("n1")}}, true},
		{raft.AppendEntriesRequest{Term: 4, PrevLogEntry: 10}, false},
		{raft.AppendEntriesRequest{Term: 4, PrevLogTerm: 3}, false},
		{raft.AppendEntriesRequest{Term: 4, LeaderCommitIndex: 10}, false},
		{raft.AppendEntriesRequest{Term: 4, Entries: []*raft.Log{{Index: 1}}}, false},
	} {
		if got := IsHeartbeat(&tt.req); got != tt.want {
			t.Errorf("IsHeartbeat(%+v) = %v, want %v", tt.req, got, tt.want)
		}
	}
}

// TestRefuseHook: while the Refuse hook fails, no append leaves the node,
// pipelined or not (the disk-stall guard relies on it).
func TestRefuseHook(t *testing.T) {
	stalled := errors.New("disk stall")
	tr := New(testConfig).WrapTransport(nil, Hooks{Refuse: func() error { return stalled }})
	if err := tr.AppendEntries("n2", "127.0.0.1:1", &raft.AppendEntriesRequest{Term: 1}, new(raft.AppendEntriesResponse)); !errors.Is(err, stalled) {
		t.Errorf("AppendEntries: %v, want the hook's error", err)
	}
	if _, err := tr.AppendEntriesPipeline("n2", "127.0.0.1:1"); !errors.Is(err, stalled) {
		t.Errorf("AppendEntriesPipeline: %v, want the hook's error", err)
	}
}
