package sidecar_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func dialSidecar(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestSidecarLocks: apps on two instances take the same lock through their
// sidecars. A Hold stream holds it (with a fencing token) until the app
// closes the stream; an Acquire lease holds it until Release, or until the
// app stops keeping it alive; tokens increase from holder to holder.
func TestSidecarLocks(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	a := startSidecar(t, srv.Addr(), "billing", "b1", 9301)
	b := startSidecar(t, srv.Addr(), "billing", "b2", 9302)
	la := colonyv1.NewLocksClient(dialSidecar(t, a.Addr()))
	lb := colonyv1.NewLocksClient(dialSidecar(t, b.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// b1 holds through a stream.
	hctx, release := context.WithCancel(ctx)
	hold, err := la.Hold(hctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Send(&colonyv1.HoldRequest{Name: "nightly", TtlMs: 2000}); err != nil {
		t.Fatal(err)
	}
	first, err := hold.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.Token == 0 || first.Path == "" {
		t.Fatalf("hold granted %+v, want a token and a path", first)
	}

	// b2 cannot take it now, and waits for it.
	if _, err := lb.Acquire(ctx, &colonyv1.AcquireRequest{Name: "nightly", Try: true}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("try while held: %v, want FailedPrecondition", err)
	}
	got := make(chan *colonyv1.AcquireResponse, 1)
	go func() {
		r, err := lb.Acquire(ctx, &colonyv1.AcquireRequest{Name: "nightly", TtlMs: 1000})
		if err != nil {
			t.Errorf("acquire: %v", err)
		}
		got <- r
	}()
	select {
	case r := <-got:
		t.Fatalf("acquired while held: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	release() // the app closes its stream
	r := <-got
	if r == nil {
		t.FailNow()
	}
	if r.Token <= first.Token {
		t.Fatalf("token %d after %d: tokens must increase from holder to holder", r.Token, first.Token)
	}
	if _, err := lb.KeepAlive(ctx, &colonyv1.LeaseRequest{LeaseId: r.LeaseId}); err != nil {
		t.Fatal(err)
	}
	// The app stops keeping its lease alive: the sidecar releases it after
	// its TTL, and b1 can take the lock.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := la.Acquire(ctx, &colonyv1.AcquireRequest{Name: "nightly", Try: true})
		if err == nil {
			if resp.Token <= r.Token {
				t.Fatalf("token %d after %d", resp.Token, r.Token)
			}
			if _, err := la.Release(ctx, &colonyv1.LeaseRequest{LeaseId: resp.LeaseId}); err != nil {
				t.Fatal(err)
			}
			break
		}
		if status.Code(err) != codes.FailedPrecondition || time.Now().After(deadline) {
			t.Fatalf("after the lease's TTL: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := lb.KeepAlive(ctx, &colonyv1.LeaseRequest{LeaseId: r.LeaseId}); status.Code(err) != codes.NotFound {
		t.Fatalf("keep-alive of an expired lease: %v, want NotFound", err)
	}
	if _, err := la.Acquire(ctx, &colonyv1.AcquireRequest{Name: "bad/name"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad name: %v, want InvalidArgument", err)
	}
}

// TestSidecarElections: two instances campaign; the first leads, observers
// see it, and when its stream ends the second leads with a greater token.
func TestSidecarElections(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	a := startSidecar(t, srv.Addr(), "sched", "s1", 9401)
	b := startSidecar(t, srv.Addr(), "sched", "s2", 9402)
	ea := colonyv1.NewElectionsClient(dialSidecar(t, a.Addr()))
	eb := colonyv1.NewElectionsClient(dialSidecar(t, b.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	obs, err := eb.Observe(ctx, &colonyv1.ObserveRequest{Name: "scheduler"})
	if err != nil {
		t.Fatal(err)
	}
	actx, resignA := context.WithCancel(ctx)
	campA, err := ea.Campaign(actx, &colonyv1.CampaignRequest{Name: "scheduler", Value: []byte("s1"), TtlMs: 2000})
	if err != nil {
		t.Fatal(err)
	}
	leadA, err := campA.Recv()
	if err != nil {
		t.Fatal(err)
	}
	campB, err := eb.Campaign(ctx, &colonyv1.CampaignRequest{Name: "scheduler", Value: []byte("s2"), TtlMs: 2000})
	if err != nil {
		t.Fatal(err)
	}
	waitLeader := func(want string) *colonyv1.LeaderInfo {
		t.Helper()
		for {
			li, err := obs.Recv()
			if err != nil {
				t.Fatalf("observe: %v", err)
			}
			if li.Present && string(li.Value) == want {
				return li
			}
		}
	}
	if li := waitLeader("s1"); li.Token != leadA.Token {
		t.Fatalf("observed token %d, the leader's is %d", li.Token, leadA.Token)
	}
	resignA()
	leadB, err := campB.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if leadB.Token <= leadA.Token {
		t.Fatalf("token %d after %d", leadB.Token, leadA.Token)
	}
	waitLeader("s2")
}

// TestCloseEndsGrants: closing a sidecar while an app holds a lock through a
// Hold stream and another through an Acquire lease ends both streams and
// leases (Close waits for the goroutines that serve them) and releases the
// locks, so another instance takes them at once.
func TestCloseEndsGrants(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	a := startSidecar(t, srv.Addr(), "billing", "b1", 9311)
	b := startSidecar(t, srv.Addr(), "billing", "b2", 9312)
	la := colonyv1.NewLocksClient(dialSidecar(t, a.Addr()))
	lb := colonyv1.NewLocksClient(dialSidecar(t, b.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	hold, err := la.Hold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Send(&colonyv1.HoldRequest{Name: "held", TtlMs: 30000}); err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := la.Acquire(ctx, &colonyv1.AcquireRequest{Name: "leased", TtlMs: 30000}); err != nil {
		t.Fatal(err)
	}

	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return while an app held a lock")
	}
	if _, err := hold.Recv(); err == nil {
		t.Fatal("the Hold stream is still open after Close")
	}
	for _, name := range []string{"held", "leased"} {
		resp, err := lb.Acquire(ctx, &colonyv1.AcquireRequest{Name: name, Try: true})
		if err != nil {
			t.Fatalf("%s after the holder's sidecar closed: %v, want it free", name, err)
		}
		if _, err := lb.Release(ctx, &colonyv1.LeaseRequest{LeaseId: resp.LeaseId}); err != nil {
			t.Fatal(err)
		}
	}
}
