package coordinator

import (
	"context"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/api"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// asClient makes ctx's calls carry a client id, as the Go client does.
func asClient(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, api.ClientIDMetadata, id)
}

// exists reports whether path exists, read linearizably through n.
func exists(t *testing.T, ctx context.Context, n *testNode, path string) bool {
	t.Helper()
	ex, err := n.tree.Exists(ctx, &colonyv1.ExistsRequest{Path: path})
	if err != nil {
		t.Fatalf("exists %s: %v", path, err)
	}
	return ex.Exists
}

// TestClusterRequestIDScope: request ids are scoped by client, a reused id
// with a different request is refused, and the leader's session tracker
// follows the applied state (issue 13, items 1 and 2). Writes go through a
// follower, so the client id also travels with forwarded commands.
func TestClusterRequestIDScope(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	f := c.followers()[0]
	if _, err := f.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/scope"}); err != nil {
		t.Fatal(err)
	}

	t.Run("two clients with the same request id both get their writes applied", func(t *testing.T) {
		clients := map[string]context.Context{"A": asClient(ctx, "client-A"), "B": asClient(ctx, "client-B"), "anon": ctx}
		for name, cctx := range clients {
			p := "/scope/" + name
			if _, err := f.tree.Create(cctx, &colonyv1.CreateRequest{Path: p, Data: []byte("v0"), RequestId: "same-create"}); err != nil {
				t.Fatalf("%s create: %v", name, err)
			}
			if _, err := f.tree.Set(cctx, &colonyv1.SetRequest{Path: p, Data: []byte("v1-" + name), RequestId: "same-set"}); err != nil {
				t.Fatalf("%s set: %v", name, err)
			}
			m, err := f.tree.Multi(cctx, &colonyv1.MultiRequest{RequestId: "same-multi", Ops: []*colonyv1.Op{
				{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: p + "-multi"}}},
			}})
			if err != nil || !m.Succeeded {
				t.Fatalf("%s multi: %v %v", name, m, err)
			}
		}
		for name := range clients {
			p := "/scope/" + name
			got, err := f.tree.Get(ctx, &colonyv1.GetRequest{Path: p})
			if err != nil || string(got.Data) != "v1-"+name {
				t.Errorf("%s: %q %v, want its own set applied", p, got.GetData(), err)
			}
			if !exists(t, ctx, f, p+"-multi") {
				t.Errorf("%s-multi: missing, want its own multi applied", p)
			}
		}
		for name, cctx := range clients {
			if _, err := f.tree.Delete(cctx, &colonyv1.DeleteRequest{Path: "/scope/" + name, RequestId: "same-delete"}); err != nil {
				t.Fatalf("%s delete: %v", name, err)
			}
		}
		for name := range clients {
			if exists(t, ctx, f, "/scope/"+name) {
				t.Errorf("/scope/%s still exists, want its own delete applied", name)
			}
		}
		seen := map[uint64]string{}
		for name, cctx := range clients {
			o, err := f.sess.Open(cctx, &colonyv1.OpenSessionRequest{TtlMs: 5000, RequestId: "same-open"})
			if err != nil || o.SessionId == 0 || seen[o.SessionId] != "" {
				t.Fatalf("%s open: %v %v (sessions so far %v), want a session of its own", name, o, err, seen)
			}
			seen[o.SessionId] = name
			if _, err := f.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: o.SessionId}); err != nil {
				t.Errorf("%s keep-alive: %v", name, err)
			}
		}
	})

	t.Run("same client, same id, different request: InvalidArgument, nothing applied", func(t *testing.T) {
		a := asClient(ctx, "client-A")
		first, err := f.tree.Create(a, &colonyv1.CreateRequest{Path: "/scope/x", Data: []byte("first"), RequestId: "reused"})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []*testNode{f, c.leader()} {
			_, err := n.tree.Set(a, &colonyv1.SetRequest{Path: "/scope/x", Data: []byte("second"), RequestId: "reused"})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "request_id") || !strings.Contains(err.Error(), "different request") {
				t.Errorf("set reusing the id through %s: %v, want InvalidArgument naming request_id", n.srv.ID(), err)
			}
			_, err = n.sess.Open(a, &colonyv1.OpenSessionRequest{TtlMs: 5000, RequestId: "reused"})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("open reusing the id through %s: %v, want InvalidArgument", n.srv.ID(), err)
			}
		}
		got, err := f.tree.Get(ctx, &colonyv1.GetRequest{Path: "/scope/x"})
		if err != nil || string(got.Data) != "first" || got.Stat.Version != 0 {
			t.Errorf("/scope/x: %q version %d %v, want it untouched", got.GetData(), got.GetStat().GetVersion(), err)
		}
		// The genuine retry still gets the first answer.
		again, err := c.leader().tree.Create(a, &colonyv1.CreateRequest{Path: "/scope/x", Data: []byte("first"), RequestId: "reused"})
		if err != nil || again.Path != first.Path || again.Stat.Czxid != first.Stat.Czxid {
			t.Errorf("retry: %v %v, want the first result %v", again, err, first)
		}
	})

	t.Run("a malformed client id is InvalidArgument naming the metadata", func(t *testing.T) {
		for _, id := range []string{strings.Repeat("x", 65), "has space", "slash/no"} {
			_, err := f.tree.Create(asClient(ctx, id), &colonyv1.CreateRequest{Path: "/scope/bad"})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), api.ClientIDMetadata) || !strings.Contains(err.Error(), "64") {
				t.Errorf("client id %q: %v, want InvalidArgument naming %s and its limit", id, err, api.ClientIDMetadata)
			}
		}
		if exists(t, ctx, f, "/scope/bad") {
			t.Error("/scope/bad created")
		}
	})

	t.Run("a close answered from the dedup table leaves the session alive", func(t *testing.T) {
		a := asClient(ctx, "client-G")
		o, err := f.sess.Open(a, &colonyv1.OpenSessionRequest{TtlMs: 5000})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.tree.Create(a, &colonyv1.CreateRequest{Path: "/scope/lock", Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL, SessionId: o.SessionId}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.tree.Create(a, &colonyv1.CreateRequest{Path: "/scope/g", RequestId: "g-1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.sess.Close(a, &colonyv1.CloseSessionRequest{SessionId: o.SessionId, RequestId: "g-1"}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("close reusing a request id: %v, want InvalidArgument", err)
		}
		// Not a ghost: its owner keeps it alive, its lock is still there.
		for _, n := range []*testNode{f, c.leader()} {
			if _, err := n.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: o.SessionId}); err != nil {
				t.Errorf("keep-alive through %s after the refused close: %v", n.srv.ID(), err)
			}
		}
		if !exists(t, ctx, f, "/scope/lock") {
			t.Error("ephemeral gone after a close that was not applied")
		}
		// A real close ends it; its retry answers from the table and changes nothing.
		req := &colonyv1.CloseSessionRequest{SessionId: o.SessionId, RequestId: "g-2"}
		for i := range 2 {
			if _, err := f.sess.Close(a, req); err != nil {
				t.Fatalf("close attempt %d: %v", i, err)
			}
		}
		if exists(t, ctx, f, "/scope/lock") {
			t.Error("ephemeral still there after the session was closed")
		}
		if _, err := f.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: o.SessionId}); status.Code(err) != codes.NotFound {
			t.Errorf("keep-alive after close: %v, want NotFound", err)
		}
		// A close of a session that does not exist, with a fresh id: NotFound.
		if _, err := f.sess.Close(a, &colonyv1.CloseSessionRequest{SessionId: o.SessionId}); status.Code(err) != codes.NotFound {
			t.Errorf("second close with a new request id: %v, want NotFound", err)
		}
	})

	t.Run("an open retried after its session closed is NotFound", func(t *testing.T) {
		a := asClient(ctx, "client-R")
		req := &colonyv1.OpenSessionRequest{TtlMs: 5000, RequestId: "open-once"}
		o, err := f.sess.Open(a, req)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := c.leader().sess.Open(a, req); err != nil || again.SessionId != o.SessionId {
			t.Fatalf("retry while open: %v %v, want session %d", again, err, o.SessionId)
		}
		if _, err := f.sess.Close(a, &colonyv1.CloseSessionRequest{SessionId: o.SessionId}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*testNode{f, c.leader()} {
			if _, err := n.sess.Open(a, req); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "opened by this request has ended") {
				t.Errorf("retried open through %s after close: %v, want NotFound", n.srv.ID(), err)
			}
			if _, err := n.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: o.SessionId}); status.Code(err) != codes.NotFound {
				t.Errorf("keep-alive through %s of the closed session: %v, want NotFound", n.srv.ID(), err)
			}
		}
	})

	t.Run("a huge session TTL is clamped to the maximum", func(t *testing.T) {
		maxMs := f.cfg.MaxSessionTTL.Milliseconds()
		for _, ms := range []int64{9_223_372_036_855, 9_223_372_036_854_775, math.MaxInt64} {
			o, err := f.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: ms})
			if err != nil || o.TtlMs != maxMs {
				t.Errorf("ttl_ms %d: granted %v %v, want the maximum %d", ms, o.GetTtlMs(), err, maxMs)
				continue
			}
			ka, err := f.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: o.SessionId})
			if err != nil || ka.TtlMs != maxMs {
				t.Errorf("ttl_ms %d: keep-alive %v %v, want ttl %d", ms, ka, err, maxMs)
			}
		}
	})
}
