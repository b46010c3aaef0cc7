//go:build unix

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Bounds on how long the harness waits for processes and the cluster. They
// only keep a broken run from hanging; nothing asserts how fast things are.
const (
	startTimeout  = 30 * time.Second // a process to serve gRPC
	leaderTimeout = 30 * time.Second // the cluster to agree on a ready leader
	exitTimeout   = 20 * time.Second // a process to exit after a signal
	rpcTimeout    = 3 * time.Second  // one attempt of one RPC
	logTailLines  = 80               // log lines printed per node on failure
)

// Cluster is a coordinator cluster of separate `colony coordinator`
// processes on 127.0.0.1, bootstrapped together with --bootstrap --peers.
type Cluster struct {
	t     *testing.T
	Nodes []*Node
	ctx   context.Context // ends in cleanup; kills every process still running
	stop  context.CancelFunc
}

// Node is one coordinator process. Its addresses and data dir stay the same
// across restarts.
type Node struct {
	ID       string
	GRPCAddr string
	RaftAddr string
	DataDir  string
	LogPath  string

	c    *Cluster
	args []string

	mu   sync.Mutex
	proc *process         // nil while the node is not running
	conn *grpc.ClientConn // replaced on restart
}

// process is one run of a node's binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returned
	err  error         // Wait's result, set before done is closed
}

// NewCluster starts an n-node cluster and waits until it has a leader that
// serves linearizable reads through every node. Every process is killed and
// waited for when the test ends, whether it passed or not.
func NewCluster(t *testing.T, n int, extraArgs ...string) *Cluster {
	t.Helper()
	// Directories first: t.TempDir's removal is then registered before, and
	// so runs after, the cleanup that kills the processes writing into them.
	base := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	c := &Cluster{t: t, ctx: ctx, stop: stop}
	t.Cleanup(c.cleanup)

	const attempts = 5
	for attempt := 1; ; attempt++ {
		err := c.tryStart(base, attempt, n, extraArgs)
		if err == nil {
			break
		}
		c.killAll(false)
		if attempt == attempts || !errors.Is(err, errAddrInUse) {
			t.Fatalf("starting a %d-node cluster: %v", n, err)
		}
		t.Logf("starting the cluster, attempt %d: %v; retrying on other ports", attempt, err)
	}
	waitCtx, cancel := context.WithTimeout(context.Background(), leaderTimeout)
	defer cancel()
	c.WaitLeader(t, waitCtx)
	return c
}

var errAddrInUse = errors.New("address already in use")

// tryStart picks free ports and starts n nodes on them. Another process can
// take a port between our probe and the node's bind; the caller then tries
// again with new ports.
func (c *Cluster) tryStart(base string, attempt, n int, extraArgs []string) error {
	ports, err := freePorts(2 * n)
	if err != nil {
		return err
	}
	c.Nodes = nil
	var peers []string
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		dir := filepath.Join(base, fmt.Sprintf("try%d", attempt), id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		node := &Node{
			ID:       id,
			GRPCAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
			DataDir:  filepath.Join(dir, "data"),
			LogPath:  filepath.Join(dir, id+".log"),
			c:        c,
		}
		peers = append(peers, id+"="+node.RaftAddr)
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		node.args = append([]string{
			"coordinator",
			"--id", node.ID,
			"--data-dir", node.DataDir,
			"--grpc-addr", node.GRPCAddr,
			"--raft-addr", node.RaftAddr,
			"--bootstrap",
			"--peers", strings.Join(peers, ","),
			"--log-level", "info",
		}, extraArgs...)
		if err := node.start(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for _, node := range c.Nodes {
		if err := node.waitServing(ctx); err != nil {
			return err
		}
	}
	return nil
}

// freePorts returns n distinct ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start starts the node's process with its arguments, logging to LogPath.
func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return fmt.Errorf("%s is already running", n.ID)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== e2e %s: starting %s %s\n", time.Now().Format(time.RFC3339Nano), colonyBin, strings.Join(n.args, " "))
	cmd := exec.CommandContext(n.c.ctx, colonyBin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	p := &process{cmd: cmd, done: make(chan struct{})}
	cmd.Cancel = p.kill
	cmd.WaitDelay = exitTimeout
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", n.ID, err)
	}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(logf, "=== e2e %s: process exited: %v\n", time.Now().Format(time.RFC3339Nano), exitDescription(cmd, p.err))
		logf.Close()
		close(p.done)
	}()
	n.proc = p
	if n.conn != nil {
		n.conn.Close() // a fresh connection: the old one may be deep in reconnect backoff
	}
	n.conn, err = grpc.NewClient(n.GRPCAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20)),
	)
	return err
}

// exitDescription says how a process ended: its exit status or signal.
func exitDescription(cmd *exec.Cmd, err error) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	return fmt.Sprint(err)
}

// exited reports whether the process has exited and been waited for.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process and its process group. The process is
// signalled through os.Process (a pidfd on Linux, safe against pid reuse);
// the group only while the process has not been waited for, because once it
// has, its pid (and so the group id) may belong to another process already.
func (p *process) kill() error {
	err := p.cmd.Process.Kill()
	if !p.exited() {
		if gerr := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); gerr != nil && !errors.Is(gerr, syscall.ESRCH) {
			return gerr
		}
	}
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// waitServing waits until the node answers Cluster.Status, or its process
// exits (errAddrInUse when it could not bind its ports).
func (n *Node) waitServing(ctx context.Context) error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	for {
		select {
		case <-p.done:
			tail := logTail(n.LogPath, 20)
			if strings.Contains(tail, "address already in use") {
				return fmt.Errorf("%s exited (%v): %w", n.ID, p.err, errAddrInUse)
			}
			return fmt.Errorf("%s exited before serving (%v); log tail:\n%s", n.ID, p.err, tail)
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := n.Cluster().Status(rctx, &colonyv1.StatusRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not serving: %w (last error: %v)", n.ID, ctx.Err(), err)
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Running reports whether the node's process is running.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil
}

func (n *Node) clientConn() *grpc.ClientConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conn
}

// Tree, Sessions, Watch and Cluster are clients of the node's current
// process; take a new one after a restart.
func (n *Node) Tree() colonyv1.TreeClient         { return colonyv1.NewTreeClient(n.clientConn()) }
func (n *Node) Sessions() colonyv1.SessionsClient { return colonyv1.NewSessionsClient(n.clientConn()) }
func (n *Node) Watch() colonyv1.WatchClient       { return colonyv1.NewWatchClient(n.clientConn()) }
func (n *Node) Cluster() colonyv1.ClusterClient   { return colonyv1.NewClusterClient(n.clientConn()) }

// takeProc marks the node as not running and returns its process.
func (n *Node) takeProc() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.proc
	n.proc = nil
	return p
}

// Kill kills the node's process with SIGKILL (kill -9) and waits for it.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	p := n.takeProc()
	if p == nil {
		t.Fatalf("kill %s: not running", n.ID)
	}
	if p.exited() {
		t.Fatalf("kill -9 %s: it had already exited: %v", n.ID, exitDescription(p.cmd, p.err))
	}
	if err := p.kill(); err != nil {
		t.Errorf("kill -9 %s: %v", n.ID, err)
	}
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		t.Fatalf("%s did not exit within %v of SIGKILL", n.ID, exitTimeout)
	}
	t.Logf("killed %s (kill -9)", n.ID)
}

// Stop stops the node gracefully (SIGTERM: a leader hands over leadership
// first), waits for it, and fails the test unless it exits cleanly.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	p := n.takeProc()
	if p == nil {
		t.Fatalf("stop %s: not running", n.ID)
	}
	if p.exited() {
		t.Fatalf("stop %s: it had already exited: %v", n.ID, exitDescription(p.cmd, p.err))
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM %s: %v", n.ID, err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exited with %v after SIGTERM, want a clean exit", n.ID, p.err)
		}
	case <-time.After(exitTimeout):
		p.kill()
		<-p.done
		t.Errorf("%s did not exit within %v of SIGTERM; killed it", n.ID, exitTimeout)
	}
	t.Logf("stopped %s (SIGTERM)", n.ID)
}

// Restart starts the node again with the same arguments and data dir and
// waits until it serves gRPC. Its ports may still be held for a moment by
// the previous process's sockets, so a failed bind is retried.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		if err := n.start(); err != nil {
			t.Fatalf("restart %s: %v", n.ID, err)
		}
		err := n.waitServing(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, errAddrInUse) || ctx.Err() != nil {
			t.Fatalf("restart %s: %v", n.ID, err) // cleanup kills it if it still runs
		}
		n.takeProc() // it exited
		time.Sleep(200 * time.Millisecond)
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
	if len(running) == 0 {
		return nil, errors.New("no node is running")
	}
	leaderID := ""
	for _, n := range running {
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		st, err := n.Cluster().Status(rctx, &colonyv1.StatusRequest{})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", n.ID, err)
		}
		switch {
		case st.LeaderId == "":
			return nil, fmt.Errorf("%s knows no leader", n.ID)
		case st.LeaderGrpcAddress == "":
			return nil, fmt.Errorf("%s knows leader %s but not its address", n.ID, st.LeaderId)
		case leaderID != "" && st.LeaderId != leaderID:
			return nil, fmt.Errorf("nodes disagree on the leader: %s and %s", leaderID, st.LeaderId)
		}
		leaderID = st.LeaderId
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
	var lastErr error
	for {
		leader, err := c.Leader(ctx)
		if err == nil {
			for _, n := range c.Running() {
				rctx, rcancel := context.WithTimeout(ctx, rpcTimeout)
				_, err = n.Tree().Exists(rctx, &colonyv1.ExistsRequest{Path: "/"})
				rcancel()
				if err != nil {
					err = fmt.Errorf("linearizable read through %s: %w", n.ID, err)
					break
				}
			}
			if err == nil {
				return leader
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("no ready leader: %v (last: %v)", ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// killAll kills every running node and closes the connections. With
// reportExits, a node that had exited without the test stopping it fails
// the test.
func (c *Cluster) killAll(reportExits bool) {
	for _, n := range c.Nodes {
		if p := n.takeProc(); p != nil {
			if reportExits && p.exited() {
				// Nothing in the test stopped it: it crashed, or something
				// outside the test killed it.
				c.t.Errorf("%s exited while the test expected it to run: %v", n.ID, exitDescription(p.cmd, p.err))
			}
			p.kill()
			select {
			case <-p.done:
			case <-time.After(exitTimeout):
				c.t.Errorf("%s did not exit within %v of SIGKILL", n.ID, exitTimeout)
			}
		}
		n.mu.Lock()
		if n.conn != nil {
			n.conn.Close()
			n.conn = nil
		}
		n.mu.Unlock()
	}
}

// cleanup kills every process and waits for it, reports races and panics
// the servers logged, and prints the tail of every log if the test failed.
func (c *Cluster) cleanup() {
	c.killAll(true)
	c.stop()
	for _, n := range c.Nodes {
		b, err := os.ReadFile(n.LogPath)
		if err != nil {
			continue
		}
		if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
			c.t.Errorf("%s: the server reported a data race:\n%s", n.ID, excerpt(b, i, 60))
		}
		if i := bytes.Index(b, []byte("\npanic: ")); i >= 0 {
			c.t.Errorf("%s: the server panicked:\n%s", n.ID, excerpt(b, i, 60))
		}
	}
	if dir := os.Getenv("COLONY_E2E_LOG_DIR"); dir != "" {
		c.keepLogs(dir)
	}
	if c.t.Failed() {
		for _, n := range c.Nodes {
			c.t.Logf("--- %s: last %d lines of %s ---\n%s", n.ID, logTailLines, n.LogPath, logTail(n.LogPath, logTailLines))
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
		if b, err := os.ReadFile(n.LogPath); err == nil {
			if err := os.WriteFile(filepath.Join(dst, n.ID+".log"), b, 0o644); err != nil {
				c.t.Logf("keeping logs: %v", err)
			}
		}
	}
	c.t.Logf("node logs kept in %s", dst)
}

// excerpt returns up to lines lines of b starting at offset i.
func excerpt(b []byte, i, lines int) string {
	rest := strings.SplitN(string(b[i:]), "\n", lines+1)
	return strings.Join(rest[:min(len(rest), lines)], "\n")
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
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
