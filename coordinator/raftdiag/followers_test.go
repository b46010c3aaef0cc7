package raftdiag

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testConfig has the coordinator's default raft timings.
var testConfig = Config{
	NodeID:             "n1",
	HeartbeatTimeout:   500 * time.Millisecond,
	LeaderLeaseTimeout: 250 * time.Millisecond,
	MaxAppendEntries:   256,
}

// TestSlowFollowerJudgement feeds the leader's per-follower view sample by
// sample (no clock: each sample is given its time) and checks who is
// flagged, and that one bad sample is not enough.
func TestSlowFollowerJudgement(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type follower struct {
		rtt   time.Duration
		age   time.Duration // since its last reply, at each sample
		lag   uint64
		never bool // never replied this term
	}
	tests := []struct {
		name      string
		followers map[raft.ServerID]follower
		samples   int
		wantSlow  string // "" for none
		reason    string
	}{
		{
			name:      "healthy followers",
			followers: map[raft.ServerID]follower{"n2": {rtt: 300 * time.Microsecond, age: 20 * time.Millisecond}, "n3": {rtt: 400 * time.Microsecond, age: 30 * time.Millisecond}},
			samples:   20,
		},
		{
			name:      "one follower's round trip far above the others'",
			followers: map[raft.ServerID]follower{"n2": {rtt: 300 * time.Microsecond}, "n3": {rtt: 80 * time.Millisecond}, "n4": {rtt: 500 * time.Microsecond}},
			samples:   slowSamples,
			wantSlow:  "n3",
			reason:    "heartbeat round trip",
		},
		{
			name:      "not consistently: one sample short",
			followers: map[raft.ServerID]follower{"n2": {rtt: 300 * time.Microsecond}, "n3": {rtt: 80 * time.Millisecond}},
			samples:   slowSamples - 1,
		},
		{
			name:      "all slow alike is a slow network, not a slow follower",
			followers: map[raft.ServerID]follower{"n2": {rtt: 80 * time.Millisecond}, "n3": {rtt: 90 * time.Millisecond}},
			samples:   20,
		},
		{
			name:      "a small absolute difference on a fast network",
			followers: map[raft.ServerID]follower{"n2": {rtt: 100 * time.Microsecond}, "n3": {rtt: 2 * time.Millisecond}},
			samples:   20,
		},
		{
			name:      "silent follower",
			followers: map[raft.ServerID]follower{"n2": {age: 20 * time.Millisecond}, "n3": {age: 3 * time.Second}},
			samples:   slowSamples,
			wantSlow:  "n3",
			reason:    "no reply for 3s",
		},
		{
			name:      "never replied this term",
			followers: map[raft.ServerID]follower{"n2": {age: 20 * time.Millisecond}, "n3": {never: true}},
			samples:   slowSamples,
			wantSlow:  "n3",
			reason:    "no reply",
		},
		{
			name:      "lagging in entries",
			followers: map[raft.ServerID]follower{"n2": {lag: 3}, "n3": {lag: 5000}},
			samples:   slowSamples,
			wantSlow:  "n3",
			reason:    "5000 entries behind (the others: 3)",
		},
		{
			name:      "lag within one append batch",
			followers: map[raft.ServerID]follower{"n2": {lag: 0}, "n3": {lag: 200}},
			samples:   20,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(testConfig)
			d.statsSince = t0.Add(-10 * time.Second)
			now := t0
			for i := 0; i < tt.samples; i++ {
				for id, f := range tt.followers {
					fs := d.follower(id)
					fs.rtt, fs.lag = f.rtt, f.lag
					if !f.never {
						fs.lastContact = now.Add(-f.age)
					}
				}
				d.judge(now)
				now = now.Add(slowSampleTick)
			}
			for id, f := range d.followers {
				if want := string(id) == tt.wantSlow; f.slow != want {
					t.Errorf("%s: slow=%v, want %v (reason %q)", id, f.slow, want, f.reason)
				}
				if f.slow && !strings.Contains(f.reason, tt.reason) {
					t.Errorf("%s: reason %q, want it to say %q", id, f.reason, tt.reason)
				}
			}
		})
	}
}

// TestSlowFollowerRecovers: the flag clears after slowSamples good samples,
// not at the first one.
func TestSlowFollowerRecovers(t *testing.T) {
	d := New(testConfig)
	now := time.Unix(1000, 0)
	set := func(n3 time.Duration) {
		d.follower("n2").rtt = 300 * time.Microsecond
		d.follower("n3").rtt = n3
		d.follower("n2").lastContact, d.follower("n3").lastContact = now, now
	}
	for range slowSamples {
		set(100 * time.Millisecond)
		d.judge(now)
		now = now.Add(slowSampleTick)
	}
	if !d.followers["n3"].slow {
		t.Fatal("n3 not flagged")
	}
	for i := 1; i <= slowSamples; i++ {
		set(400 * time.Microsecond)
		d.judge(now)
		now = now.Add(slowSampleTick)
		if want := i < slowSamples; d.followers["n3"].slow != want {
			t.Fatalf("after %d good samples: slow=%v, want %v", i, d.followers["n3"].slow, want)
		}
	}
}
