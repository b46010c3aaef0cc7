package coordinator

import (
	"testing"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

// TestRemovedBy: a node that believes it is a member and knows no leader
// takes only a current leader's word that it was removed: never a
// follower's, even one that knows a leader, never a leader's from a term
// older than its own last log entry (a deposed leader that may not know
// the entry that added the node), and never a configuration that lists it.
func TestRemovedBy(t *testing.T) {
	const self, lastTerm = "n2", 5
	status := func(state string, term uint64, config ...string) *peerv1.NodeStatusResponse {
		return &peerv1.NodeStatusResponse{Id: "n1", State: state, Term: term, Configuration: config, ConfigurationIndex: 42, ConfigurationTerm: 5}
	}
	tests := []struct {
		name    string
		st      *peerv1.NodeStatusResponse
		removed bool
	}{
		{"leader without it", status("Leader", 5, "n1", "n3"), true},
		{"leader of a later term without it", status("Leader", 9, "n1", "n3"), true},
		{"leader that lists it", status("Leader", 5, "n1", "n2", "n3"), false},
		{"leader of an older term (deposed, stale)", status("Leader", 4, "n1", "n3"), false},
		{"follower that knows a leader", status("Follower", 5, "n1", "n3"), false},
		{"candidate", status("Candidate", 6, "n1", "n3"), false},
		{"leader with no configuration", status("Leader", 5), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := removedBy(tt.st, self, lastTerm)
			if (r != nil) != tt.removed {
				t.Fatalf("removedBy = %+v, want removed=%v", r, tt.removed)
			}
			if r != nil && (r.leader != "n1" || r.term != tt.st.Term || r.index != 42 || r.indexTerm != 5 || len(r.members) != 2) {
				t.Errorf("removal %+v does not carry the leader's word", r)
			}
		})
	}
}
