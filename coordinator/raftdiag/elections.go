package raftdiag

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Election history. Each node learns from raft's observations (leader
// changes, state changes, vote requests received) and from the vote
// requests it sends who won which term, and why the term started: first leader, heartbeat timeout, leadership transfer, lost
// quorum. It keeps its own last maxElections in memory; a cluster Status
// merges every member's (MergeElections).
const (
	maxElections = 32
	// statusElections is how many terms a cluster Status lists.
	statusElections = 20
)

// sawVote records a vote request for term, sent or received.
func (d *Diagnostics) sawVote(term uint64, transfer bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.votes[term] = d.votes[term] || transfer
	for t := range d.votes { // keep the recent terms only
		if t+maxElections < term {
			delete(d.votes, t)
		}
	}
}

// recordElection adds what this node knows of term's election (under mu).
func (d *Diagnostics) recordElection(term uint64, leader raft.ServerID) {
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

// Elections returns this node's election records, oldest first.
func (d *Diagnostics) Elections() []*colonyv1.LeaderChange {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.elections)
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

// MergeElections merges the members' records into one entry per term,
// newest first, at most limit: the earliest time anyone saw the leader, the
// most specific cause, a previous leader when anyone knew it. The records
// given are not changed.
func MergeElections(views [][]*colonyv1.LeaderChange, limit int) []*colonyv1.LeaderChange {
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
