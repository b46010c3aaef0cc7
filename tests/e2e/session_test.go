//go:build unix

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// sessionTTL is the TTL the session tests ask for: the server's default
// minimum.
const sessionTTL = 2 * time.Second

// keepAliver sends keep-alives for one session on a KeepAliveStream to one
// node, one at a time, and records when the last acknowledged one was sent.
// When a stream breaks it opens another to the same node.
type keepAliver struct {
	id   uint64
	node *Node

	mu       sync.Mutex
	lastSent time.Time // send time of the last acknowledged keep-alive
	acks     int
	breaks   int
	err      error // why it gave up: the session is gone, or the test ended

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

func startKeepAlive(t *testing.T, ctx context.Context, node *Node, id uint64, every time.Duration) *keepAliver {
	k := &keepAliver{id: id, node: node, stop: make(chan struct{}), done: make(chan struct{})}
	go k.run(ctx, every)
	t.Cleanup(k.Stop)
	return k
}

func (k *keepAliver) state() (lastSent time.Time, acks, breaks int, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastSent, k.acks, k.breaks, k.err
}

// Stop stops sending (idempotent) and waits until the stream is closed.
func (k *keepAliver) Stop() {
	k.stopOnce.Do(func() { close(k.stop) })
	<-k.done
}

func (k *keepAliver) run(ctx context.Context, every time.Duration) {
	defer close(k.done)
	fail := func(err error) {
		k.mu.Lock()
		k.err = err
		k.mu.Unlock()
	}
	for {
		sctx, cancel := context.WithCancel(ctx)
		stream, err := k.node.Sessions().KeepAliveStream(sctx)
		if err == nil {
			err = k.sendLoop(stream, every)
		}
		cancel()
		if err == nil {
			return // stopped
		}
		if status.Code(err) == codes.NotFound || ctx.Err() != nil {
			fail(err)
			return
		}
		k.mu.Lock()
		k.breaks++
		k.mu.Unlock()
		select {
		case <-k.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sendLoop sends a keep-alive every interval and waits for its answer. It
// returns nil once stopped and the server has closed the stream.
func (k *keepAliver) sendLoop(stream colonyv1.Sessions_KeepAliveStreamClient, every time.Duration) error {
	for {
		sent := time.Now()
		if err := stream.Send(&colonyv1.KeepAliveRequest{SessionId: k.id}); err != nil {
			_, err = stream.Recv() // the stream's real error
			return err
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if resp.SessionId != k.id || resp.TtlMs <= 0 {
			return fmt.Errorf("keep-alive answered %v", resp)
		}
		k.mu.Lock()
		k.lastSent = sent
		k.acks++
		k.mu.Unlock()
		select {
		case <-k.stop:
			if err := stream.CloseSend(); err != nil {
				return err
			}
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				return fmt.Errorf("keep-alive stream did not end cleanly: %w", err)
			}
			return nil
		case <-time.After(time.Until(sent.Add(every))):
		}
	}
}

// TestSessionExpiryAfterKeepAlivesStop: an ephemeral node lives while its
// session is kept alive through a follower, is not deleted before the TTL
// has passed since the last acknowledged keep-alive was sent, and is deleted
// soon after. A session kept alive across a leader change survives it.
func TestSessionExpiryAfterKeepAlivesStop(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 120*time.Second)

	// exists reads path linearizably through node; it also returns when the
	// read completed.
	exists := func(t *testing.T, node *Node, path string) (bool, time.Time) {
		t.Helper()
		r := mustRetry(t, ctx, "exists "+path+" through "+node.ID, func(ctx context.Context) (*colonyv1.ExistsResponse, error) {
			return node.Tree().Exists(ctx, &colonyv1.ExistsRequest{Path: path})
		})
		return r.Exists, time.Now()
	}
	// openWithEphemeral opens a session through node and creates an
	// ephemeral node it owns.
	openWithEphemeral := func(t *testing.T, node *Node, path string) (id uint64, ttl time.Duration) {
		t.Helper()
		open := mustRetry(t, ctx, "open session through "+node.ID, func(ctx context.Context) (*colonyv1.OpenSessionResponse, error) {
			return node.Sessions().Open(ctx, &colonyv1.OpenSessionRequest{
				TtlMs: sessionTTL.Milliseconds(), Name: "e2e/" + t.Name(), RequestId: "open-" + path,
			})
		})
		mustRetry(t, ctx, "create "+path, func(ctx context.Context) (*colonyv1.CreateResponse, error) {
			return node.Tree().Create(ctx, &colonyv1.CreateRequest{
				Path: path, Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL, SessionId: open.SessionId, RequestId: "create-" + path,
			})
		})
		return open.SessionId, time.Duration(open.TtlMs) * time.Millisecond
	}

	t.Run("expires TTL after the last keep-alive", func(t *testing.T) {
		leader := c.WaitLeader(t, ctx)
		f := c.Others(leader)[0]
		id, ttl := openWithEphemeral(t, f, "/eph-expiry")
		t.Logf("session %#x with TTL %v through follower %s (leader %s)", id, ttl, f.ID, leader.ID)

		ka := startKeepAlive(t, ctx, f, id, ttl/4)
		keepUntil := time.Now().Add(3 * ttl)
		for time.Now().Before(keepUntil) {
			if ok, _ := exists(t, f, "/eph-expiry"); !ok {
				_, acks, breaks, err := ka.state()
				t.Fatalf("ephemeral node deleted while its session was kept alive (%d keep-alives acknowledged, %d broken streams, err %v)", acks, breaks, err)
			}
			time.Sleep(ttl / 4)
		}
		ka.Stop()
		lastSent, acks, breaks, err := ka.state()
		if err != nil || acks < 3 {
			t.Fatalf("keep-alives: %d acknowledged, %d broken streams, err %v", acks, breaks, err)
		}
		notBefore := lastSent.Add(ttl)
		deadline := notBefore.Add(5 * time.Second) // generous: expiry is committed through raft
		t.Logf("%d keep-alives acknowledged; the last was sent at %s, so the session may expire from %s",
			acks, lastSent.Format("15:04:05.000"), notBefore.Format("15:04:05.000"))

		for {
			readStart := time.Now()
			ok, readEnd := exists(t, f, "/eph-expiry")
			if !ok {
				// The delete was committed before the read completed.
				if readEnd.Before(notBefore) {
					t.Fatalf("ephemeral node deleted %v after the last acknowledged keep-alive was sent, before the TTL of %v",
						readEnd.Sub(lastSent), ttl)
				}
				t.Logf("ephemeral node gone %v after the last acknowledged keep-alive was sent (TTL %v)",
					readEnd.Sub(lastSent).Round(time.Millisecond), ttl)
				break
			}
			if readStart.After(deadline) {
				t.Fatalf("ephemeral node still exists %v after the last acknowledged keep-alive was sent (TTL %v)",
					readStart.Sub(lastSent).Round(time.Millisecond), ttl)
			}
			time.Sleep(50 * time.Millisecond)
		}

		// The session is gone everywhere: keep-alives and ephemerals are refused.
		_, _, err = retry(ctx, func(ctx context.Context) (*colonyv1.KeepAliveResponse, error) {
			return f.Sessions().KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: id})
		})
		if status.Code(err) != codes.NotFound {
			t.Errorf("keep-alive of the expired session: %v, want NotFound", err)
		}
		_, _, err = retry(ctx, func(ctx context.Context) (*colonyv1.CreateResponse, error) {
			return f.Tree().Create(ctx, &colonyv1.CreateRequest{Path: "/eph-late", Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL, SessionId: id})
		})
		if status.Code(err) != codes.NotFound {
			t.Errorf("ephemeral create for the expired session: %v, want NotFound", err)
		}
	})

	t.Run("survives a leader change", func(t *testing.T) {
		leader := c.WaitLeader(t, ctx)
		f := c.Others(leader)[0] // keep-alives go here; it is not killed
		id, ttl := openWithEphemeral(t, f, "/eph-failover")
		t.Logf("session %#x with TTL %v through follower %s (leader %s)", id, ttl, f.ID, leader.ID)
		ka := startKeepAlive(t, ctx, f, id, ttl/4)
		time.Sleep(ttl)

		killedAt := time.Now()
		leader.Kill(t)
		newLeader := c.WaitLeader(t, ctx)
		t.Logf("new leader %s after %v", newLeader.ID, time.Since(killedAt).Round(time.Millisecond))

		until := time.Now().Add(3 * ttl)
		for time.Now().Before(until) {
			if ok, _ := exists(t, f, "/eph-failover"); !ok {
				_, acks, breaks, err := ka.state()
				t.Fatalf("ephemeral node deleted after the leader change although keep-alives continued (%d acknowledged, %d broken streams, err %v)", acks, breaks, err)
			}
			if _, _, _, err := ka.state(); err != nil {
				t.Fatalf("keep-alives failed: %v", err)
			}
			time.Sleep(ttl / 4)
		}
		lastSent, acks, breaks, err := ka.state()
		if err != nil || !lastSent.After(killedAt) {
			t.Fatalf("keep-alives after the leader change: last acknowledged one sent at %v (kill at %v), %d acknowledged, %d broken streams, err %v",
				lastSent, killedAt, acks, breaks, err)
		}
		for _, node := range c.Running() {
			if ok, _ := exists(t, node, "/eph-failover"); !ok {
				t.Errorf("ephemeral node missing on %s after the leader change", node.ID)
			}
		}
		t.Logf("session kept alive across the leader change: %d keep-alives acknowledged, %d broken streams", acks, breaks)
		ka.Stop()

		// Closing the session deletes its ephemeral node at once.
		mustRetry(t, ctx, "close session", func(ctx context.Context) (*colonyv1.CloseSessionResponse, error) {
			return f.Sessions().Close(ctx, &colonyv1.CloseSessionRequest{SessionId: id, RequestId: "close-failover"})
		})
		for _, node := range c.Running() {
			if ok, _ := exists(t, node, "/eph-failover"); ok {
				t.Errorf("ephemeral node still on %s after its session was closed", node.ID)
			}
		}
	})
}
