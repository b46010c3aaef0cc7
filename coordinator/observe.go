package coordinator

import (
	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/coordinator/nodemetrics"
	"github.com/colonymesh/colony/coordinator/raftdiag"
	"github.com/colonymesh/colony/coordinator/raftlog"
	"github.com/colonymesh/colony/coordinator/replication"
)

// Cluster diagnostics live in package raftdiag (the leader's view of its
// followers, slow-follower flags, election history); this file wires them
// to the node: its configuration and metrics, and the hooks the node adds
// to raft's replication calls.

func newDiagnostics(cfg *Config, m *nodemetrics.Metrics) *raftdiag.Diagnostics {
	return raftdiag.New(raftdiag.Config{
		NodeID:             raft.ServerID(cfg.NodeID),
		HeartbeatTimeout:   cfg.HeartbeatTimeout,
		LeaderLeaseTimeout: cfg.LeaderLeaseTimeout,
		MaxAppendEntries:   cfg.MaxAppendEntries,
		Metrics: raftdiag.Metrics{
			LeaderChanges:    m.LeaderChanges,
			HeartbeatRTT:     m.Heartbeat,
			FailedHeartbeats: m.FailedHeartbeats,
		},
	})
}

// observedTransport is s.transport as raft uses it: observed by the
// diagnostics, its AppendEntries failed while the disk stalls
// (raftlog.StallGuard), a failed replication call held while the follower
// is unreachable (replication.Hold), and a follower's conflicting entries
// walked back over faster (replication.ConflictWalk).
func (s *Server) observedTransport(stall *raftlog.StallGuard, hold *replication.Hold) *raftdiag.Transport {
	walk := &replication.ConflictWalk{}
	return s.diag.WrapTransport(s.transport, raftdiag.Hooks{
		Refuse:         stall.Check,
		Retry:          hold.Retry,
		SnapshotFailed: hold.UntilReachable,
		Replied:        walk.SawReply,
	})
}
