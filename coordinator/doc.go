// Package coordinator is Colony's coordination service: a raft cluster
// (hashicorp/raft, raft-boltdb) that replicates a ZooKeeper-like tree of
// znodes with sessions and watches, and serves it over gRPC (colony.v1).
//
// Every node serves every request. Writes are committed through the leader
// (followers forward them) and answered once the serving node has applied
// them; reads are linearizable by default (read-index through the leader) or
// session-consistent on request; watches are served from each node's own
// applied state. The leader alone decides session expiry and the reaping of
// TTL and container nodes, and commits both through the log.
//
// The leader also runs the breaker engine (package coordinator/engine) for
// its term, behind the engine's Host interface; every node serves the
// colony.v1.Breakers API, checks its input and hands the call to the
// leader's engine.
//
// The public gRPC services (Tree, Sessions, Watch, Cluster, Breakers,
// Maintenance), their request checks and the one mapping of errors to
// gRPC statuses live in package coordinator/api, which sees the node
// through its api.Node interface; New builds the gRPC server and registers
// them there, beside the node's own Peer service.
//
// The parts that need no *Server are packages of their own (raftlog,
// raftnet, replication, snapshotfile, nodemetrics, raftdiag), none of which
// imports this one; DESIGN.md lists what each holds.
//
// Start a node with New and stop it with Close:
//
//	cfg := coordinator.DefaultConfig()
//	cfg.NodeID, cfg.DataDir, cfg.Bootstrap = "n1", "/var/lib/colony", true
//	srv, err := coordinator.New(cfg)
//	if err != nil { ... }
//	defer srv.Close()
//
// DESIGN.md beside this file explains the protocols.
package coordinator
