//go:build unix

package framework

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// ErrAddrInUse is returned by Node.WaitServing when the process exited
// because it could not bind its ports.
var ErrAddrInUse = errors.New("address already in use")

// Dial opens a gRPC client connection with creds (PKI.Creds: the admin
// certificate, or plaintext to an insecure cluster) that reconnects
// quickly: its reconnect backoff is capped at maxBackoff, and it accepts
// messages of up to maxRecv bytes.
func Dial(addr string, creds credentials.TransportCredentials, maxBackoff time.Duration, maxRecv int) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecv)),
	)
}

// Launcher says how a suite starts its colony processes.
type Launcher struct {
	Ctx   context.Context // ending it kills every process started
	Suite string          // names the suite in the log files' markers
	Bin   string          // the colony binary
	// Dial opens a node's admin connection (see the package func Dial).
	Dial func(addr string) (*grpc.ClientConn, error)
}

// Node is one colony process of a cluster. Its addresses, data dir and log
// stay the same across restarts; its process and admin connection do not.
type Node struct {
	ID       string
	GRPCAddr string
	RaftAddr string
	DataDir  string
	LogPath  string

	l *Launcher

	mu     sync.Mutex
	args   []string
	proc   *Process         // nil while the node is not running
	paused bool             // SIGSTOPped
	conn   *grpc.ClientConn // direct admin connection, replaced on restart
}

// NewNode returns a node that keeps its data dir and log in dir. It is not
// started: set its arguments with SetArgs, then Start it.
func NewNode(l *Launcher, id, grpcAddr, raftAddr, dir string) *Node {
	return &Node{
		ID:       id,
		GRPCAddr: grpcAddr,
		RaftAddr: raftAddr,
		DataDir:  filepath.Join(dir, "data"),
		LogPath:  filepath.Join(dir, id+".log"),
		l:        l,
	}
}

// Args returns the arguments the node's next start uses.
func (n *Node) Args() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.args)
}

// SetArgs sets the arguments of the node's next start.
func (n *Node) SetArgs(args []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.args = args
}

// Start starts the node's process with its arguments, logging to LogPath,
// and opens a fresh admin connection.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return fmt.Errorf("%s is already running", n.ID)
	}
	p, err := StartProcess(n.l.Ctx, n.l.Suite, n.l.Bin, n.args, n.LogPath)
	if err != nil {
		return fmt.Errorf("starting %s: %w", n.ID, err)
	}
	n.proc, n.paused = p, false
	if n.conn != nil {
		n.conn.Close() // a fresh connection: the old one may be deep in reconnect backoff
	}
	n.conn, err = n.l.Dial(n.GRPCAddr)
	return err
}

// WaitServing waits until the node answers Cluster.Status, or its process
// exits (ErrAddrInUse when it could not bind its ports).
func (n *Node) WaitServing(ctx context.Context) error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s is not running", n.ID)
	}
	for {
		select {
		case <-p.done:
			tail := LogTail(n.LogPath, 20)
			if strings.Contains(tail, "address already in use") {
				return fmt.Errorf("%s exited (%v): %w", n.ID, p.err, ErrAddrInUse)
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

// Restart starts the node again with the same arguments and data dir and
// waits (up to StartTimeout) until it serves gRPC. Its ports may still be
// held for a moment by the previous process's sockets, so a failed bind is
// retried.
func (n *Node) Restart(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	for {
		if err := n.Start(); err != nil {
			return fmt.Errorf("restart %s: %w", n.ID, err)
		}
		err := n.WaitServing(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrAddrInUse) || ctx.Err() != nil {
			return fmt.Errorf("restart %s: %w", n.ID, err) // cleanup kills it if it still runs
		}
		n.takeProc() // it exited
		time.Sleep(200 * time.Millisecond)
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

// Pid is the id of the node's running process, or 0.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return 0
	}
	return n.proc.Pid()
}

// Conn is the admin connection to the node's current process.
func (n *Node) Conn() *grpc.ClientConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conn
}

// Tree, Sessions, Watch and Cluster are admin clients of the node's current
// process; take a new one after a restart.
func (n *Node) Tree() colonyv1.TreeClient         { return colonyv1.NewTreeClient(n.Conn()) }
func (n *Node) Sessions() colonyv1.SessionsClient { return colonyv1.NewSessionsClient(n.Conn()) }
func (n *Node) Watch() colonyv1.WatchClient       { return colonyv1.NewWatchClient(n.Conn()) }
func (n *Node) Cluster() colonyv1.ClusterClient   { return colonyv1.NewClusterClient(n.Conn()) }

// takeProc marks the node as not running and returns its process.
func (n *Node) takeProc() *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.proc
	n.proc, n.paused = nil, false
	return p
}

// Kill kills the node's process with SIGKILL (kill -9) and waits for it.
func (n *Node) Kill() error {
	p := n.takeProc()
	if p == nil {
		return fmt.Errorf("kill %s: not running", n.ID)
	}
	if p.Exited() {
		return fmt.Errorf("kill -9 %s: it had already exited: %v", n.ID, p.Describe())
	}
	if err := p.Kill(); err != nil {
		return fmt.Errorf("kill -9 %s: %w", n.ID, err)
	}
	if !p.WaitExit(ExitTimeout) {
		return fmt.Errorf("%s did not exit within %v of SIGKILL", n.ID, ExitTimeout)
	}
	return nil
}

// Stop stops the node gracefully (SIGTERM: a leader hands over leadership
// first) and waits for it. It fails unless the process exits cleanly, and
// kills it if it does not exit within ExitTimeout.
func (n *Node) Stop() error {
	p := n.takeProc()
	if p == nil {
		return fmt.Errorf("stop %s: not running", n.ID)
	}
	if p.Exited() {
		return fmt.Errorf("stop %s: it had already exited: %v", n.ID, p.Describe())
	}
	var errs []error
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		errs = append(errs, fmt.Errorf("SIGTERM %s: %w", n.ID, err))
	}
	if p.WaitExit(ExitTimeout) {
		if p.err != nil {
			errs = append(errs, fmt.Errorf("%s exited with %v after SIGTERM, want a clean exit", n.ID, p.err))
		}
	} else {
		p.Kill()
		<-p.done
		errs = append(errs, fmt.Errorf("%s did not exit within %v of SIGTERM; killed it", n.ID, ExitTimeout))
	}
	return errors.Join(errs...)
}

// Pause stops the node's process with SIGSTOP.
func (n *Node) Pause() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.paused {
		return fmt.Errorf("pause %s: not running, or paused already", n.ID)
	}
	if err := n.proc.Signal(syscall.SIGSTOP); err != nil {
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
	if err := n.proc.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("SIGCONT %s: %w", n.ID, err)
	}
	return nil
}

// Base returns n. A suite's node type that embeds *Node gets it too, so
// that Nodes can turn a slice of those into framework nodes.
func (n *Node) Base() *Node { return n }

// Nodes returns the framework nodes of a suite's nodes.
func Nodes[N interface{ Base() *Node }](ns []N) []*Node {
	out := make([]*Node, len(ns))
	for i, n := range ns {
		out[i] = n.Base()
	}
	return out
}
