package coordinator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc's and raft's package-level background goroutines.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

// testNode is one in-process coordinator node with a client connection.
type testNode struct {
	srv  *Server
	cfg  Config
	conn *grpc.ClientConn
	tree colonyv1.TreeClient
	sess colonyv1.SessionsClient
	wch  colonyv1.WatchClient
	clu  colonyv1.ClusterClient
}

type testCluster struct {
	t     testing.TB
	nodes map[string]*testNode
	mu    sync.Mutex
}

func testConfig(t testing.TB, id, dir string) Config {
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.DataDir = dir
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.MinSessionTTL = 300 * time.Millisecond
	cfg.ReapInterval = 100 * time.Millisecond
	if testing.Verbose() {
		cfg.Logger = slogForTest(t)
	}
	return cfg
}

// newTestCluster starts n nodes in this process on loopback ports: the
// first bootstraps alone, the others join through it and are promoted.
func newTestCluster(t testing.TB, n int, opts ...func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, nodes: map[string]*testNode{}}
	t.Cleanup(c.closeAll)
	config := func(id string) Config {
		cfg := testConfig(t, id, t.TempDir())
		for _, o := range opts {
			o(&cfg)
		}
		return cfg
	}
	first := config("n1")
	first.Bootstrap = true
	c.start(first)
	for i := 2; i <= n; i++ {
		cfg := config(fmt.Sprintf("n%d", i))
		cfg.Join = []string{c.node("n1").srv.Addr()}
		c.start(cfg)
	}
	c.waitVoters(n)
	return c
}

func (c *testCluster) start(cfg Config) *testNode {
	c.t.Helper()
	srv, err := New(cfg)
	if err != nil {
		c.t.Fatalf("starting %s: %v", cfg.NodeID, err)
	}
	// Restart on the same addresses, as a real deployment does.
	cfg.RaftAddr, cfg.GRPCAddr = srv.RaftAddr(), srv.Addr()
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	n := &testNode{
		srv: srv, cfg: cfg, conn: conn,
		tree: colonyv1.NewTreeClient(conn), sess: colonyv1.NewSessionsClient(conn),
		wch: colonyv1.NewWatchClient(conn), clu: colonyv1.NewClusterClient(conn),
	}
	c.mu.Lock()
	c.nodes[cfg.NodeID] = n
	c.mu.Unlock()
	// Close the node before its data dir is removed: cleanups run last in,
	// first out, and the dir was made (t.TempDir) before this start. A
	// store that reads files after the test removed them (pebble opens
	// its tables lazily) would otherwise find its own data gone.
	c.t.Cleanup(func() {
		c.mu.Lock()
		cur := c.nodes[cfg.NodeID]
		c.mu.Unlock()
		if cur == n {
			c.stop(cfg.NodeID)
		}
	})
	return n
}

func (c *testCluster) node(id string) *testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// stop closes a node, keeping its data dir for a restart.
func (c *testCluster) stop(id string) Config {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	n.conn.Close()
	if err := n.srv.Close(); err != nil {
		c.t.Errorf("closing %s: %v", id, err)
	}
	return n.cfg
}

func (c *testCluster) closeAll() {
	c.mu.Lock()
	ids := make([]string, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.stop(id)
	}
}

func (c *testCluster) leader() *testNode {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, n := range c.nodes {
			if lt := n.srv.currentLeaderTerm(); lt != nil {
				select {
				case <-lt.ready:
					c.mu.Unlock()
					return n
				default:
				}
			}
		}
		c.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("no ready leader within 10s")
	return nil
}

func (c *testCluster) followers() []*testNode {
	l := c.leader()
	c.mu.Lock()
	defer c.mu.Unlock()
	var fs []*testNode
	for _, n := range c.nodes {
		if n != l {
			fs = append(fs, n)
		}
	}
	return fs
}

func (c *testCluster) waitVoters(n int) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		st, err := c.leader().clu.Status(ctxT(c.t), &colonyv1.StatusRequest{})
		if err == nil {
			voters := 0
			for _, m := range st.Members {
				if m.Suffrage == colonyv1.Suffrage_SUFFRAGE_VOTER && m.GrpcAddress != "" {
					voters++
				}
			}
			if voters == n {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("cluster did not reach %d registered voters", n)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClusterWriteThroughFollowerReadEverywhere(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	fs := c.followers()

	created, err := fs[0].tree.Create(ctx, &colonyv1.CreateRequest{Path: "/app", Data: []byte("v0")})
	if err != nil {
		t.Fatalf("create through follower: %v", err)
	}
	if created.Header.Zxid < created.Stat.Czxid {
		t.Errorf("reply header zxid %d is older than the write's own zxid %d", created.Header.Zxid, created.Stat.Czxid)
	}
	for i := 1; i <= 20; i++ {
		if _, err := fs[0].tree.Set(ctx, &colonyv1.SetRequest{Path: "/app", Data: fmt.Appendf(nil, "v%d", i), ExpectedVersion: proto.Int64(int64(i - 1))}); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
		// A linearizable read through another node sees the acknowledged write.
		got, err := fs[1].tree.Get(ctx, &colonyv1.GetRequest{Path: "/app"})
		if err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		if want := fmt.Sprintf("v%d", i); string(got.Data) != want || got.Stat.Version != int64(i) {
			t.Fatalf("linearizable read after set %d through another node: got %q version %d", i, got.Data, got.Stat.Version)
		}
	}
	// Compare-and-set with a stale version fails on every node and names the current version.
	_, err = c.leader().tree.Set(ctx, &colonyv1.SetRequest{Path: "/app", Data: []byte("x"), ExpectedVersion: proto.Int64(3)})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "20") {
		t.Errorf("stale CAS: got %v, want FailedPrecondition naming current version 20", err)
	}
}

func TestClusterSessionConsistentRead(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	fs := c.followers()
	resp, err := fs[0].tree.Create(ctx, &colonyv1.CreateRequest{Path: "/s", Data: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := fs[1].tree.Get(ctx, &colonyv1.GetRequest{Path: "/s", Consistency: colonyv1.Consistency_CONSISTENCY_SESSION, MinZxid: resp.Header.Zxid})
	if err != nil {
		t.Fatalf("session read on the other follower: %v", err)
	}
	if got.Header.Zxid < resp.Header.Zxid || string(got.Data) != "1" {
		t.Errorf("session read is older than what the client saw: zxid %d < %d", got.Header.Zxid, resp.Header.Zxid)
	}
}

func TestClusterRetriedWriteAppliedOnce(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	fs := c.followers()
	if _, err := c.leader().tree.Create(ctx, &colonyv1.CreateRequest{Path: "/q"}); err != nil {
		t.Fatal(err)
	}
	req := &colonyv1.CreateRequest{Path: "/q/item-", Sequential: true, RequestId: "client-7/42"}
	first, err := fs[0].tree.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// The same request through another node, as a client does after a lost reply.
	again, err := fs[1].tree.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Path != first.Path {
		t.Errorf("retry created %q, first attempt %q: applied twice", again.Path, first.Path)
	}
	kids, err := fs[1].tree.Children(ctx, &colonyv1.ChildrenRequest{Path: "/q"})
	if err != nil {
		t.Fatal(err)
	}
	if len(kids.Names) != 1 {
		t.Errorf("children after a retried create: %v, want exactly one", kids.Names)
	}
}

func TestClusterWatchOnFollowerAcrossLeaderChange(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	if _, err := c.leader().tree.Create(ctx, &colonyv1.CreateRequest{Path: "/w", Data: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	leaderID := c.leader().srv.ID()
	var watcher *testNode
	for _, f := range c.followers() {
		watcher = f
		break
	}
	stream, err := watcher.wch.Watch(ctx, &colonyv1.WatchRequest{Path: "/w", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || !first.Created {
		t.Fatalf("first watch message: %v %v", first, err)
	}

	const n = 30
	writerDone := make(chan error, 1)
	go func() {
		writerDone <- func() error {
			for i := 1; i <= n; i++ {
				if i == n/2 {
					c.stop(leaderID) // leader change in the middle of the writes
				}
				var err error
				for attempt := 0; attempt < 50; attempt++ {
					_, err = watcher.tree.Set(ctx, &colonyv1.SetRequest{Path: "/w", Data: fmt.Appendf(nil, "%d", i), RequestId: fmt.Sprintf("w-%d", i)})
					if err == nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					return fmt.Errorf("set %d: %w", i, err)
				}
			}
			return nil
		}()
	}()

	var versions []int64
	for len(versions) < n {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch stream after %d events: %v", len(versions), err)
		}
		if msg.Resync {
			t.Fatalf("unexpected resync: %s", msg.ResyncReason)
		}
		for _, ev := range msg.Events {
			if ev.Type == colonyv1.EventType_EVENT_TYPE_DATA_CHANGED {
				versions = append(versions, ev.Stat.Version)
			}
		}
	}
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	for i, v := range versions {
		if v != int64(i+1) {
			t.Fatalf("watch saw versions %v: want every version 1..%d once, in order", versions, n)
		}
	}
}

func TestClusterSessionExpiryDeletesEphemerals(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	f := c.followers()[0]
	open, err := f.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 600, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/eph", Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL, SessionId: open.SessionId}); err != nil {
		t.Fatal(err)
	}
	// Keep-alives through a follower keep it alive well past its TTL.
	for range 6 {
		time.Sleep(200 * time.Millisecond)
		if _, err := f.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: open.SessionId}); err != nil {
			t.Fatalf("keep-alive: %v", err)
		}
	}
	lastAck := time.Now()
	if ex, err := f.tree.Exists(ctx, &colonyv1.ExistsRequest{Path: "/eph"}); err != nil || !ex.Exists {
		t.Fatalf("ephemeral gone while its session was kept alive: %v %v", ex, err)
	}
	// Stop keep-alives: the node disappears, and not before the TTL.
	for {
		ex, err := f.tree.Exists(ctx, &colonyv1.ExistsRequest{Path: "/eph"})
		if err != nil {
			t.Fatal(err)
		}
		if !ex.Exists {
			if since := time.Since(lastAck); since < 600*time.Millisecond {
				t.Fatalf("ephemeral deleted %v after the last keep-alive, before the 600ms TTL", since)
			}
			break
		}
		if time.Since(lastAck) > 10*time.Second {
			t.Fatal("ephemeral still there 10s after the session's last keep-alive")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = f.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: open.SessionId})
	if status.Code(err) != codes.NotFound {
		t.Errorf("keep-alive of an expired session: %v, want NotFound", err)
	}
}

func TestClusterRestartFromDiskAndSnapshot(t *testing.T) {
	testRestartFromDiskAndSnapshot(t, newTestCluster(t, 3))
}

func testRestartFromDiskAndSnapshot(t *testing.T, c *testCluster) {
	ctx := ctxT(t)
	l := c.leader()
	if _, err := l.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/d"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := l.tree.Create(ctx, &colonyv1.CreateRequest{Path: fmt.Sprintf("/d/k%02d", i), Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	f := c.followers()[0]
	if err := f.srv.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	cfg := c.stop(f.srv.ID())
	// Writes continue without it.
	for i := 50; i < 60; i++ {
		if _, err := l.tree.Create(ctx, &colonyv1.CreateRequest{Path: fmt.Sprintf("/d/k%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Restart from its data dir: snapshot plus log, then it catches up.
	cfg.Join = nil
	n := c.start(cfg)
	kids, err := n.tree.Children(ctx, &colonyv1.ChildrenRequest{Path: "/d"})
	if err != nil {
		t.Fatal(err)
	}
	if len(kids.Names) != 60 {
		t.Errorf("restarted node lists %d children, want 60", len(kids.Names))
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "snapshots")); err != nil {
		t.Errorf("no snapshot dir: %v", err)
	}
}

func TestClusterBadInput(t *testing.T) {
	c := newTestCluster(t, 1)
	ctx := ctxT(t)
	n := c.leader()
	big := make([]byte, n.cfg.MaxDataBytes+1)
	cases := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"relative path", func() error { _, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "a/b"}); return err }, codes.InvalidArgument, "path"},
		{"trailing slash", func() error { _, err := n.tree.Get(ctx, &colonyv1.GetRequest{Path: "/a/"}); return err }, codes.InvalidArgument, "path"},
		{"oversize data", func() error {
			_, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/big", Data: big})
			return err
		}, codes.InvalidArgument, "1048576"},
		{"missing parent", func() error { _, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/no/such"}); return err }, codes.NotFound, "/no"},
		{"unknown session", func() error {
			_, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/e", Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL, SessionId: 999999})
			return err
		}, codes.NotFound, "session"},
		{"keep-alive unknown session", func() error {
			_, err := n.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: 424242})
			return err
		}, codes.NotFound, "session"},
		{"negative ttl", func() error { _, err := n.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: -1}); return err }, codes.InvalidArgument, "ttl_ms"},
		{"empty multi", func() error { _, err := n.tree.Multi(ctx, &colonyv1.MultiRequest{}); return err }, codes.InvalidArgument, "ops"},
		{"recursive one-shot watch", func() error {
			s, err := n.wch.Watch(ctx, &colonyv1.WatchRequest{Path: "/", Kind: colonyv1.WatchKind_WATCH_KIND_DATA, Recursive: true})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.InvalidArgument, "recursive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want %v mentioning %q", err, tc.code, tc.msg)
			}
		})
	}
	// The server is still healthy.
	if _, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/ok"}); err != nil {
		t.Errorf("write after bad input: %v", err)
	}
}

func TestClusterResumeWatchFromZxid(t *testing.T) {
	c := newTestCluster(t, 1)
	ctx := ctxT(t)
	n := c.leader()
	r, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	start := r.Stat.Czxid
	for i := range 5 {
		if _, err := n.tree.Set(ctx, &colonyv1.SetRequest{Path: "/r", Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := n.wch.Watch(ctx, &colonyv1.WatchRequest{Path: "/r", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, AfterZxid: proto.Uint64(start)})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for len(got) < 5 {
		m, err := stream.Recv()
		if err == io.EOF || err != nil {
			t.Fatalf("recv: %v", err)
		}
		for _, ev := range m.Events {
			got = append(got, ev.Stat.Version)
		}
	}
	if fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Errorf("resumed watch delivered versions %v, want [1 2 3 4 5]", got)
	}
}

// A follower that was down while the leader snapshotted and truncated its log
// catches up through InstallSnapshot: FSM.Restore on a running node.
func TestClusterLaggingFollowerCatchesUpFromSnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(c *Config) {
		c.TrailingLogs = 5 // truncate almost everything after a snapshot
		c.SnapshotThreshold = 1 << 30
	})
	ctx := ctxT(t)
	l := c.leader()
	lagging := c.followers()[0]
	cfg := c.stop(lagging.srv.ID())
	if _, err := l.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/snap"}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := l.tree.Create(ctx, &colonyv1.CreateRequest{Path: fmt.Sprintf("/snap/k%02d", i), Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.srv.raft.Snapshot().Error(); err != nil {
		t.Fatalf("leader snapshot: %v", err)
	}
	last, err := l.tree.Set(ctx, &colonyv1.SetRequest{Path: "/snap", Data: []byte("after")})
	if err != nil {
		t.Fatal(err)
	}
	n := c.start(cfg)
	got, err := n.tree.Get(ctx, &colonyv1.GetRequest{Path: "/snap", Consistency: colonyv1.Consistency_CONSISTENCY_SESSION, MinZxid: last.Header.Zxid})
	if err != nil {
		t.Fatalf("session read on the restarted follower: %v", err)
	}
	kids, err := n.tree.Children(ctx, &colonyv1.ChildrenRequest{Path: "/snap", Consistency: colonyv1.Consistency_CONSISTENCY_SESSION, MinZxid: last.Header.Zxid})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != "after" || len(kids.Names) != 40 {
		t.Errorf("follower after InstallSnapshot: data %q, %d children; want \"after\", 40", got.Data, len(kids.Names))
	}
	// A watch resuming from before the snapshot cannot be served without a
	// gap on this node: it must say so.
	stream, err := n.wch.Watch(ctx, &colonyv1.WatchRequest{Path: "/snap", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, AfterZxid: proto.Uint64(1)})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil || !msg.Resync {
		t.Errorf("watch from zxid 1 after a snapshot install: %v %v, want a resync", msg, err)
	}
}

// TestClusterLargeWritesThroughFollowerAtOnce: several writes of the largest
// value a znode may hold, sent at the same time through a follower, are all
// applied. The follower used to forward them to the leader in one
// ProposeBatch bounded by count only, over the peer message limit, and every
// one of them failed.
func TestClusterLargeWritesThroughFollowerAtOnce(t *testing.T) {
	c := newTestCluster(t, 3)
	// What this test guards against fails at once (a forwarded batch over
	// the message limit is refused); 6 MiB through a follower and raft under
	// -race on a loaded 2-core machine once took longer than ctxT's 15 s.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := c.followers()[0]
	max := DefaultConfig().MaxDataBytes
	if max == 0 {
		max = 1 << 20
	}
	const writers = 6
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{byte('a' + i)}, max)
			_, errs[i] = f.tree.Create(ctx, &colonyv1.CreateRequest{Path: fmt.Sprintf("/big-%d", i), Data: data})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("create /big-%d of %d bytes through a follower: %v", i, max, err)
		}
	}
	for i := range writers {
		got, err := c.leader().tree.Get(ctx, &colonyv1.GetRequest{Path: fmt.Sprintf("/big-%d", i)})
		if errs[i] == nil && (err != nil || len(got.Data) != max) {
			t.Errorf("read /big-%d: %v", i, err)
		}
	}
}
