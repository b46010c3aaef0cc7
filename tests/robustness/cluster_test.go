//go:build unix

package robustness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/framework"
)

// colonyBin is the colony binary every node and sidecar of the harness runs:
// TestMain builds it (or takes COLONY_E2E_BINARY) before any test starts.
var colonyBin string

func TestMain(m *testing.M) {
	os.Exit(framework.RunSuite(m, "robustness", &colonyBin))
}

// Bounds on how long the harness waits for processes and the cluster. They
// only keep a broken run from hanging; nothing asserts how fast things are.
const (
	startTimeout = framework.StartTimeout // a process to serve gRPC
	exitTimeout  = framework.ExitTimeout  // a process to exit after SIGKILL
	rpcTimeout   = 2 * time.Second        // one attempt of one admin RPC
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
	// PKI issued the nodes' and sidecars' certificates and the admin
	// certificate of the harness and the workload; nil for an insecure
	// cluster (clusterOptions.Insecure).
	PKI  *framework.PKI
	ctx  context.Context // ends in cleanup; kills every process still running
	stop context.CancelFunc

	pmu sync.Mutex
	// extra[k][j]: the k-th further set of client proxies (a sidecar's)
	// dialling node j; client faults and healing apply to them as to
	// clients.
	extra [][]*Proxy
	// held proxies stay as set through HealNetwork (a canary's cut).
	held map[*Proxy]bool
}

// Node is one coordinator process (see framework.Node). Its addresses and
// data dir stay the same across restarts.
type Node struct {
	*framework.Node
	Index int
}

// clusterOptions configure newCluster.
type clusterOptions struct {
	Nodes     int
	Seed      uint64   // for the proxies' jitter
	ExtraArgs []string // for every node, e.g. snapshot thresholds
	// Insecure runs the nodes with --insecure and every client in
	// plaintext. The default is TLS: a CA in base, a node certificate for
	// every node (--certs-dir), an admin certificate for the clients.
	// The fault proxies forward TCP, so TLS passes through them: nodes
	// verify each other by the node identity in their certificates, not by
	// the address dialled.
	Insecure bool
}

// newCluster starts the cluster and waits for a ready leader. Every process
// and proxy is stopped and waited for when the test ends.
func newCluster(t testing.TB, base string, opts clusterOptions, events *eventLog) *Cluster {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	c := &Cluster{t: t, ctx: ctx, stop: stop, events: events}
	if !opts.Insecure {
		pki, err := newPKI(filepath.Join(base, "tls"), opts.Nodes)
		if err != nil {
			stop()
			t.Fatal(err)
		}
		c.PKI = pki
	}
	t.Cleanup(c.cleanup)
	framework.StartRetrying(t, fmt.Sprintf("a %d-node cluster", opts.Nodes), func(attempt int) error {
		return c.tryStart(base, attempt, opts)
	}, func() {
		framework.KillAll(t, c.nodes(), false)
		c.closeProxies()
	})
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.WaitReady(wctx); err != nil {
		t.Fatalf("new cluster: %v", err)
	}
	return c
}

// errAddrInUse: a process could not bind its ports.
var errAddrInUse = framework.ErrAddrInUse

func (c *Cluster) tryStart(base string, attempt int, opts clusterOptions) error {
	n := opts.Nodes
	l := &framework.Launcher{Ctx: c.ctx, Suite: "robustness", Bin: colonyBin, Dial: func(addr string) (*grpc.ClientConn, error) {
		return dial(addr, c.ClientTLS())
	}}
	c.Nodes, c.raft, c.clients = nil, make([][]*Proxy, n), make([]*Proxy, n)
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		ports, err := framework.FreePorts(ip, 2)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("n%d", i+1)
		dir := filepath.Join(base, fmt.Sprintf("try%d", attempt), id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, &Node{
			Node: framework.NewNode(l, id,
				net.JoinHostPort(ip, fmt.Sprint(ports[0])),
				net.JoinHostPort(ip, fmt.Sprint(ports[1])), dir),
			Index: i,
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
		from.SetArgs(append([]string{
			"coordinator",
			"--id", from.ID,
			"--data-dir", from.DataDir,
			"--grpc-addr", from.GRPCAddr,
			"--raft-addr", from.RaftAddr,
			"--bootstrap",
			"--peers", strings.Join(peers, ","),
			"--raft-peer-addr", strings.Join(overrides, ","),
			"--log-level", "info",
		}, append(c.PKI.ServerArgs(), opts.ExtraArgs...)...))
	}
	return framework.StartAll(c.ctx, c.nodes())
}

// nodes returns the framework's nodes of c.
func (c *Cluster) nodes() []*framework.Node { return framework.Nodes(c.Nodes) }

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

// newPKI creates the cluster's CA in dir and the certificates of n nodes,
// node i valid for its own address 127.0.0.(11+i) and for 127.0.0.1, where
// the client proxies listen.
func newPKI(dir string, n int) (*framework.PKI, error) {
	pki, err := framework.NewPKI(dir)
	if err != nil {
		return nil, err
	}
	for i := range n {
		if _, err := pki.Issue(trust.RoleNode, fmt.Sprintf("n%d", i+1), "127.0.0.1", fmt.Sprintf("127.0.0.%d", 11+i)); err != nil {
			return nil, err
		}
	}
	return pki, nil
}

// ClientTLS is the TLS configuration of the harness's and the workload's
// clients (the admin certificate); nil, plaintext, for an insecure cluster.
func (c *Cluster) ClientTLS() *tls.Config { return c.PKI.AdminTLS() }

// dial opens a gRPC client connection that reconnects quickly, with TLS
// configured by cfg (nil: plaintext, as to a sidecar's local API).
func dial(addr string, cfg *tls.Config) (*grpc.ClientConn, error) {
	return framework.Dial(addr, framework.Creds(cfg), 300*time.Millisecond, 16<<20)
}

// Wipe deletes the stopped node's data dir and makes its next start join
// the cluster through joinAddrs instead of bootstrapping: a new member with
// the old identity and addresses.
func (n *Node) Wipe(joinAddrs []string) error {
	if n.Running() {
		return fmt.Errorf("wipe %s: still running", n.ID)
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		return fmt.Errorf("wipe %s: %w", n.ID, err)
	}
	old := n.Args()
	var args []string
	for i := 0; i < len(old); i++ {
		switch old[i] {
		case "--bootstrap":
		case "--peers", "--join":
			i++ // and its value
		default:
			args = append(args, old[i])
		}
	}
	n.SetArgs(append(args, "--join", strings.Join(joinAddrs, ",")))
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
	return framework.Statuses(ctx, framework.Nodes(c.Live()), rpcTimeout)
}

// LeaderOnce returns the leader every live node names, or an error saying
// why there is none.
func (c *Cluster) LeaderOnce(ctx context.Context) (*Node, error) {
	live := c.Live()
	sts, err := framework.Statuses(ctx, framework.Nodes(live), rpcTimeout)
	if err != nil {
		return nil, err
	}
	if len(sts) == 0 {
		return nil, errors.New("no node is live")
	}
	leaderID, err := framework.AgreedLeader(framework.Nodes(live), sts, false)
	if err != nil {
		return nil, err
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
	return framework.WaitReady(ctx, 100*time.Millisecond, rpcTimeout, c.LeaderOnce, c.Live)
}

// cleanup kills every process, closes every proxy, and reports races and
// panics the servers logged.
func (c *Cluster) cleanup() {
	framework.KillAll(c.t, c.nodes(), true)
	c.closeProxies()
	c.stop()
	framework.CheckLogs(c.t, c.nodes())
}

// copyLogs copies every node's log into dir.
func (c *Cluster) copyLogs(dir string) error {
	for _, n := range c.Nodes {
		if err := framework.CopyFile(n.LogPath, filepath.Join(dir, n.ID+".log")); err != nil {
			return err
		}
	}
	return nil
}
