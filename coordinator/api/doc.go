// Package api serves Colony's public gRPC services (colony.v1 Tree,
// Sessions, Watch, Cluster, Breakers and Maintenance) on a coordinator
// node, and is the one place where errors become gRPC statuses (ToStatus).
//
// Its handlers check a request (paths, sizes, limits, names), hand the work
// to the node behind the Node interface, which this package declares (write
// through raft, read at a consistency level, keep a session alive, watch the
// node's applied state, change the membership, run a call on the leader's
// breaker engine), and build the response with its header. The node
// (package coordinator) imports this package, never the other way round:
// coordinator.New builds the gRPC server and registers the services with
// Register, passing the node itself.
//
// DESIGN.md in package coordinator explains the protocols behind the calls.
package api
