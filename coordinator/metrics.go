package coordinator

import (
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/internal/telemetry"
)

// nodeMetrics are a node's Prometheus metrics. Events are counted as they
// happen (the fields); states are read when scraped (nodeCollector). The
// breaker engine's series (engine.Metrics) and the per-follower raft series
// come from the leader only: aggregate across nodes with max by (...) or
// sum by (...). See deploy/grafana/colony.json.
type nodeMetrics struct {
	reportsReceived  *prometheus.CounterVec // result
	leaderChanges    prometheus.Counter
	commit           prometheus.Histogram
	fsmApply         prometheus.Histogram
	heartbeat        *prometheus.HistogramVec // follower
	failedHeartbeats *prometheus.CounterVec   // follower
	// engine counts the breaker engine's events (its pairs' states are
	// read when scraped: nodeCollector).
	engine *engine.Metrics
}

// latencyBuckets span 100µs to about 6.5s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

func newNodeMetrics() *nodeMetrics {
	ns := telemetry.Namespace
	return &nodeMetrics{
		engine: engine.NewMetrics(),
		reportsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "breaker", Name: "reports_received_total",
			Help: "Outcome reports (one per caller instance and pair) received by this node's Breakers API, by result (accepted, rejected).",
		}, []string{"result"}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "raft", Name: "leader_changes_total",
			Help: "Leader changes this node observed (a new leader elected).",
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: "raft", Name: "commit_duration_seconds",
			Help:    "On the leader: time from handing a command to raft until it is committed by a majority and applied on the leader.",
			Buckets: latencyBuckets,
		}),
		fsmApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: "raft", Name: "fsm_apply_duration_seconds",
			Help:    "Time this node's state machine took to apply one batch of committed entries.",
			Buckets: latencyBuckets,
		}),
		heartbeat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: "raft", Name: "follower_heartbeat_duration_seconds",
			Help:    "On the leader: heartbeat round trip to each follower.",
			Buckets: latencyBuckets,
		}, []string{"follower"}),
		failedHeartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "raft", Name: "follower_failed_heartbeats_total",
			Help: "On the leader: heartbeats to each follower that failed.",
		}, []string{"follower"}),
	}
}

func (m *nodeMetrics) collectors() []prometheus.Collector {
	return append([]prometheus.Collector{
		m.reportsReceived, m.leaderChanges, m.commit, m.fsmApply, m.heartbeat, m.failedHeartbeats,
	}, m.engine.Collectors()...)
}

var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

// nodeCollector reads the node's state when scraped.
type nodeCollector struct {
	s *Server

	state, term, commitIndex, appliedIndex, lastIndex, leaderContact, members *prometheus.Desc
	followerContact, followerRTT, followerLag, followerSlow                   *prometheus.Desc
	sessions, watches                                                         *prometheus.Desc
	breakers                                                                  *engine.StateCollector
}

func newNodeCollector(s *Server) *nodeCollector {
	d := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(telemetry.Namespace, sub, name), help, labels, nil)
	}
	return &nodeCollector{
		s:               s,
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
		breakers: engine.NewStateCollector(func() *engine.Engine {
			e, _ := s.leaderEngine()
			return e
		}),
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
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	now := time.Now()
	st := s.raft.State()
	for _, rs := range raftStates {
		gauge(c.state, b2f(rs == st), strings.ToLower(rs.String()))
	}
	gauge(c.term, float64(s.raft.CurrentTerm()))
	gauge(c.commitIndex, float64(s.raft.CommitIndex()))
	gauge(c.appliedIndex, float64(s.fsm.applied.Load()))
	gauge(c.lastIndex, float64(s.raft.LastIndex()))
	if st != raft.Leader {
		if lc := s.raft.LastContact(); !lc.IsZero() {
			gauge(c.leaderContact, now.Sub(lc).Seconds())
		}
	}
	if f := s.raft.GetConfiguration(); f.Error() == nil {
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
	for id, fr := range s.diag.Replication(now) {
		if fr.LastContactMs >= 0 {
			gauge(c.followerContact, float64(fr.LastContactMs)/1000, id)
		}
		gauge(c.followerRTT, fr.HeartbeatRttMs/1000, id)
		gauge(c.followerLag, float64(fr.LagEntries), id)
		gauge(c.followerSlow, b2f(fr.Slow), id)
	}
	gauge(c.sessions, float64(len(s.fsm.tree.View().Sessions())))
	gauge(c.watches, float64(s.hub.Subscribers()))
	c.breakers.Collect(ch)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// initTelemetry sets up the node's tracer, metrics and diagnostics, before
// anything that uses them starts.
func (s *Server) initTelemetry() {
	s.tracer = telemetry.Tracer(s.cfg.TracerProvider)
	s.metrics = newNodeMetrics()
	s.diag = newDiagnostics(&s.cfg, s.metrics)
	s.peers.dialOptions = append(s.peers.dialOptions, telemetry.DialOption(s.cfg.TracerProvider))
	s.unregisterMetrics = func() {}
}

// registerMetrics registers the node's collectors with cfg.Metrics (when
// set), once the node runs; Close unregisters them.
func (s *Server) registerMetrics() error {
	reg := s.cfg.Metrics
	if reg == nil {
		return nil
	}
	cs := append(s.metrics.collectors(), newNodeCollector(s))
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	s.unregisterMetrics = func() {
		for _, c := range cs {
			reg.Unregister(c)
		}
	}
	return nil
}

// timedFSM is the FSM as raft sees it: the node's fsm, with each batch's
// apply time measured.
type timedFSM struct {
	*fsm
	m *nodeMetrics
}

var _ raft.BatchingFSM = timedFSM{}

func (t timedFSM) Apply(l *raft.Log) any { return t.ApplyBatch([]*raft.Log{l})[0] }

func (t timedFSM) ApplyBatch(logs []*raft.Log) []any {
	start := time.Now()
	defer func() { t.m.fsmApply.Observe(time.Since(start).Seconds()) }()
	return t.fsm.ApplyBatch(logs)
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

// applyTimed hands data to raft like raft.Apply and measures its commit.
func (s *Server) applyTimed(data []byte, timeout time.Duration) raft.ApplyFuture {
	start := time.Now()
	return &timedApply{ApplyFuture: s.raft.Apply(data, timeout), start: start, h: s.metrics.commit}
}
