package coordinator

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// delayProxy forwards TCP connections to a target on loopback, holding every
// chunk back by a settable delay in each direction (latency, not a
// bandwidth limit: chunks keep their order and overlap in flight).
type delayProxy struct {
	lis    net.Listener
	target string
	delay  atomic.Int64 // nanoseconds, each way

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

func newDelayProxy(t *testing.T, target string) *delayProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{lis: lis, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	return p
}

func (p *delayProxy) addr() string { return p.lis.Addr().String() }

func (p *delayProxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *delayProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in) || !p.track(out) {
			in.Close()
			out.Close()
			return
		}
		p.wg.Add(4)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, each chunk no earlier than the delay after it
// was read. It runs a reader and a writer (both counted in wg) and closes
// both connections when either side ends.
func (p *delayProxy) pipe(src, dst net.Conn) {
	defer p.wg.Done()
	ch := make(chan chunk, 1024)
	go func() {
		defer p.wg.Done()
		for c := range ch {
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(c.data); err != nil {
				break
			}
		}
		src.Close()
		dst.Close()
		for range ch { // let the reader finish
		}
	}()
	defer close(ch)
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			ch <- chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(time.Duration(p.delay.Load()))}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				src.Close()
			}
			return
		}
	}
}

func (p *delayProxy) close() {
	p.lis.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// freePort returns a loopback address nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSlowFollowerReported puts a delaying TCP proxy in front of one
// follower's raft port (the leader reaches n3 only through it): the leader
// sees n3's heartbeats come back late, and Status reports n3, and only n3,
// as the slow follower, with the per-follower view the leader has.
func TestSlowFollowerReported(t *testing.T) {
	// n3 listens on a port of its own and advertises the proxy in front of
	// it: the leader dials the advertised address. (The port is free when
	// picked; another process could take it before n3 binds it, in which
	// case n3 fails to start and the test says so.)
	proxy := newDelayProxy(t, freePort(t))
	t.Cleanup(proxy.close) // after the nodes: cleanups run last-in first-out
	c := &testCluster{t: t, nodes: map[string]*testNode{}}
	t.Cleanup(c.closeAll)
	first := testConfig(t, "n1", t.TempDir())
	first.Bootstrap = true
	n1 := c.start(first)
	for _, id := range []string{"n2", "n3"} {
		cfg := testConfig(t, id, t.TempDir())
		cfg.Join = []string{n1.srv.Addr()}
		if id == "n3" {
			cfg.RaftAddr, cfg.RaftAdvertise = proxy.target, proxy.addr()
		}
		c.start(cfg)
	}
	c.waitVoters(3)
	if l := c.leader(); l != n1 {
		t.Fatalf("leader is %s, want n1 (the bootstrapping node)", l.cfg.NodeID)
	}

	proxy.setDelay(40 * time.Millisecond) // 80ms heartbeat round trips, against well under 1ms
	t.Cleanup(func() { proxy.setDelay(0) })

	var st *colonyv1.StatusResponse
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		st, err = c.node("n2").clu.Status(ctxT(t), &colonyv1.StatusRequest{}) // through a follower: the leader's view is fetched
		if err != nil {
			t.Fatal(err)
		}
		if m := member(st, "n3"); m.GetReplication().GetSlow() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n3 not reported slow within 20s: %v", st.Members)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n3, n2 := member(st, "n3").Replication, member(st, "n2").GetReplication()
	if !strings.Contains(n3.SlowReason, "heartbeat round trip") {
		t.Errorf("n3's slow reason %q does not name the round trip", n3.SlowReason)
	}
	if n3.HeartbeatRttMs < 40 {
		t.Errorf("n3's smoothed heartbeat round trip %.1fms, want at least the proxy's one-way delay", n3.HeartbeatRttMs)
	}
	if n2 == nil || n2.Slow || n2.LastContactMs < 0 || n2.HeartbeatRttMs >= n3.HeartbeatRttMs {
		t.Errorf("n2: %v, want a healthy follower faster than n3", n2)
	}
	if member(st, "n1").GetReplication() != nil {
		t.Errorf("the leader has a replication view of itself: %v", member(st, "n1").Replication)
	}
}

func member(st *colonyv1.StatusResponse, id string) *colonyv1.Member {
	for _, m := range st.GetMembers() {
		if m.Id == id {
			return m
		}
	}
	return nil
}

// TestElectionHistory: Status merges the members' election records: the
// cluster's first leader, a leadership transfer, and a leader that lost its
// quorum (both followers stopped) and stepped down.
func TestElectionHistory(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	l := c.leader()
	var target string
	for _, f := range c.followers() {
		target = f.cfg.NodeID
		break
	}
	if _, err := l.clu.TransferLeadership(ctx, &colonyv1.TransferLeadershipRequest{TargetId: target}); err != nil {
		t.Fatal(err)
	}
	st, err := l.clu.Status(ctx, &colonyv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h := st.LeaderHistory
	if len(h) < 2 {
		t.Fatalf("leader history %v: want the first election and the transfer", h)
	}
	if h[0].LeaderId != target || h[0].PreviousLeaderId != l.cfg.NodeID || h[0].Cause != colonyv1.ElectionCause_ELECTION_CAUSE_LEADERSHIP_TRANSFER {
		t.Errorf("newest election %v: want %s elected by a transfer from %s", h[0], target, l.cfg.NodeID)
	}
	// On a loaded machine n1 may have lost and regained leadership before
	// the transfer (a heartbeat timeout in term 2); the first election is
	// then further back. Whatever came between, the oldest is n1's.
	if oldest := h[len(h)-1]; oldest.LeaderId != "n1" ||
		oldest.Term == 1 && oldest.Cause != colonyv1.ElectionCause_ELECTION_CAUSE_FIRST_LEADER {
		t.Errorf("oldest election %v: want n1, the first leader", oldest)
	}

	// Stop both followers: the leader cannot reach a majority and steps
	// down with its term unchanged. When they come back, whoever wins the
	// next term, the cause is the lost quorum.
	leader := c.leader()
	var stopped []Config
	for _, f := range c.followers() {
		stopped = append(stopped, c.stop(f.cfg.NodeID))
	}
	deadline := time.Now().Add(10 * time.Second)
	for leader.srv.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the leader did not step down without its quorum")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, cfg := range stopped {
		c.start(cfg)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		st, err := c.leader().clu.Status(ctx, &colonyv1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if h := st.LeaderHistory; len(h) > 0 && h[0].Term > 0 && h[0].Cause == colonyv1.ElectionCause_ELECTION_CAUSE_LOST_QUORUM {
			if h[0].PreviousLeaderId != leader.cfg.NodeID {
				t.Errorf("lost-quorum election %v: previous leader want %s", h[0], leader.cfg.NodeID)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lost-quorum election in the history within 15s: %v", st.LeaderHistory)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
