// Package robustness tests Colony's coordinator the way etcd's robustness
// suite and Jepsen test etcd and ZooKeeper: a 3-node (or 5-node) cluster of
// real `colony coordinator` processes on 127.0.0.11-15, with the raft traffic of
// every ordered pair of nodes (via --raft-peer-addr) and the workload's
// client traffic routed through TCP fault proxies of its own; a nemesis
// injecting faults from a seeded random schedule while clients record
// histories; and checkers run on those histories afterwards. Everything
// runs over mutual TLS, as deployments do (clusterOptions.Insecure turns it
// off): a test CA, node certificates valid for each node's address and for
// 127.0.0.1 where the proxies listen, a sidecar certificate, an admin
// certificate for the workload. The proxies forward TCP, so TLS passes
// through them; nodes check each other's node identity, not the address.
//
// Faults (nemesis_test.go), one at a time, or with ROBUSTNESS_OVERLAP two
// at once (the second starting inside the first's window), each round
// healed before the next: SIGKILL and restart on the same data dir;
// SIGSTOP/SIGCONT past the
// election timeout and at times past a session TTL; a node (often the
// leader) cut off from its peers in both directions, the 1-2
// minority/majority split of three nodes; asymmetric cuts (a node cannot
// reach its peers, or they cannot reach it); latency with jitter on every
// raft link and at times every client link; leadership transfer storms;
// clients cut from a node; a follower isolated for seconds while the others
// snapshot and compact every few dozen entries, so it catches up by
// InstallSnapshot; a random minority cut off from the majority (2 of 5 in a
// 5-node cluster); a follower removed, wiped and re-added with --join
// (never overlapped); a sidecar process killed and restarted, or paused.
// Blocked links blackhole (accept, never forward) or
// refuse (reset) new connections and cut existing ones: the proxy forwards
// a connection's bytes whole and in order, or cuts the connection, and never
// drops bytes mid-stream.
//
// Workloads and checks:
//   - Key-value clients (kv_test.go) run get/set/CAS/create/delete on a few
//     keys, one operation at a time each, retrying a write with the same
//     request id on the next node; a write with no answer within its budget
//     has an unknown outcome. The history is checked for linearizability
//     with porcupine against a per-key versioned register with CAS
//     (model_test.go); final reads through every node after healing are part
//     of it, so an acknowledged write that was lost fails the check. Every
//     client's zxids (response headers) never go backwards.
//   - After healing every node applies the same index and holds the same
//     tree (a hash of a full walk read on each node at that index).
//   - Persistent recursive watches (watch_test.go), one started on each
//     node, resumed on the next node after the last zxid when a stream
//     fails: events in zxid order, never twice, the same on every node, no
//     gap (every event any watcher got and every acknowledged write is in
//     every stream whose range covers it, unless the stream ended with an
//     explicit resync), and replaying a stream gives the final state.
//   - Sessions (session_test.go): sessions with 1-3 ephemerals each, closed,
//     abandoned (left to expire) or held until they end. A session the
//     coordinator expires was not expired before its TTL after the send
//     time of its last acknowledged keep-alive. Its ephemerals are deleted
//     in one entry, the one that ends it, and none is observable after it:
//     checked against two watches of the ephemerals' parent, reads of it
//     (linearizable, or a node's own state) and lists of the open sessions,
//     each placed at its answer's zxid (checkEphemerals).
//   - Breakers (breaker_test.go): override transitions of two pairs, watched
//     on /colony/breakers: generations never go backwards, every
//     acknowledged transition is in the watch, and the final record keeps
//     the last acknowledged one across leader changes.
//   - Sidecars (sidecars_test.go): two `colony sidecar` processes of the
//     pairs' caller, through client proxies of their own, in degraded modes
//     the seed picks. On their WatchBreakers streams a pair's generation
//     never goes back within a process's life, and a record enforced in
//     coordinator mode was committed with that state; after healing every
//     live sidecar enforces the latest committed record of every pair,
//     state and generation, in coordinator mode, within 15 s.
//   - Locks (lock_test.go): recipe.Mutex contenders with guarded writes:
//     tokens unique and increasing, and committed guarded writes ordered by
//     token (never two holders with valid tokens).
//   - A careless client (careless_test.go): two clients that share request
//     ids, reuse one for a different command, close a session with a
//     reused id, close it twice, retry its Open after the Close, and resume
//     a recursive watch over 4 values of 1 MiB. Each client's write with a
//     shared id is applied; a reused id with another command is refused
//     (InvalidArgument) and never applied; a session whose Close was
//     refused stays keep-alive-able with its ephemerals, a closed one
//     answers keep-alives NotFound and has none, a retried Open answers
//     NotFound; the watch delivers every value (or a resync) with a
//     bounded number of re-subscriptions.
//
// A failing seed leaves a report folder (its path is printed): summary,
// timeline of faults, history, watch streams, porcupine's visualisation
// (linearizability.html, fault windows annotated) and the nodes' logs.
//
// The default run is short (two fixed seeds, 12 s of faults each; seed 2
// overlaps faults in half its rounds):
//
//	go test -race -count=1 ./tests/robustness/
//
// Longer runs, random seeds, one seed again, or only some faults:
//
//	make robustness ROBUSTNESS_SEEDS=random:5 ROBUSTNESS_DURATION=60s
//	ROBUSTNESS_SEEDS=42 go test -race -count=1 -v ./tests/robustness/
//	ROBUSTNESS_FAULTS=pause,isolate ROBUSTNESS_SEEDS=7 go test -race -count=1 -v ./tests/robustness/
//	ROBUSTNESS_NODES=5 make robustness
//	make robustness ROBUSTNESS_OVERLAP=on   # half the rounds overlap two faults
//
// Canaries are runs that must fail, to show a checker and the report at
// work: ROBUSTNESS_CANARY=stale-reads turns the clients' gets into local
// reads (session consistency without a minimum zxid), which a partitioned
// or lagging node serves stale (the linearizability check fails);
// ephemeral-delete makes the session holders delete an ephemeral
// themselves before the session ends (the ephemeral check fails);
// sidecar-cut cuts one sidecar off from the coordinators for good halfway
// through the faults (the sidecar convergence check fails). The checkers
// are also fed broken histories in unit tests (harness_test.go).
//
// ROBUSTNESS_REPORT_DIR sets where report folders go (default: a
// colony-robustness folder in the system temp dir); ROBUSTNESS_KEEP_REPORTS=1
// keeps them for passing seeds too.
//
// The processes are started, killed, paused and restarted with
// tests/framework, the harness tests/e2e and tests/bench share; the proxies
// (proxy_test.go), the cluster's layout behind them (cluster_test.go) and
// the nemesis are this suite's own. TestMain builds ./cmd/colony (with
// -race when the tests run with it); set COLONY_E2E_BINARY to use a
// prebuilt binary.
package robustness
