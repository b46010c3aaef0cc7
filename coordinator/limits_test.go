package coordinator

import (
	"context"
	"strings"
	"testing"

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
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.MaxWatchesPerConn, cfg.MaxSessions = 3, 4 })
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

	for i := range 4 {
		if _, err := n.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 10000}); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	_, err = n.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 10000})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "MaxSessions") {
		t.Fatalf("fifth session: %v, want ResourceExhausted naming MaxSessions", err)
	}
	_ = streams
}
