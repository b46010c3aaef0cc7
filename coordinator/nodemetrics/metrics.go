// Package nodemetrics is a coordinator node's Prometheus metrics: the
// events it counts as they happen (Metrics), the state it reports when
// scraped (NewCollector, reading the node through the Node interface), and
// the timing of raft commits and FSM applies (TimedFSM, TimeApply). The
// node registers them with its Config.Metrics; deploy/grafana/colony.json
// queries them (TestDashboardUsesExportedMetrics keeps it honest).
package nodemetrics

import (
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/internal/telemetry"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Metrics are a node's Prometheus metrics. Events are counted as they
// happen (the fields); states are read when scraped (NewCollector). The
// breaker engine's series (engine.Metrics) and the per-follower raft series
// come from the leader only: aggregate across nodes with max by (...) or
// sum by (...). See deploy/grafana/colony.json.
type Metrics struct {
	ReportsReceived  *prometheus.CounterVec // result
	LeaderChanges    prometheus.Counter
	Commit           prometheus.Histogram
	FSMApply         prometheus.Histogram
	Heartbeat        *prometheus.HistogramVec // follower
	FailedHeartbeats *prometheus.CounterVec   // follower
	// Engine counts the breaker engine's events (its pairs' states are
	// read when scraped: NewCollector).
	Engine *engine.Metrics
}

// latencyBuckets span 100µs to about 6.5s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

// New returns a node's metrics, not yet registered.
func New() *Metrics {
	ns := telemetry.Namespace
	return &Metrics{
		Engine: engine.NewMetrics(),
		ReportsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "breaker", Name: "reports_received_total",
			Help: "Outcome reports (one per caller instance and pair) received by this node's Breakers API, by result (accepted, rejected).",
		}, []string{"result"}),
		LeaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "raft", Name: "leader_changes_total",
			Help: "Leader changes this node observed (a new leader elected).",
		}),
		Commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: "raft", Name: "commit_duration_seconds",
			Help:    "On the leader: time from handing a command to raft until it is committed by a majority and applied on the leader.",
			Buckets: latencyBuckets,
		}),
		FSMApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: "raft", Name: "fsm_apply_duration_seconds",
			Help:    "Time this node's state machine took to apply one batch of committed entries.",
			Buckets: latencyBuckets,
		}),
		Heartbeat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: "raft", Name: "follower_heartbeat_duration_seconds",
			Help:    "On the leader: heartbeat round trip to each follower.",
			Buckets: latencyBuckets,
		}, []string{"follower"}),
		FailedHeartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "raft", Name: "follower_failed_heartbeats_total",
			Help: "On the leader: heartbeats to each follower that failed.",
		}, []string{"follower"}),
	}
}

// Collectors are the collectors of m's series, the engine's included.
func (m *Metrics) Collectors() []prometheus.Collector {
	return append([]prometheus.Collector{
		m.ReportsReceived, m.LeaderChanges, m.Commit, m.FSMApply, m.Heartbeat, m.FailedHeartbeats,
	}, m.Engine.Collectors()...)
}

var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

// Node is what a node's collector reads when scraped.
type Node interface {
	// Raft is the node's running raft.
	Raft() *raft.Raft
	// AppliedIndex is the last index the node's FSM applied.
	AppliedIndex() uint64
	// Replication is the leader's view of each follower (nil on others).
	Replication(now time.Time) map[string]*colonyv1.FollowerReplication
	// Sessions counts the open sessions, Watches the watches served.
	Sessions() int
	Watches() int
	// LeaderEngine is the breaker engine of this node's term as leader,
	// or nil.
	LeaderEngine() *engine.Engine
}

// nodeCollector reads the node's state when scraped.
type nodeCollector struct {
	n Node

	state, term, commitIndex, appliedIndex, lastIndex, leaderContact, members *prometheus.Desc
	followerContact, followerRTT, followerLag, followerSlow                   *prometheus.Desc
	sessions, watches                                                         *prometheus.Desc
	breakers                                                                  *engine.StateCollector
}

// NewCollector returns the collector of n's state, read when scraped. Only
// Collect reads n: a collector of a nil Node describes its series.
func NewCollector(n Node) prometheus.Collector {
	d := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(telemetry.Namespace, sub, name), help, labels, nil)
	}
	return &nodeCollector{
		n:               n,
		state:           d("raft", "state", "This node's raft state: 1 for the current one (leader, follower, candidate, shutdown).", "state"),
		term:            d("raft", "term", "This node's current raft term."),
		commitIndex:     d("raft", "commit_index", "The highest log index this node knows to be committed."),
		appliedIndex:    d("raft", "applied_index", "The highest log index this node's state machine applied."),
		lastIndex:       d("raft", "last_log_index", "The last index in this node's log."),
		leaderContact:   d("raft", "leader_last_contact_seconds", "On a follower: time since it last heard from the leader."),
		members:         d("raft", "members", "Members of the raft configuration, by suffrage (voter, nonvoter).", "suffrage"),
		followerContact: d("raft", "follower_last_contact_seconds", "On the leader: time since each follower last replied.", "follower"),
		followerRTT:     d("raft", "follower_heartbeat_rtt_seconds", "On the leader: smoothed heartbeat round trip to each follower.", "follower"),
		followerLag:     d("raft", "follower_lag_entries", "On the leader: log entries each follower was behind at its last reply.", "follower"),
		followerSlow:    d("raft", "follower_slow", "On the leader: 1 when a follower has lagged the others consistently (colony cluster status says how).", "follower"),
		sessions:        d("", "sessions", "Open client sessions (this node's applied state)."),
		watches:         d("", "watches", "Active watches served by this node."),
		breakers:        engine.NewStateCollector(func() *engine.Engine { return n.LeaderEngine() }),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.state, c.term, c.commitIndex, c.appliedIndex, c.lastIndex, c.leaderContact, c.members,
		c.followerContact, c.followerRTT, c.followerLag, c.followerSlow,
		c.sessions, c.watches,
	} {
		ch <- d
	}
	c.breakers.Describe(ch)
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n, r := c.n, c.n.Raft()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	now := time.Now()
	st := r.State()
	for _, rs := range raftStates {
		gauge(c.state, b2f(rs == st), strings.ToLower(rs.String()))
	}
	gauge(c.term, float64(r.CurrentTerm()))
	gauge(c.commitIndex, float64(r.CommitIndex()))
	gauge(c.appliedIndex, float64(n.AppliedIndex()))
	gauge(c.lastIndex, float64(r.LastIndex()))
	if st != raft.Leader {
		if lc := r.LastContact(); !lc.IsZero() {
			gauge(c.leaderContact, now.Sub(lc).Seconds())
		}
	}
	if f := r.GetConfiguration(); f.Error() == nil {
		voters, nonvoters := 0, 0
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				voters++
			} else {
				nonvoters++
			}
		}
		gauge(c.members, float64(voters), "voter")
		gauge(c.members, float64(nonvoters), "nonvoter")
	}
	for id, fr := range n.Replication(now) {
		if fr.LastContactMs >= 0 {
			gauge(c.followerContact, float64(fr.LastContactMs)/1000, id)
		}
		gauge(c.followerRTT, fr.HeartbeatRttMs/1000, id)
		gauge(c.followerLag, float64(fr.LagEntries), id)
		gauge(c.followerSlow, b2f(fr.Slow), id)
	}
	gauge(c.sessions, float64(n.Sessions()))
	gauge(c.watches, float64(n.Watches()))
	c.breakers.Collect(ch)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TimedFSM is the FSM as raft sees it: the node's FSM, with each batch's
// apply time observed by Observer (Metrics.FSMApply).
type TimedFSM struct {
	raft.BatchingFSM
	Observer prometheus.Observer
}

var _ raft.BatchingFSM = TimedFSM{}

func (t TimedFSM) Apply(l *raft.Log) any { return t.ApplyBatch([]*raft.Log{l})[0] }

func (t TimedFSM) ApplyBatch(logs []*raft.Log) []any {
	start := time.Now()
	defer func() { t.Observer.Observe(time.Since(start).Seconds()) }()
	return t.BatchingFSM.ApplyBatch(logs)
}

// timedApply measures a command from raft.Apply until it is applied on the
// leader, the first time its outcome is asked for.
type timedApply struct {
	raft.ApplyFuture
	start time.Time
	h     prometheus.Observer
	once  sync.Once
}

func (t *timedApply) Error() error {
	err := t.ApplyFuture.Error()
	t.once.Do(func() {
		if err == nil {
			t.h.Observe(time.Since(t.start).Seconds())
		}
	})
	return err
}

// TimeApply wraps f, a command handed to raft at start, so that h
// (Metrics.Commit) observes how long it took to apply on the leader, the
// first time its outcome is asked for.
func TimeApply(f raft.ApplyFuture, start time.Time, h prometheus.Observer) raft.ApplyFuture {
	return &timedApply{ApplyFuture: f, start: start, h: h}
}
