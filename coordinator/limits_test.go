package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestWatchAndSessionLimits: one client cannot open more watches than the
// per-connection limit, nor the cluster more sessions than its limit; the
// refusal names the limit, and other clients are still served.
func TestWatchAndSessionLimits(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.MaxWatchesPerConn, cfg.MaxSessionsPerConn, cfg.MaxSessions = 3, 2, 4 })
	n := c.leader()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()

	var streams []colonyv1.Watch_WatchClient
	for i := range 3 {
		s, err := n.wch.Watch(ctx, &colonyv1.WatchRequest{Path: "/", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, Recursive: true})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := s.Recv(); err != nil || !r.Created {
			t.Fatalf("watch %d: %v %v", i, r, err)
		}
		streams = append(streams, s)
	}
	s, err := n.wch.Watch(ctx, &colonyv1.WatchRequest{Path: "/", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "MaxWatchesPerConn") {
		t.Fatalf("fourth watch on one connection: %v, want ResourceExhausted naming MaxWatchesPerConn", err)
	}
	// Another connection is served.
	other, err := grpc.NewClient(n.srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	s, err = colonyv1.NewWatchClient(other).Watch(ctx, &colonyv1.WatchRequest{Path: "/", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || !r.Created {
		t.Fatalf("a watch on another connection: %v %v", r, err)
	}

	// Sessions: one connection hits its own ceiling first, and closing one
	// of its sessions frees a slot.
	var ids []uint64
	for i := range 2 {
		o, err := n.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 10000})
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		ids = append(ids, o.SessionId)
	}
	_, err = n.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 10000})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "MaxSessionsPerConn") {
		t.Fatalf("third session on one connection: %v, want ResourceExhausted naming MaxSessionsPerConn", err)
	}
	if _, err := n.sess.Close(ctx, &colonyv1.CloseSessionRequest{SessionId: ids[0]}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 10000}); err != nil {
		t.Fatalf("a session after closing one: %v", err)
	}
	// Other connections are served up to the cluster's ceiling.
	otherSess := colonyv1.NewSessionsClient(other)
	for i := range 2 {
		if _, err := otherSess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 10000}); err != nil {
			t.Fatalf("session %d on another connection: %v", i, err)
		}
	}
	third, err := grpc.NewClient(n.srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	_, err = colonyv1.NewSessionsClient(third).Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 10000})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "MaxSessions)") {
		t.Fatalf("fifth session in the cluster: %v, want ResourceExhausted naming MaxSessions", err)
	}
	// A connection's count goes when the connection does (its sessions stay:
	// they are the cluster's), so the bookkeeping does not grow with every
	// client port ever seen.
	countedConns := func() int { return n.srv.api.SessionConns() }
	if got := countedConns(); got != 2 {
		t.Fatalf("connections counted: %d, want 2", got)
	}
	other.Close()
	waitFor(t, func() bool { return countedConns() == 1 })
	_ = streams
}

// waitFor waits until cond holds, failing the test after 5s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
