package raftdiag

import (
	"testing"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestMergeElections(t *testing.T) {
	lc := func(term uint64, leader, prev string, at int64, cause colonyv1.ElectionCause) *colonyv1.LeaderChange {
		return &colonyv1.LeaderChange{Term: term, LeaderId: leader, PreviousLeaderId: prev, AtMs: at, Cause: cause, Detail: cause.String()}
	}
	const (
		first    = colonyv1.ElectionCause_ELECTION_CAUSE_FIRST_LEADER
		timeout  = colonyv1.ElectionCause_ELECTION_CAUSE_HEARTBEAT_TIMEOUT
		lost     = colonyv1.ElectionCause_ELECTION_CAUSE_LOST_QUORUM
		transfer = colonyv1.ElectionCause_ELECTION_CAUSE_LEADERSHIP_TRANSFER
		unknown  = colonyv1.ElectionCause_ELECTION_CAUSE_UNSPECIFIED
	)
	views := [][]*colonyv1.LeaderChange{
		// n1: led term 2, lost its quorum, saw n2 win term 3.
		{lc(2, "n1", "", 100, first), lc(3, "n2", "n1", 510, lost)},
		// n2: saw n1's term 2 and won term 3 after the heartbeats stopped;
		// then handed over to n3 in term 4.
		{lc(2, "n1", "", 101, first), lc(3, "n2", "n1", 500, timeout), lc(4, "n3", "n2", 900, transfer)},
		// n3: restarted after term 3 began: saw n2 already leading.
		{lc(3, "n2", "", 700, unknown), lc(4, "n3", "n2", 901, timeout)},
		nil, // a member that did not answer
	}
	got := MergeElections(views, 20)
	want := []*colonyv1.LeaderChange{
		lc(4, "n3", "n2", 900, transfer),
		lc(3, "n2", "n1", 500, lost),
		lc(2, "n1", "", 100, first),
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Term != w.Term || g.LeaderId != w.LeaderId || g.PreviousLeaderId != w.PreviousLeaderId || g.AtMs != w.AtMs || g.Cause != w.Cause || g.Detail != w.Detail {
			t.Errorf("entry %d: got %v, want %v", i, g, w)
		}
	}
	if got := MergeElections(views, 2); len(got) != 2 || got[0].Term != 4 {
		t.Errorf("limit 2: got %v", got)
	}
}
