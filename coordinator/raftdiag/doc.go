// Package raftdiag tells what raft lets a coordinator node see of its
// cluster's health: on the leader, each follower's replies (last contact,
// heartbeat round trip, lag in entries) and which follower is consistently
// slower than the others; on every node, who won which term and why the
// term started.
//
// hashicorp/raft keeps its per-follower replication state unexported, so
// the package wraps the node's raft transport (Diagnostics.WrapTransport)
// and watches the AppendEntries and RequestVote calls raft makes through
// it, and it registers a raft observer (Diagnostics.Start) for leader,
// state and heartbeat changes. A node answers its own view in a
// NodeStatus (FillNodeStatus); FillStatus merges the members' views into
// a cluster Status.
//
// The wrapped transport also tracks raft's replication pipelines so that
// the node can close them before raft.Shutdown (Transport.ClosePipelines),
// and takes hooks for what the node adds to every replication call (a
// disk-stall check, holding a failed call while the follower is away).
//
// A node wires it like this:
//
//	d := raftdiag.New(raftdiag.Config{NodeID: "n1", HeartbeatTimeout: hb,
//		LeaderLeaseTimeout: lease, MaxAppendEntries: 256})
//	tr := d.WrapTransport(networkTransport, raftdiag.Hooks{})
//	r, err := raft.NewRaft(conf, fsm, logs, stable, snaps, tr)
//	d.Start(ctx, r, goFunc) // until ctx ends
//	...
//	tr.ClosePipelines() // then r.Shutdown()
//
// DESIGN.md beside this file explains how the judgements are made.
package raftdiag
