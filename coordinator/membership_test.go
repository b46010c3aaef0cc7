package coordinator

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestClusterTransferLeadershipAndRemoveMember(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	old := c.leader()
	target := c.followers()[0]

	// Through a node that is not the target: the request is forwarded to the leader.
	via := old
	resp, err := via.clu.TransferLeadership(ctx, &colonyv1.TransferLeadershipRequest{TargetId: target.srv.ID()})
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if resp.LeaderId != target.srv.ID() {
		t.Fatalf("transfer to %s: leader is now %s", target.srv.ID(), resp.LeaderId)
	}
	if got := c.leader(); got.srv.ID() != target.srv.ID() {
		t.Fatalf("leader after transfer: %s, want %s", got.srv.ID(), target.srv.ID())
	}
	if _, err := old.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/after-transfer"}); err != nil {
		t.Fatalf("write through the old leader after the transfer: %v", err)
	}

	_, err = target.clu.TransferLeadership(ctx, &colonyv1.TransferLeadershipRequest{TargetId: "nope"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("transfer to an unknown member: %v, want NotFound naming it", err)
	}

	// Remove the old leader (a follower now) through a follower.
	removed := old.srv.ID()
	var through *testNode
	for _, f := range c.followers() {
		if f.srv.ID() != removed {
			through = f
		}
	}
	if _, err := through.clu.RemoveMember(ctx, &colonyv1.RemoveMemberRequest{Id: removed}); err != nil {
		t.Fatalf("remove %s: %v", removed, err)
	}
	// The removed node finds out by itself (and its owner stops it).
	select {
	case <-old.srv.Removed():
	case <-ctx.Done():
		t.Fatalf("%s never noticed its removal", removed)
	}
	for _, n := range []*testNode{through, target} {
		select {
		case <-n.srv.Removed():
			t.Errorf("%s, still a member, says it was removed", n.srv.ID())
		default:
		}
	}
	c.stop(removed)
	st, err := through.clu.Status(ctx, &colonyv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 2 {
		t.Errorf("members after removal: %v, want 2", st.Members)
	}
	for _, m := range st.Members {
		if m.Id == removed {
			t.Errorf("removed member %s still listed", removed)
		}
		if m.Error != "" {
			t.Errorf("member %s: %s", m.Id, m.Error)
		}
	}
	// Two voters left: writes still commit.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := through.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/after-remove", RequestId: "after-remove"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write after removing a member: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := through.clu.RemoveMember(ctx, &colonyv1.RemoveMemberRequest{Id: removed}); status.Code(err) != codes.NotFound {
		t.Errorf("removing %s twice: %v, want NotFound", removed, err)
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.NodeID, c.DataDir = "n1", "/tmp/x"
		return c
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string // "" means valid
	}{
		{"defaults with identity", func(*Config) {}, ""},
		{"no node id", func(c *Config) { c.NodeID = "" }, "NodeID is required"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir is required"},
		{"bootstrap and join", func(c *Config) { c.Bootstrap, c.Join = true, []string{"x:1"} }, "Bootstrap and Join are exclusive"},
		{"peers without self", func(c *Config) { c.Peers = map[string]string{"n2": "x:1"} }, `Peers must include this node ("n1")`},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = time.Hour }, "LeaderLeaseTimeout"},
		{"session ttl bounds", func(c *Config) { c.MaxSessionTTL = time.Millisecond }, "MaxSessionTTL"},
		{"zero commit timeout", func(c *Config) { c.CommitTimeout = 0 }, "CommitTimeout must be positive"},
		{"unknown log store", func(c *Config) { c.LogStore = "rocks" }, `LogStore: want "boltdb" or "pebble", got "rocks"`},
		{"removed log store", func(c *Config) { c.LogStore = "wal" }, `LogStore: "wal" (raft-wal) was removed`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
