//go:build unix

package robustness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Bounds on how long the harness waits for processes and the cluster. They
// only keep a broken run from hanging; nothing asserts how fast things are.
const (
	startTimeout = 30 * time.Second // a process to serve gRPC
	exitTimeout  = 20 * time.Second // a process to exit after SIGKILL
	rpcTimeout   = 2 * time.Second  // one attempt of one admin RPC
	logTailLines = 60               // log lines printed per node on failure
)

// Cluster is a coordinator cluster of separate `colony coordinator`
// processes, node i listening on 127.0.0.(10+i). Node i reaches node j's raft
// port only through the proxy RaftProxy(i, j) (--raft-peer-addr), and the
// workload's clients reach node j through ClientProxy(j); the harness's own
// admin connections go to the nodes directly.
type Cluster struct {
	t       testing.TB
	Nodes   []*Node
	raft    [][]*Proxy // raft[i][j]: node i dialling node j; nil on the diagonal
	clients []*Proxy   // clients[j]: the workload dialling node j
	events  *eventLog
	ctx     context.Context // ends in cleanup; kills every process still running
	stop    context.CancelFunc

	pmu sync.Mutex
	// extra[k][j]: the k-th further set of client proxies (a sidecar's)
	// dialling node j; client faults and healing apply to them as to
	// clients.
	extra [][]*Proxy
	// held proxies stay as set through HealNetwork (a canary's cut).
	held map[*Proxy]bool
}

// Node is one coordinator process. Its addresses and data dir stay the same
// across restarts.
type Node struct {
	ID       string
	Index    int
	GRPCAddr string
	RaftAddr string
	DataDir  string
	LogPath  string

	c    *Cluster
	args []string

	mu     sync.Mutex
	proc   *process         // nil while the node is not running
	paused bool             // SIGSTOPped
	conn   *grpc.ClientConn // direct admin connection, replaced on restart
}

// process is one run of a node's binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returned
	err  error         // Wait's result, set before done is closed
}

// clusterOptions configure newCluster.
type clusterOptions struct {
	Nodes     int
	Seed      uint64   // for the proxies' jitter
	ExtraArgs []string // for every node, e.g. snapshot thresholds
}

// newCluster starts the cluster and waits for a ready leader. Every process
// and proxy is stopped and waited for when the test ends.
func newCluster(t testing.TB, base string, opts clusterOptions, events *eventLog) *Cluster {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	c := &Cluster{t: t, ctx: ctx, stop: stop, events: events}
	t.Cleanup(c.cleanup)
	const attempts = 5
	for attempt := 1; ; attempt++ {
		err := c.tryStart(base, attempt, opts)
		if err == nil {
			break
		}
		c.killAll(false)
		c.closeProxies()
		if attempt == attempts || !errors.Is(err, errAddrInUse) {
			t.Fatalf("starting a %d-node cluster: %v", opts.Nodes, err)
		}
		t.Logf("starting the cluster, attempt %d: %v; retrying on other ports", attempt, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.WaitReady(wctx); err != nil {
		t.Fatalf("new cluster: %v", err)
	}
	return c
}

var errAddrInUse = errors.New("address already in use")

func (c *Cluster) tryStart(base string, attempt int, opts clusterOptions) error {
	n := opts.Nodes
	c.Nodes, c.raft, c.clients = nil, make([][]*Proxy, n), make([]*Proxy, n)
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		ports, err := freePorts(ip, 2)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("n%d", i+1)
		dir := filepath.Join(base, fmt.Sprintf("try%d", attempt), id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, &Node{
			ID:       id,
			Index:    i,
			GRPCAddr: net.JoinHostPort(ip, fmt.Sprint(ports[0])),
			RaftAddr: net.JoinHostPort(ip, fmt.Sprint(ports[1])),
			DataDir:  filepath.Join(dir, "data"),
			LogPath:  filepath.Join(dir, id+".log"),
			c:        c,
		})
	}
	var peers []string
	for _, node := range c.Nodes {
		peers = append(peers, node.ID+"="+node.RaftAddr)
	}
	for i, from := range c.Nodes {
		c.raft[i] = make([]*Proxy, n)
		var overrides []string
		for j, to := range c.Nodes {
			if i == j {
				continue
			}
			p, err := newProxy(from.ID+"->"+to.ID, to.RaftAddr, opts.Seed*131+uint64(i*n+j))
			if err != nil {
				return err
			}
			c.raft[i][j] = p
			overrides = append(overrides, to.ID+"="+p.Addr())
		}
		p, err := newProxy("client->"+from.ID, from.GRPCAddr, opts.Seed*137+uint64(i))
		if err != nil {
			return err
		}
		c.clients[i] = p
		from.args = append([]string{
			"coordinator",
			"--id", from.ID,
			"--data-dir", from.DataDir,
			"--grpc-addr", from.GRPCAddr,
			"--raft-addr", from.RaftAddr,
			"--bootstrap",
			"--peers", strings.Join(peers, ","),
			"--raft-peer-addr", strings.Join(overrides, ","),
			"--log-level", "info",
		}, opts.ExtraArgs...)
	}
	for _, node := range c.Nodes {
		if err := node.start(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(c.ctx, startTimeout)
	defer cancel()
	for _, node := range c.Nodes {
		if err := node.waitServing(ctx); err != nil {
			return err
		}
	}
	return nil
}

// freePorts returns n distinct ports of ip that were free a moment ago.
func freePorts(ip string, n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("finding a free port on %s: %w", ip, err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// RaftProxy is the proxy node i dials to reach node j.
func (c *Cluster) RaftProxy(i, j int) *Proxy { return c.raft[i][j] }

// ClientProxy is the proxy the workload dials to reach node j.
func (c *Cluster) ClientProxy(j int) *Proxy { return c.clients[j] }

// ClientEndpoints are the workload's addresses of every node.
func (c *Cluster) ClientEndpoints() []string {
	var out []string
	for _, p := range c.clients {
		out = append(out, p.Addr())
	}
	return out
}

// AddClientProxies starts one more proxy to every node's gRPC port, for a
// client of its own (a sidecar process), and returns their addresses.
// Client faults (client-cut, latency) and HealNetwork apply to them too.
func (c *Cluster) AddClientProxies(name string) ([]string, []*Proxy, error) {
	var ps []*Proxy
	var eps []string
	for j, n := range c.Nodes {
		p, err := newProxy(name+"->"+n.ID, n.GRPCAddr, uint64(len(c.extra))*7919+uint64(j))
		if err != nil {
			for _, q := range ps {
				q.Close()
			}
			return nil, nil, err
		}
		ps = append(ps, p)
		eps = append(eps, p.Addr())
	}
	c.pmu.Lock()
	c.extra = append(c.extra, ps)
	c.pmu.Unlock()
	return eps, ps, nil
}

// ClientProxiesTo returns every client proxy to node j: the workload's and
// the further sets'.
func (c *Cluster) ClientProxiesTo(j int) []*Proxy {
	out := []*Proxy{c.clients[j]}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	for _, set := range c.extra {
		out = append(out, set[j])
	}
	return out
}

// allClientProxies returns every client proxy.
func (c *Cluster) allClientProxies() []*Proxy {
	var out []*Proxy
	for j := range c.clients {
		out = append(out, c.ClientProxiesTo(j)...)
	}
	return out
}

// allProxies returns every proxy, raft and client.
func (c *Cluster) allProxies() []*Proxy {
	var out []*Proxy
	for _, row := range c.raft {
		for _, p := range row {
			if p != nil {
				out = append(out, p)
			}
		}
	}
	for _, p := range c.clients {
		if p != nil {
			out = append(out, p)
		}
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	for _, set := range c.extra {
		out = append(out, set...)
	}
	return out
}

// Hold sets ps to mode and keeps them so through HealNetwork, until the
// end of the test (canaries use it to keep one client cut off).
func (c *Cluster) Hold(ps []*Proxy, mode proxyMode) {
	c.pmu.Lock()
	if c.held == nil {
		c.held = map[*Proxy]bool{}
	}
	for _, p := range ps {
		c.held[p] = true
	}
	c.pmu.Unlock()
	for _, p := range ps {
		p.SetMode(mode)
	}
}

// HealNetwork lets every proxy forward again, without latency (except the
// held ones).
func (c *Cluster) HealNetwork() {
	for _, p := range c.allProxies() {
		c.pmu.Lock()
		held := c.held[p]
		c.pmu.Unlock()
		if !held {
			p.SetMode(modePass)
			p.SetLatency(0, 0)
		}
	}
}

func (c *Cluster) closeProxies() {
	for _, p := range c.allProxies() {
		p.Close()
	}
	c.raft, c.clients = nil, nil
	c.pmu.Lock()
	c.extra, c.held = nil, nil
	c.pmu.Unlock()
}

// start starts the node's process with its arguments, logging to LogPath.
func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return fmt.Errorf("%s is already running", n.ID)
	}
	p, err := startProcess(n.c.ctx, n.args, n.LogPath)
	if err != nil {
		return fmt.Errorf("starting %s: %w", n.ID, err)
	}
	n.proc, n.paused = p, false
	if n.conn != nil {
		n.conn.Close() // a fresh connection: the old one may be deep in reconnect backoff
	}
	n.conn, err = dial(n.GRPCAddr)
	return err
}

// startProcess runs the colony binary with args in a process group of its
// own, appending its output to logPath. ctx ending kills it; its Wait runs
// in a goroutine that ends when the process has exited.
func startProcess(ctx context.Context, args []string, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "=== robustness %s: starting %s %s\n", time.Now().Format(time.RFC3339Nano), colonyBin, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, colonyBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	p := &process{cmd: cmd, done: make(chan struct{})}
	cmd.Cancel = p.kill
	cmd.WaitDelay = exitTimeout
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(logf, "=== robustness %s: process exited: %v\n", time.Now().Format(time.RFC3339Nano), exitDescription(cmd, p.err))
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// dial opens a gRPC client connection that reconnects quickly.
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 300 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
	)
}

func exitDescription(cmd *exec.Cmd, err error) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	return fmt.Sprint(err)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process and, while it has not been waited for
// (so its pid cannot have been reused), to its process group.
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

// signal sends sig to the running process, unless it has exited.
func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return fmt.Errorf("process exited: %v", exitDescription(p.cmd, p.err))
	}
	return p.cmd.Process.Signal(sig)
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

// Running reports whether the node's process is running (paused or not).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil
}

// Paused reports whether the node's process is stopped with SIGSTOP.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil && n.paused
}

func (n *Node) clientConn() *grpc.ClientConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conn
}

// Tree and Cluster are direct admin clients of the node's current process.
func (n *Node) Tree() colonyv1.TreeClient       { return colonyv1.NewTreeClient(n.clientConn()) }
func (n *Node) Cluster() colonyv1.ClusterClient { return colonyv1.NewClusterClient(n.clientConn()) }

func (n *Node) takeProc() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.proc
	n.proc, n.paused = nil, false
	return p
}

// Kill kills the node's process with SIGKILL and waits for it.
func (n *Node) Kill() error {
	p := n.takeProc()
	if p == nil {
		return fmt.Errorf("kill %s: not running", n.ID)
	}
	if p.exited() {
		return fmt.Errorf("kill -9 %s: it had already exited: %v", n.ID, exitDescription(p.cmd, p.err))
	}
	if err := p.kill(); err != nil {
		return fmt.Errorf("kill -9 %s: %w", n.ID, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("%s did not exit within %v of SIGKILL", n.ID, exitTimeout)
	}
}

// Pause stops the node's process with SIGSTOP.
func (n *Node) Pause() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.paused {
		return fmt.Errorf("pause %s: not running, or paused already", n.ID)
	}
	if err := n.proc.signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP %s: %w", n.ID, err)
	}
	n.paused = true
	return nil
}

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || !n.paused {
		return nil
	}
	n.paused = false
	if err := n.proc.signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("SIGCONT %s: %w", n.ID, err)
	}
	return nil
}

// Restart starts the node again with the same arguments and data dir and
// waits until it serves gRPC. A port still held for a moment by the previous
// process is retried.
func (n *Node) Restart(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		if err := n.start(); err != nil {
			return fmt.Errorf("restart %s: %w", n.ID, err)
		}
		err := n.waitServing(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errAddrInUse) || ctx.Err() != nil {
			return fmt.Errorf("restart %s: %w", n.ID, err) // cleanup kills it if it still runs
		}
		n.takeProc() // it exited
		time.Sleep(200 * time.Millisecond)
	}
}

// Wipe deletes the stopped node's data dir and makes its next start join
// the cluster through joinAddrs instead of bootstrapping: a new member with
// the old identity and addresses.
func (n *Node) Wipe(joinAddrs []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return fmt.Errorf("wipe %s: still running", n.ID)
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		return fmt.Errorf("wipe %s: %w", n.ID, err)
	}
	var args []string
	for i := 0; i < len(n.args); i++ {
		switch n.args[i] {
		case "--bootstrap":
		case "--peers", "--join":
			i++ // and its value
		default:
			args = append(args, n.args[i])
		}
	}
	n.args = append(args, "--join", strings.Join(joinAddrs, ","))
	return nil
}

// Live returns the nodes whose processes run and are not paused.
func (c *Cluster) Live() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Running() && !n.Paused() {
			out = append(out, n)
		}
	}
	return out
}

// Statuses asks every live node for Cluster.Status.
func (c *Cluster) Statuses(ctx context.Context) (map[string]*colonyv1.StatusResponse, error) {
	out := map[string]*colonyv1.StatusResponse{}
	for _, n := range c.Live() {
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		st, err := n.Cluster().Status(rctx, &colonyv1.StatusRequest{})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", n.ID, err)
		}
		out[n.ID] = st
	}
	return out, nil
}

// LeaderOnce returns the leader every live node names, or an error saying
// why there is none.
func (c *Cluster) LeaderOnce(ctx context.Context) (*Node, error) {
	sts, err := c.Statuses(ctx)
	if err != nil {
		return nil, err
	}
	if len(sts) == 0 {
		return nil, errors.New("no node is live")
	}
	leaderID := ""
	for id, st := range sts {
		switch {
		case st.LeaderId == "":
			return nil, fmt.Errorf("%s knows no leader", id)
		case leaderID != "" && st.LeaderId != leaderID:
			return nil, fmt.Errorf("nodes disagree on the leader: %s and %s", leaderID, st.LeaderId)
		}
		leaderID = st.LeaderId
	}
	for _, n := range c.Nodes {
		if n.ID == leaderID {
			return n, nil
		}
	}
	return nil, fmt.Errorf("leader %s is not a node of the cluster", leaderID)
}

// WaitReady waits until every live node names the same leader and serves a
// linearizable read, and returns the leader.
func (c *Cluster) WaitReady(ctx context.Context) (*Node, error) {
	var lastErr error
	for {
		leader, err := c.LeaderOnce(ctx)
		if err == nil {
			for _, n := range c.Live() {
				rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
				_, err = n.Tree().Exists(rctx, &colonyv1.ExistsRequest{Path: "/"})
				cancel()
				if err != nil {
					err = fmt.Errorf("linearizable read through %s: %w", n.ID, err)
					break
				}
			}
			if err == nil {
				return leader, nil
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no ready leader: %w (last: %v)", ctx.Err(), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// killAll kills every running node and closes the admin connections. With
// reportExits, a node that exited without the harness stopping it fails the
// test.
func (c *Cluster) killAll(reportExits bool) {
	for _, n := range c.Nodes {
		if p := n.takeProc(); p != nil {
			if reportExits && p.exited() {
				c.t.Errorf("%s exited while the harness expected it to run: %v", n.ID, exitDescription(p.cmd, p.err))
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

// cleanup kills every process, closes every proxy, reports races and panics
// the servers logged, and prints the tail of every log if the test failed.
func (c *Cluster) cleanup() {
	c.killAll(true)
	c.closeProxies()
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
}

// copyLogs copies every node's log into dir.
func (c *Cluster) copyLogs(dir string) error {
	for _, n := range c.Nodes {
		if err := copyFile(n.LogPath, filepath.Join(dir, n.ID+".log")); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

func excerpt(b []byte, i, lines int) string {
	rest := strings.SplitN(string(b[i:]), "\n", lines+1)
	return strings.Join(rest[:min(len(rest), lines)], "\n")
}

func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
