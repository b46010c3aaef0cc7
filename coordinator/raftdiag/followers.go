package raftdiag

import (
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// The leader's view of its followers. Heartbeats go to every follower every
// HeartbeatTimeout/10 whatever the write load, and every reply carries the
// follower's last log index: that gives last contact, heartbeat round trip
// and lag in entries per follower. A follower whose round trip, lag or
// silence is well beyond the other followers' for slowSamples samples in a
// row is flagged slow.
const (
	slowSampleTick = 250 * time.Millisecond
	// slowSamples consecutive samples set (and clear) the slow flag: 2s.
	slowSamples = 8
	// slowFactor: how many times the other followers' median a follower's
	// round trip, silence or lag must exceed.
	slowFactor = 4
	// rttAlpha smooths heartbeat round trips (TCP's SRTT weight).
	rttAlpha = 0.125
)

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

// sawReply records a follower's reply to this node, the leader of term.
func (d *Diagnostics) sawReply(id raft.ServerID, term uint64, heartbeat bool, start, end time.Time, lastLog uint64) {
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
		if d.metrics.HeartbeatRTT != nil {
			d.metrics.HeartbeatRTT.WithLabelValues(string(id)).Observe(rtt.Seconds())
		}
	}
}

// RepliedSince reports whether follower id replied to this node, as leader
// of the current stats term, after t.
func (d *Diagnostics) RepliedSince(id raft.ServerID, t time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.followers[id]
	return ok && f.lastContact.After(t)
}

func (d *Diagnostics) follower(id raft.ServerID) *followerStats {
	f, ok := d.followers[id]
	if !ok {
		f = &followerStats{}
		d.followers[id] = f
	}
	return f
}

// quorumContacted reports whether a majority of the voters (this node
// included) replied within the leader lease, as this node's follower stats
// say (under mu).
func (d *Diagnostics) quorumContacted(r *raft.Raft, now time.Time) bool {
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

// sample judges every follower against the others, while this node leads.
func (d *Diagnostics) sample(r *raft.Raft, now time.Time) {
	leading := r.State() == raft.Leader
	term := r.CurrentTerm()
	d.mu.Lock()
	defer d.mu.Unlock()
	if leading && term == d.statsTerm {
		d.judge(now)
	}
}

// judge takes one slow-follower sample at now (under mu).
func (d *Diagnostics) judge(now time.Time) {
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

// Replication returns the leader's view of each follower at now, by
// follower ID; nil when this node does not lead (or raft is not started).
func (d *Diagnostics) Replication(now time.Time) map[string]*colonyv1.FollowerReplication {
	r := d.raft.Load()
	if r == nil || r.State() != raft.Leader {
		return nil
	}
	term := r.CurrentTerm()
	d.mu.Lock()
	defer d.mu.Unlock()
	if term != d.statsTerm {
		return nil
	}
	return d.replicationAt(now)
}

// replicationAt is the follower view at now (under mu).
func (d *Diagnostics) replicationAt(now time.Time) map[string]*colonyv1.FollowerReplication {
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
