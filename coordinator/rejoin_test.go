package coordinator

import (
	"testing"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestMarkCatchingUp(t *testing.T) {
	for _, tc := range []struct {
		name          string
		applied, comm uint64 // the follower's
		leaderCommit  uint64
		want          string
	}{
		{"healthy", 1000, 1000, 1000, ""},
		{"a few entries behind", 995, 998, 1000, ""},
		{"restarted, no commit index yet", 990, 0, 1000, "catching up: applied 990 of 1000"},
		{"far behind", 100, 700, 1000, "catching up: applied 100 of 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &colonyv1.StatusResponse{Members: []*colonyv1.Member{{Id: "n1", Leader: true}, {Id: "n2"}, {Id: "n3"}}}
			statuses := []*peerv1.NodeStatusResponse{
				{Id: "n1", AppliedIndex: tc.leaderCommit, CommitIndex: tc.leaderCommit},
				{Id: "n2", AppliedIndex: tc.applied, CommitIndex: tc.comm},
				nil, // did not answer
			}
			resp.Members[2].Error = "unreachable"
			markCatchingUp(resp, statuses, 256)
			if got := resp.Members[1].Error; got != tc.want {
				t.Errorf("follower's error %q, want %q", got, tc.want)
			}
			if resp.Members[0].Error != "" || resp.Members[2].Error != "unreachable" {
				t.Errorf("other members changed: %v", resp.Members)
			}
		})
	}
}

// A leader holding a replication call to a dead follower still removes that
// follower, keeps committing, and closes promptly (goleak in TestMain
// checks that nothing it started is left running).
func TestHeldReplicationToDeadFollower(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	l := c.leader()
	dead := c.followers()[0].cfg.NodeID
	c.stop(dead)
	for i := range 20 { // replication to the dead follower fails and is held
		if _, err := l.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/h" + string(rune('a'+i))}); err != nil {
			t.Fatalf("write with one follower down: %v", err)
		}
	}
	if _, err := l.clu.RemoveMember(ctx, &colonyv1.RemoveMemberRequest{Id: dead}); err != nil {
		t.Fatalf("removing the dead follower: %v", err)
	}
	if _, err := l.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/after"}); err != nil {
		t.Fatalf("write after removing it: %v", err)
	}
	c.stop(l.cfg.NodeID) // Close returns: no replication call is held past it
}
