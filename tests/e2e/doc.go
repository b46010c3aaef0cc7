// Package e2e holds Colony's process-level system tests: every test starts a
// real 3-node coordinator cluster, one `colony coordinator` process per node
// on 127.0.0.1, and kills, stops and restarts those processes while it talks
// to them over the public gRPC API (proto/colony/v1) and, where it exists, the
// colony CLI. The in-process cluster tests live beside the server in
// coordinator/cluster_test.go; these complement them with what only separate
// processes show: kill -9, restart from a data dir, real sockets.
//
// The harness (cluster_test.go) is built on tests/framework, which
// tests/robustness and tests/bench share: TestMain builds ./cmd/colony once
// (with -race when the tests run with -race, so the servers' races fail the
// tests too) into a temporary directory. Set COLONY_E2E_BINARY to a prebuilt
// binary to skip the build. Each node writes its log to a file in the test's
// temporary directory; when a test fails, the tail of every node's log is
// printed (COLONY_E2E_LOG_DIR keeps them all).
//
// Clusters are secure, as deployments are: NewCluster makes a CA in the
// test's temporary directory, a node certificate per node (--certs-dir)
// and an admin certificate for the harness's connections, Go clients
// (Cluster.ClientTLS) and CLI commands (Cluster.CLIArgs); sidecar processes
// get their service's certificate (Cluster.SidecarArgs).
// NewClusterWith(ClusterOptions{Insecure: true}) starts one with
// --insecure. security_test.go attacks a secure cluster: plaintext and
// foreign-CA clients, Peer RPCs from non-node certificates, rogue nodes
// asking to join.
//
// Run them all, or one:
//
//	go test -race -count=1 ./tests/e2e/
//	go test -race -count=1 ./tests/e2e/ -run TestKillLeaderWhileWriting -v
//
// The tests assert behaviour clients rely on (acknowledged writes survive,
// watches see every version once, sessions live exactly as long as promised);
// they never assert how fast anything is. Timings, such as how long writes
// were unavailable after a leader was killed, are reported with t.Logf (use
// -v to see them).
package e2e
