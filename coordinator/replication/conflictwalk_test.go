package replication

import (
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

// nextIndex is what hashicorp/raft (v1.7.3 replicateTo) makes of a refused
// AppendEntries: the next index to send from.
func nextIndex(next uint64, resp *raft.AppendEntriesResponse) uint64 {
	return max(min(next-1, resp.LastLog+1), 1)
}

// A follower holding a tail of 100 entries from a term it led alone, past
// index 1000 where the logs agree: the leader must find index 1001 in a
// handful of round trips, not 100, and then replicate normally.
func TestConflictWalkFindsTheMatchQuickly(t *testing.T) {
	const agree, followerLast = uint64(1000), uint64(1100)
	leaderLast := uint64(1150)
	w := &ConflictWalk{}
	next := leaderLast + 1
	rounds := 0
	for ; rounds < 200; rounds++ {
		prev := next - 1
		args := &raft.AppendEntriesRequest{Term: 5, PrevLogEntry: prev, PrevLogTerm: 5, Entries: []*raft.Log{{Index: next}}, LeaderCommitIndex: 900}
		resp := &raft.AppendEntriesResponse{Term: 5, LastLog: followerLast, NoRetryBackoff: true}
		switch {
		case prev > followerLast: // the follower lacks it: raft jumps to its last
		case prev > agree: // the follower has another term there
		default:
			resp.Success, resp.NoRetryBackoff = true, false
		}
		w.SawReply("n2", args, resp)
		if resp.Success {
			break
		}
		next = nextIndex(next, resp)
	}
	if next > agree+1 {
		t.Fatalf("the walk stopped at %d, past the last agreeing index %d", next, agree)
	}
	// One round to jump to the follower's last index, then 1, 2, 4...: 100
	// conflicting entries take 8 rounds (raft alone: 101).
	if rounds > 9 {
		t.Errorf("found the matching entry after %d refused rounds, want at most 9", rounds)
	}
	if w.streak["n2"] != 0 {
		t.Errorf("a success must end the streak, it is %d", w.streak["n2"])
	}
}

// Replies that are not a term mismatch reach raft as they came: successes,
// a follower whose log is short, a newer term, heartbeats.
func TestConflictWalkLeavesOtherRepliesAlone(t *testing.T) {
	w := &ConflictWalk{}
	for name, c := range map[string]struct {
		args *raft.AppendEntriesRequest
		resp raft.AppendEntriesResponse
	}{
		"success":   {&raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 50, PrevLogTerm: 3}, raft.AppendEntriesResponse{Term: 3, LastLog: 60, Success: true}},
		"short log": {&raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 50, PrevLogTerm: 3}, raft.AppendEntriesResponse{Term: 3, LastLog: 40, NoRetryBackoff: true}},
		"new term":  {&raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 50, PrevLogTerm: 3}, raft.AppendEntriesResponse{Term: 4, LastLog: 60}},
		"heartbeat": {&raft.AppendEntriesRequest{Term: 3}, raft.AppendEntriesResponse{Term: 3, LastLog: 60, NoRetryBackoff: true}},
		"disk":      {&raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 50, PrevLogTerm: 3}, raft.AppendEntriesResponse{Term: 3, LastLog: 60}},
	} {
		// A streak from earlier mismatches must not change these either.
		w.streak = map[raft.ServerID]uint{"n2": 5}
		resp := c.resp
		w.SawReply("n2", c.args, &resp)
		if !reflect.DeepEqual(resp, c.resp) {
			t.Errorf("%s: reply changed from %+v to %+v", name, c.resp, resp)
		}
	}
	// Heartbeats run beside the walk (raft's heartbeat goroutine): their
	// replies must not end a streak.
	w.streak = map[raft.ServerID]uint{"n2": 3}
	w.SawReply("n2", &raft.AppendEntriesRequest{Term: 3}, &raft.AppendEntriesResponse{Term: 3, Success: true, LastLog: 60})
	if w.streak["n2"] != 3 {
		t.Errorf("a heartbeat reply changed the streak from 3 to %d", w.streak["n2"])
	}
	// The hint never goes below raft's floor.
	w.streak = map[raft.ServerID]uint{"n2": 10}
	resp := raft.AppendEntriesResponse{Term: 3, LastLog: 60, NoRetryBackoff: true}
	w.SawReply("n2", &raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 50, PrevLogTerm: 3, Entries: []*raft.Log{{Index: 51}}}, &resp)
	if got := nextIndex(51, &resp); got != 1 {
		t.Errorf("after 10 mismatches from 50: next index %d, want 1", got)
	}
}
