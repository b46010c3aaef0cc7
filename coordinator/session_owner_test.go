package coordinator

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/errinfo"
	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// secureClient is one identity's connection to one node.
type secureClient struct {
	tree colonyv1.TreeClient
	sess colonyv1.SessionsClient
	clu  colonyv1.ClusterClient
}

// dial connects to srv with a certificate of role/name; the connection is
// closed when the test ends.
func (p *testPKI) dial(srv *Server, role trust.Role, name string) *secureClient {
	p.t.Helper()
	m := p.material(role, name)
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(m.ClientConfig("", "h2"))))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { conn.Close() })
	return &secureClient{tree: colonyv1.NewTreeClient(conn), sess: colonyv1.NewSessionsClient(conn), clu: colonyv1.NewClusterClient(conn)}
}

// newOwnerCluster starts n nodes with TLS on (n1 bootstraps, the others
// join through it) and returns the leader and the followers once the
// leader has n registered voters. The nodes close when the test ends.
func newOwnerCluster(t *testing.T, pki *testPKI, n int) (leader *Server, followers []*Server) {
	t.Helper()
	var srvs []*Server
	t.Cleanup(func() {
		for _, s := range srvs {
			if err := s.Close(); err != nil {
				t.Errorf("closing %s: %v", s.ID(), err)
			}
		}
	})
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		cfg := testConfig(t, id, t.TempDir())
		cfg.TLS = pki.material(trust.RoleNode, id)
		if i == 1 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{srvs[0].Addr()}
		}
		srv, err := New(cfg)
		if err != nil {
			t.Fatalf("starting %s: %v", id, err)
		}
		srvs = append(srvs, srv)
	}
	admin := pki.dial(srvs[0], trust.RoleAdmin, "ops")
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := admin.clu.Status(ctxT(t), &colonyv1.StatusRequest{})
		voters := 0
		for _, m := range st.GetMembers() {
			if m.Suffrage == colonyv1.Suffrage_SUFFRAGE_VOTER && m.GrpcAddress != "" {
				voters++
			}
		}
		if err == nil && voters == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not reach %d registered voters: %v %v", n, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, s := range srvs {
		if lt := s.currentLeaderTerm(); lt != nil {
			<-lt.ready
			leader = s
		} else {
			followers = append(followers, s)
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	return leader, followers
}

// TestSessionOwnerSecureCluster: on a secure cluster a session belongs to
// the identity that opened it. Another identity cannot close it, keep it
// alive or create ephemeral nodes in it (PermissionDenied, reason
// SESSION_NOT_OWNED, nothing written, the owner's ephemerals still there),
// whichever node each of them talks to; the owner can. Two sidecars
// sharing the lock space are the case that matters: the lock nodes are
// ephemerals of their owners' sessions.
func TestSessionOwnerSecureCluster(t *testing.T) {
	pki := newTestPKI(t)
	leader, followers := newOwnerCluster(t, pki, 3)
	ctx := ctxT(t)
	admin := pki.dial(leader, trust.RoleAdmin, "ops")
	a := pki.dial(followers[0], trust.RoleSidecar, "svc-a")
	b := pki.dial(followers[1], trust.RoleSidecar, "svc-b")
	bOnLeader := pki.dial(leader, trust.RoleSidecar, "svc-b")

	for _, p := range []string{"/colony", "/colony/locks"} {
		if _, err := admin.tree.Create(ctx, &colonyv1.CreateRequest{Path: p}); err != nil && status.Code(err) != codes.AlreadyExists {
			t.Fatalf("create %s: %v", p, err)
		}
	}
	ephemeral := func(path string, session uint64) *colonyv1.CreateRequest {
		return &colonyv1.CreateRequest{Path: path, Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL, SessionId: session}
	}
	open, err := a.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 60_000, Name: "svc-a"})
	if err != nil {
		t.Fatal(err)
	}
	sid := open.SessionId
	var zxid uint64
	for _, p := range []string{"/colony/locks/a1", "/colony/locks/a2"} {
		resp, err := a.tree.Create(ctx, ephemeral(p, sid))
		if err != nil {
			t.Fatalf("svc-a creates %s: %v", p, err)
		}
		zxid = resp.Header.GetZxid()
	}
	// Every node has applied the session: the keep-alive check reads the
	// node's own view (the FSM's checks do not need this).
	for _, s := range append(followers, leader) {
		if err := s.fsm.waitApplied(ctx, zxid); err != nil {
			t.Fatal(err)
		}
	}

	denied := func(t *testing.T, err error) {
		t.Helper()
		st := status.Convert(err)
		if st.Code() != codes.PermissionDenied || errinfo.Reason(st) != contract.ReasonSessionNotOwned {
			t.Fatalf("got %v (reason %q), want PermissionDenied %s", err, errinfo.Reason(st), contract.ReasonSessionNotOwned)
		}
	}
	deadline := func() time.Time {
		leader.sessions.mu.Lock()
		defer leader.sessions.mu.Unlock()
		d, ok := leader.sessions.deadlines[sid]
		if !ok {
			t.Fatal("the leader does not track the session")
		}
		return d
	}
	// exists reads path linearizably through the leader.
	exists := func(path string) bool {
		t.Helper()
		r, err := admin.tree.Exists(ctx, &colonyv1.ExistsRequest{Path: path, Consistency: colonyv1.Consistency_CONSISTENCY_LINEARIZABLE})
		if err != nil {
			t.Fatal(err)
		}
		return r.Exists
	}

	for _, c := range []struct {
		name string
		b    *secureClient
	}{{"through a follower", b}, {"through the leader", bOnLeader}} {
		t.Run("another identity "+c.name, func(t *testing.T) {
			t.Run("cannot close", func(t *testing.T) {
				_, err := c.b.sess.Close(ctx, &colonyv1.CloseSessionRequest{SessionId: sid})
				denied(t, err)
			})
			t.Run("cannot create an ephemeral", func(t *testing.T) {
				_, err := c.b.tree.Create(ctx, ephemeral("/colony/locks/b1", sid))
				denied(t, err)
			})
			t.Run("cannot create an ephemeral in a multi", func(t *testing.T) {
				resp, err := c.b.tree.Multi(ctx, &colonyv1.MultiRequest{Ops: []*colonyv1.Op{
					{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: "/colony/locks/bx"}}},
					{Op: &colonyv1.Op_Create{Create: ephemeral("/colony/locks/b2", sid)}},
				}})
				if err != nil {
					t.Fatal(err)
				}
				oe := resp.GetResults()[1].GetError()
				if resp.Succeeded || resp.FailedOp != 1 || codes.Code(oe.GetCode()) != codes.PermissionDenied || oe.GetReason() != contract.ReasonSessionNotOwned {
					t.Fatalf("multi %v, want op 1 PermissionDenied %s", resp, contract.ReasonSessionNotOwned)
				}
			})
			t.Run("cannot keep it alive", func(t *testing.T) {
				before := deadline()
				_, err := c.b.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: sid})
				denied(t, err)
				if deadline() != before {
					t.Error("the session was refreshed")
				}
			})
			t.Run("cannot keep it alive on a stream", func(t *testing.T) {
				before := deadline()
				stream, err := c.b.sess.KeepAliveStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := stream.Send(&colonyv1.KeepAliveRequest{SessionId: sid}); err != nil {
					t.Fatal(err)
				}
				_, err = stream.Recv()
				denied(t, err)
				if deadline() != before {
					t.Error("the session was refreshed")
				}
			})
			t.Run("nothing written", func(t *testing.T) {
				for _, p := range []string{"/colony/locks/b1", "/colony/locks/b2", "/colony/locks/bx"} {
					if exists(p) {
						t.Errorf("%s was written", p)
					}
				}
				for _, p := range []string{"/colony/locks/a1", "/colony/locks/a2"} {
					if !exists(p) {
						t.Errorf("svc-a's %s is gone", p)
					}
				}
			})
		})
	}

	t.Run("the owner can", func(t *testing.T) {
		before := deadline()
		if _, err := a.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: sid}); err != nil {
			t.Fatalf("keep-alive: %v", err)
		}
		if !deadline().After(before) {
			t.Error("the keep-alive did not refresh the session")
		}
		stream, err := a.sess.KeepAliveStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&colonyv1.KeepAliveRequest{SessionId: sid}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("keep-alive stream: %v", err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.tree.Create(ctx, ephemeral("/colony/locks/a3", sid)); err != nil {
			t.Fatalf("create: %v", err)
		}
		if _, err := a.sess.Close(ctx, &colonyv1.CloseSessionRequest{SessionId: sid}); err != nil {
			t.Fatalf("close: %v", err)
		}
		for _, p := range []string{"/colony/locks/a1", "/colony/locks/a2", "/colony/locks/a3"} {
			if exists(p) {
				t.Errorf("%s outlived its closed session", p)
			}
		}
	})
}
