package coordinator

import (
	"time"

	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/coordinator/nodemetrics"
	"github.com/colonymesh/colony/internal/telemetry"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// The node's Prometheus metrics live in package nodemetrics; this file
// creates and registers them, and shows the node to their collector.

// initTelemetry sets up the node's tracer, metrics and diagnostics, before
// anything that uses them starts.
func (s *Server) initTelemetry() {
	s.tracer = telemetry.Tracer(s.cfg.TracerProvider)
	s.metrics = nodemetrics.New()
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
	cs := append(s.metrics.Collectors(), nodemetrics.NewCollector(metricsNode{s}))
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

// metricsNode is the node as its metrics collector reads it
// (nodemetrics.Node, checked where registerMetrics passes it).
type metricsNode struct{ s *Server }

func (n metricsNode) Raft() *raft.Raft     { return n.s.raft }
func (n metricsNode) AppliedIndex() uint64 { return n.s.fsm.applied.Load() }
func (n metricsNode) Sessions() int        { return len(n.s.fsm.tree.View().Sessions()) }
func (n metricsNode) Watches() int         { return n.s.hub.Subscribers() }
func (n metricsNode) LeaderEngine() *engine.Engine {
	e, _ := n.s.leaderEngine()
	return e
}
func (n metricsNode) Replication(now time.Time) map[string]*colonyv1.FollowerReplication {
	return n.s.diag.Replication(now)
}

// applyTimed hands data to raft like raft.Apply and measures its commit.
func (s *Server) applyTimed(data []byte, timeout time.Duration) raft.ApplyFuture {
	start := time.Now()
	return nodemetrics.TimeApply(s.raft.Apply(data, timeout), start, s.metrics.Commit)
}
