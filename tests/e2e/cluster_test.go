//go:build unix

package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/tests/framework"
)

// Bounds on how long the harness waits for the cluster and RPCs. They only
// keep a broken run from hanging; nothing asserts how fast things are.
const (
	startTimeout  = framework.StartTimeout // a process to serve gRPC
	leaderTimeout = 30 * time.Second       // the cluster to agree on a ready leader
	exitTimeout   = framework.ExitTimeout  // a process to exit after a signal
	rpcTimeout    = 3 * time.Second        // one attempt of one RPC
	logTailLines  = 80                     // log lines printed per node on failure
)

// Cluster is a coordinator cluster of separate `colony coordinator`
// processes on 127.0.0.1, bootstrapped together with --bootstrap --peers.
type Cluster struct {
	t     *testing.T
	Nodes []*Node
	// PKI issued the nodes' certificates and the harness's admin
	// certificate; nil for an insecure cluster (ClusterOptions.Insecure).
	PKI  *framework.PKI
	ctx  context.Context // ends in cleanup; kills every process still running
	stop context.CancelFunc

	sidecarMu    sync.Mutex
	sidecarCerts map[string]bool // services with a sidecar certificate in PKI.Dir
}

// ClusterOptions configure NewClusterWith.
type ClusterOptions struct {
	Nodes int
	// Insecure runs the nodes with --insecure, and the harness's clients
	// in plaintext. The default is a secure cluster: a CA in the test's
	// temporary directory, a node certificate for every node (--certs-dir),
	// and an admin client certificate for the harness.
	Insecure bool
	// Args are further flags of every node.
	Args []string
}

// Node is one coordinator process (see framework.Node). Its addresses and
// data dir stay the same across restarts. Kill, Stop and Restart fail the
// test when they fail.
type Node struct {
	*framework.Node
}

// NewCluster starts an n-node cluster and waits until it has a leader that
// serves linearizable reads through every node. Every process is killed and
// waited for when the test ends, whether it passed or not.
//
// The cluster is secure (see ClusterOptions); NewClusterWith starts others.
func NewCluster(t *testing.T, n int, extraArgs ...string) *Cluster {
	t.Helper()
	return NewClusterWith(t, ClusterOptions{Nodes: n, Args: extraArgs})
}

// NewClusterWith starts a cluster as opts say, like NewCluster.
func NewClusterWith(t *testing.T, opts ClusterOptions) *Cluster {
	t.Helper()
	n := opts.Nodes
	// Directories first: t.TempDir's removal is then registered before, and
	// so runs after, the cleanup that kills the processes writing into them.
	base := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	c := &Cluster{t: t, ctx: ctx, stop: stop}
	if !opts.Insecure {
		pki, err := framework.NewPKI(filepath.Join(base, "tls"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if _, err := pki.Issue(trust.RoleNode, fmt.Sprintf("n%d", i+1)); err != nil {
				t.Fatal(err)
			}
		}
		c.PKI = pki
	}
	t.Cleanup(c.cleanup)
	framework.StartRetrying(t, fmt.Sprintf("a %d-node cluster", n), func(attempt int) error {
		return c.tryStart(base, attempt, n, opts.Args)
	}, func() { framework.KillAll(t, c.nodes(), false) })
	waitCtx, cancel := context.WithTimeout(context.Background(), leaderTimeout)
	defer cancel()
	c.WaitLeader(t, waitCtx)
	return c
}

// tryStart picks free ports and starts n nodes on them.
func (c *Cluster) tryStart(base string, attempt, n int, extraArgs []string) error {
	ports, err := framework.FreePorts("127.0.0.1", 2*n)
	if err != nil {
		return err
	}
	l := &framework.Launcher{Ctx: c.ctx, Suite: "e2e", Bin: colonyBin, Dial: c.dial}
	c.Nodes = nil
	var peers []string
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		dir := filepath.Join(base, fmt.Sprintf("try%d", attempt), id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		node := framework.NewNode(l, id,
			fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]), dir)
		peers = append(peers, id+"="+node.RaftAddr)
		c.Nodes = append(c.Nodes, &Node{node})
	}
	for _, node := range c.Nodes {
		node.SetArgs(append([]string{
			"coordinator",
			"--id", node.ID,
			"--data-dir", node.DataDir,
			"--grpc-addr", node.GRPCAddr,
			"--raft-addr", node.RaftAddr,
			"--bootstrap",
			"--peers", strings.Join(peers, ","),
			"--log-level", "info",
		}, append(c.PKI.ServerArgs(), extraArgs...)...))
	}
	return framework.StartAll(context.Background(), c.nodes())
}

// dial opens a connection to a node with the admin certificate (plaintext
// to an insecure cluster).
func (c *Cluster) dial(addr string) (*grpc.ClientConn, error) {
	return framework.Dial(addr, c.PKI.Creds(), 500*time.Millisecond, 8<<20)
}

// ClientTLS is the TLS configuration of a Go client of the cluster with
// the admin certificate; nil (plaintext) for an insecure cluster.
func (c *Cluster) ClientTLS() *tls.Config { return c.PKI.AdminTLS() }

// SidecarArgs are the security flags of a `colony sidecar` process of
// service: --certs-dir, where the first call issues the service's sidecar
// certificate, or --insecure for an insecure cluster.
func (c *Cluster) SidecarArgs(t testing.TB, service string) []string {
	t.Helper()
	c.sidecarMu.Lock()
	defer c.sidecarMu.Unlock()
	if c.PKI != nil && !c.sidecarCerts[service] {
		if _, err := c.PKI.Issue(trust.RoleSidecar, service); err != nil {
			t.Fatal(err)
		}
		if c.sidecarCerts == nil {
			c.sidecarCerts = map[string]bool{}
		}
		c.sidecarCerts[service] = true
	}
	return c.PKI.ServerArgs()
}

// CLIArgs are the security flags of a colony CLI command against the
// cluster.
func (c *Cluster) CLIArgs() []string { return c.PKI.ClientArgs() }

// nodes returns the framework's nodes of c.
func (c *Cluster) nodes() []*framework.Node { return framework.Nodes(c.Nodes) }

// Kill kills the node's process with SIGKILL (kill -9) and waits for it.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	if err := n.Node.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s (kill -9)", n.ID)
}

// Stop stops the node gracefully (SIGTERM: a leader hands over leadership
// first), waits for it, and fails the test unless it exits cleanly.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if !n.Running() {
		t.Fatalf("stop %s: not running", n.ID)
	}
	if err := n.Node.Stop(); err != nil {
		t.Error(err)
	}
	t.Logf("stopped %s (SIGTERM)", n.ID)
}

// Restart starts the node again with the same arguments and data dir and
// waits until it serves gRPC. Its ports may still be held for a moment by
// the previous process's sockets, so a failed bind is retried.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	if err := n.Node.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted %s", n.ID)
}

// Running returns the nodes whose processes are running.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// Others returns the running nodes other than the given ones.
func (c *Cluster) Others(not ...*Node) []*Node {
	var out []*Node
	for _, n := range c.Running() {
		if !slices.Contains(not, n) {
			out = append(out, n)
		}
	}
	return out
}

// Leader asks every running node for Cluster.Status once and returns the
// leader they all name, or an error saying why there is none yet.
func (c *Cluster) Leader(ctx context.Context) (*Node, error) {
	running := c.Running()
	sts, err := framework.Statuses(ctx, framework.Nodes(running), rpcTimeout)
	if err != nil {
		return nil, err
	}
	leaderID, err := framework.AgreedLeader(framework.Nodes(running), sts, true)
	if err != nil {
		return nil, err
	}
	for _, n := range running {
		if n.ID == leaderID {
			return n, nil
		}
	}
	return nil, fmt.Errorf("leader %s is not running", leaderID)
}

// WaitLeader waits until every running node names the same running leader
// and a linearizable read succeeds through every running node (the leader
// has committed an entry of its term), and returns the leader.
func (c *Cluster) WaitLeader(t testing.TB, ctx context.Context) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, leaderTimeout)
	defer cancel()
	leader, err := framework.WaitReady(ctx, 50*time.Millisecond, rpcTimeout, c.Leader, c.Running)
	if err != nil {
		t.Fatal(err)
	}
	return leader
}

// cleanup kills every process and waits for it, reports races and panics
// the servers logged, and prints the tail of every log if the test failed.
func (c *Cluster) cleanup() {
	framework.KillAll(c.t, c.nodes(), true)
	c.stop()
	framework.CheckLogs(c.t, c.nodes())
	if dir := os.Getenv("COLONY_E2E_LOG_DIR"); dir != "" {
		c.keepLogs(dir)
	}
	if c.t.Failed() {
		for _, n := range c.Nodes {
			c.t.Logf("--- %s: last %d lines of %s ---\n%s", n.ID, logTailLines, n.LogPath, framework.LogTail(n.LogPath, logTailLines))
		}
	}
}

// keepLogs copies every node's log to dir/<test name>/<node>.log.
func (c *Cluster) keepLogs(dir string) {
	dst := filepath.Join(dir, strings.ReplaceAll(c.t.Name(), "/", "_"))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		c.t.Logf("keeping logs: %v", err)
		return
	}
	for _, n := range c.Nodes {
		if err := framework.CopyFile(n.LogPath, filepath.Join(dst, n.ID+".log")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.t.Logf("keeping logs: %v", err)
		}
	}
	c.t.Logf("node logs kept in %s", dst)
}

// testContext returns a context that ends after d or when the test ends.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// retryable reports whether a request may be sent again: the node could not
// reach a leader (Unavailable), or the attempt timed out with its outcome
// unknown. Writes are retried with the same request_id, which the server
// applies once.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// retry calls f, with a fresh per-attempt timeout of rpcTimeout each time,
// until it succeeds, fails with a non-retryable error, or ctx ends. It
// returns the number of attempts made.
func retry[T any](ctx context.Context, f func(context.Context) (T, error)) (T, int, error) {
	return retryEvery(ctx, rpcTimeout, f)
}

// retryEvery is retry with a per-attempt timeout of its own.
func retryEvery[T any](ctx context.Context, attemptTimeout time.Duration, f func(context.Context) (T, error)) (T, int, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		v, err := f(actx)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return v, attempt, err
		}
		select {
		case <-ctx.Done():
			return v, attempt, fmt.Errorf("%w (after %d attempts; last: %w)", ctx.Err(), attempt, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// mustRetry is retry for setup steps: it fails the test on error.
func mustRetry[T any](t *testing.T, ctx context.Context, what string, f func(context.Context) (T, error)) T {
	t.Helper()
	v, _, err := retry(ctx, f)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// TestNodeRemovedWhileDownExits: a node removed with cluster remove while
// it was stopped still finds itself in its own configuration when it
// starts again, and no leader contacts it. It learns from the cluster's
// leader that it is no longer a member, logs so at ERROR (naming the
// leader, its term and configuration entry, and what to do) and exits
// non-zero, as a node removed while running does (TestRemovedNodeExits).
// A member whose peers are down is never told so: with no leader to ask,
// it keeps running, and serves again once a peer is back.
func TestNodeRemovedWhileDownExits(t *testing.T) {
	ctx := testContext(t, 180*time.Second)
	c := NewCluster(t, 3)
	leader := c.WaitLeader(t, ctx)
	gone := c.Others(leader)[0]
	gone.Stop(t)
	args := append([]string{"cluster", "remove", gone.ID, "--endpoints", leader.GRPCAddr, "--timeout", "10s"}, c.CLIArgs()...)
	if r := runCLI(ctx, args...); r.err != nil {
		t.Fatalf("cluster remove %s: %v\n%s", gone.ID, r.err, r.stderr)
	}

	// The leader makes one last attempt to send the removal to a removed
	// follower, after its replication backoff (tens of milliseconds for a
	// follower down for a second); a node back by then learns it from its
	// own log, as TestRemovedNodeExits does. Stay down past it.
	waitLog(t, ctx, leader, `msg="removed peer, stopping replication"`)
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if err := gone.Node.Start(); err != nil {
		t.Fatal(err)
	}
	pid := gone.Pid()
	for syscall.Kill(pid, 0) == nil { // the framework reaps it when it exits
		select {
		case <-ctx.Done():
			t.Fatalf("%s, removed while down, still runs after its restart", gone.ID)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := gone.Node.Stop(); err == nil || !strings.Contains(err.Error(), "already exited") || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("%s's exit: %v; want exit status 1", gone.ID, err)
	}
	log, err := os.ReadFile(gone.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"level=ERROR", "removed from the cluster while it was down", "leader=" + leader.ID,
		"configuration_index=", "wipe its data dir", "--join"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("%s's log lacks %q:\n%s", gone.ID, want, framework.LogTail(gone.LogPath, 30))
		}
	}

	// The two members left: stop one, and the other knows no leader and has
	// no peer to ask. Within two rounds of asking (5 s apart, 2 s each) it
	// would have exited had it taken silence for removal.
	others := c.Others(leader)
	if len(others) != 1 {
		t.Fatalf("%d nodes run besides the leader, want 1", len(others))
	}
	other := others[0]
	other.Stop(t)
	alone := leader
	select {
	case <-time.After(12 * time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if syscall.Kill(alone.Pid(), 0) != nil {
		t.Fatalf("%s, whose only peer is down, exited:\n%s", alone.ID, framework.LogTail(alone.LogPath, 30))
	}
	other.Restart(t)
	c.WaitLeader(t, ctx)
	for _, n := range []*Node{alone, other} {
		log, err := os.ReadFile(n.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(log), "removed from the cluster") {
			t.Errorf("%s, a member, was told it was removed:\n%s", n.ID, framework.LogTail(n.LogPath, 30))
		}
	}
}

// waitLog waits until n's log contains s.
func waitLog(t *testing.T, ctx context.Context, n *Node, s string) {
	t.Helper()
	for {
		b, err := os.ReadFile(n.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), s) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s's log never showed %s", n.ID, s)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
