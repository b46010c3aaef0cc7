// Package framework is the process-cluster harness Colony's process-level
// test suites share (tests/e2e, tests/robustness, tests/bench): it builds
// ./cmd/colony, picks free loopback ports, starts colony processes in
// process groups of their own, stops, kills, pauses and restarts them, waits
// until they serve and agree on a ready leader, and checks and tails their
// logs. It lives in ordinary files so that every suite can import it; the
// suites keep only what is theirs (e2e's t-failing node methods, the
// robustness proxies and nemesis, the benchmarks' etcd and ZooKeeper
// servers).
//
// A suite's TestMain hands its binary to RunSuite, which builds it once
// (with -race when the tests run with it, so the servers' races fail the
// run too; COLONY_E2E_BINARY names a prebuilt one) and fails the run on
// leaked goroutines:
//
//	var colonyBin string
//
//	func TestMain(m *testing.M) {
//		os.Exit(framework.RunSuite(m, "e2e", &colonyBin))
//	}
//
// A cluster is a set of Nodes started by one Launcher, whose context ends
// in the test's cleanup and so kills every process still running:
//
//	pki, err := framework.NewPKI(filepath.Join(dir, "tls")) // nil: an insecure cluster
//	pki.Issue(trust.RoleNode, "n1")                          // node-n1.crt, for 127.0.0.1
//	dial := func(addr string) (*grpc.ClientConn, error) {
//		return framework.Dial(addr, pki.Creds(), time.Second, 8<<20)
//	}
//	l := &framework.Launcher{Ctx: ctx, Suite: "e2e", Bin: colonyBin, Dial: dial}
//	ports, err := framework.FreePorts("127.0.0.1", 2)
//	n := framework.NewNode(l, "n1", grpcAddr, raftAddr, dir)
//	n.SetArgs(append([]string{"coordinator", "--id", "n1", ...}, pki.ServerArgs()...))
//	framework.StartRetrying(t, "a cluster", tryStart, undo) // new ports on a lost bind
//	t.Cleanup(func() { framework.KillAll(t, nodes, true); framework.CheckLogs(t, nodes) })
//
// Every address is on loopback. Nothing here asserts how fast anything is:
// the timeouts only keep a broken run from hanging. See DESIGN.md.
package framework
