package client

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc's package-level background goroutine.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		// The coordinator's raft transport, in the end-to-end tests.
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

// testNode is a real gRPC server on 127.0.0.1 serving the colony.v1 services
// with scripted behaviour, for testing the client's failover without a
// coordinator.
type testNode struct {
	addr     string
	srv      *grpc.Server
	tree     *treeServer
	sessions *sessionsServer
	watch    *watchServer
}

func startNode(t *testing.T) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{
		addr:     lis.Addr().String(),
		srv:      grpc.NewServer(),
		tree:     &treeServer{},
		sessions: &sessionsServer{ttlMs: 300},
		watch:    &watchServer{},
	}
	colonyv1.RegisterTreeServer(n.srv, n.tree)
	colonyv1.RegisterSessionsServer(n.srv, n.sessions)
	colonyv1.RegisterWatchServer(n.srv, n.watch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = n.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		n.srv.Stop()
		<-done
	})
	return n
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func newTestClient(t *testing.T, cfg Config, addrs ...string) *Client {
	t.Helper()
	cfg.Endpoints = addrs
	if testing.Verbose() {
		cfg.Logger = slogForTest(t)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func header(z uint64) *colonyv1.ResponseHeader {
	return &colonyv1.ResponseHeader{Zxid: z, MemberId: "test"}
}

// treeServer answers Tree calls: with fail when set, after hanging until the
// call's deadline when hang is set, else with success at zxid.
type treeServer struct {
	colonyv1.UnimplementedTreeServer
	mu         sync.Mutex
	calls      int
	requestIDs []string
	reads      []*colonyv1.GetRequest
	fail       error
	hang       bool
	zxid       uint64
	multi      *colonyv1.MultiResponse
}

func (s *treeServer) set(fail error, hang bool, zxid uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.hang, s.zxid = fail, hang, zxid
}

func (s *treeServer) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *treeServer) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requestIDs...)
}

// begin records a call and returns how to answer it.
func (s *treeServer) begin(ctx context.Context, requestID string) (uint64, error) {
	s.mu.Lock()
	s.calls++
	if requestID != "" {
		s.requestIDs = append(s.requestIDs, requestID)
	}
	fail, hang, zxid := s.fail, s.hang, s.zxid
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return 0, status.FromContextError(ctx.Err()).Err()
	}
	return zxid, fail
}

func (s *treeServer) Create(ctx context.Context, req *colonyv1.CreateRequest) (*colonyv1.CreateResponse, error) {
	z, err := s.begin(ctx, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &colonyv1.CreateResponse{Header: header(z), Path: req.GetPath(), Stat: &colonyv1.Stat{Czxid: z, Mzxid: z}}, nil
}

func (s *treeServer) Set(ctx context.Context, req *colonyv1.SetRequest) (*colonyv1.SetResponse, error) {
	z, err := s.begin(ctx, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &colonyv1.SetResponse{Header: header(z), Stat: &colonyv1.Stat{Mzxid: z, Version: 1}}, nil
}

func (s *treeServer) Get(ctx context.Context, req *colonyv1.GetRequest) (*colonyv1.GetResponse, error) {
	s.mu.Lock()
	s.reads = append(s.reads, req)
	s.mu.Unlock()
	z, err := s.begin(ctx, "")
	if err != nil {
		return nil, err
	}
	return &colonyv1.GetResponse{Header: header(z), Data: []byte("v"), Stat: &colonyv1.Stat{Mzxid: z}}, nil
}

func (s *treeServer) Multi(ctx context.Context, req *colonyv1.MultiRequest) (*colonyv1.MultiResponse, error) {
	if _, err := s.begin(ctx, req.GetRequestId()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.multi, nil
}

// sessionsServer grants sessions (id 42) and acknowledges keep-alives, unless
// told to fail streams, to forget the session, or to stop answering.
type sessionsServer struct {
	colonyv1.UnimplementedSessionsServer
	ttlMs      int64
	failStream atomic.Bool // KeepAliveStream fails with Unavailable
	expired    atomic.Bool // the session is gone: NotFound
	silent     atomic.Bool // keep-alives are received but not answered
	keepAlives atomic.Int64
	closes     atomic.Int64
}

const testSessionID = 42

func (s *sessionsServer) Open(_ context.Context, req *colonyv1.OpenSessionRequest) (*colonyv1.OpenSessionResponse, error) {
	return &colonyv1.OpenSessionResponse{Header: header(1), SessionId: testSessionID, TtlMs: s.ttlMs}, nil
}

func (s *sessionsServer) KeepAliveStream(stream colonyv1.Sessions_KeepAliveStreamServer) error {
	if s.failStream.Load() {
		return status.Error(codes.Unavailable, "no leader")
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		s.keepAlives.Add(1)
		switch {
		case s.expired.Load():
			return status.Errorf(codes.NotFound, "keep-alive: session %#x not found or expired", req.GetSessionId())
		case s.silent.Load():
			continue
		}
		if err := stream.Send(&colonyv1.KeepAliveResponse{Header: header(2), SessionId: req.GetSessionId(), TtlMs: s.ttlMs}); err != nil {
			return err
		}
	}
}

func (s *sessionsServer) Close(_ context.Context, req *colonyv1.CloseSessionRequest) (*colonyv1.CloseSessionResponse, error) {
	s.closes.Add(1)
	if s.expired.Load() {
		return nil, status.Errorf(codes.NotFound, "session %#x not found or expired", req.GetSessionId())
	}
	return &colonyv1.CloseSessionResponse{Header: header(3)}, nil
}

// watchServer runs handle for every Watch call and records the requests.
type watchServer struct {
	colonyv1.UnimplementedWatchServer
	mu     sync.Mutex
	reqs   []*colonyv1.WatchRequest
	handle func(*colonyv1.WatchRequest, colonyv1.Watch_WatchServer) error
}

func (s *watchServer) setHandler(h func(*colonyv1.WatchRequest, colonyv1.Watch_WatchServer) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handle = h
}

func (s *watchServer) requests() []*colonyv1.WatchRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*colonyv1.WatchRequest(nil), s.reqs...)
}

func (s *watchServer) Watch(req *colonyv1.WatchRequest, stream colonyv1.Watch_WatchServer) error {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	h := s.handle
	s.mu.Unlock()
	if h == nil {
		return status.Error(codes.Unavailable, "not serving watches")
	}
	return h(req, stream)
}

// created is a watch's first message.
func created(start uint64) *colonyv1.WatchResponse {
	return &colonyv1.WatchResponse{Header: header(start), Created: true, StartZxid: start}
}

// events is a watch message with one DATA_CHANGED event per zxid.
func events(path string, zxids ...uint64) *colonyv1.WatchResponse {
	m := &colonyv1.WatchResponse{Header: header(zxids[len(zxids)-1])}
	for _, z := range zxids {
		m.Events = append(m.Events, &colonyv1.Event{Type: colonyv1.EventType_EVENT_TYPE_DATA_CHANGED, Path: path, Zxid: z})
	}
	return m
}
