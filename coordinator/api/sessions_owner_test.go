package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/errinfo"
	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// keepAliveNode is a node whose applied view (local) may lag the one it
// reaches by catching up with the leader (caughtUp). Methods the test does
// not expect panic (the embedded Node is nil).
type keepAliveNode struct {
	Node
	local, caughtUp *ztree.View
	readViews       int
	keptAlive       []uint64
}

func (n *keepAliveNode) LocalView() *ztree.View { return n.local }

func (n *keepAliveNode) ReadView(context.Context, colonyv1.Consistency, uint64) (*ztree.View, error) {
	n.readViews++
	return n.caughtUp, nil
}

func (n *keepAliveNode) KeepAlive(_ context.Context, id uint64) (time.Duration, error) {
	n.keptAlive = append(n.keptAlive, id)
	return time.Second, nil
}

func (n *keepAliveNode) Header() *colonyv1.ResponseHeader { return &colonyv1.ResponseHeader{} }

// asIdentity is ctx as a request over TLS from the client whose
// certificate ca issues for role/name.
func asIdentity(t *testing.T, ca *trust.CA, role trust.Role, name string) context.Context {
	t.Helper()
	files, err := ca.Issue(t.TempDir(), trust.Leaf{Role: role, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	state := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert.Leaf}}}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: state}})
}

// TestKeepAliveOwner: a keep-alive reaches the leader's tracker only for
// the session's owner, also on a node that has not applied the session
// yet (it catches up first); unknown sessions and insecure nodes are left
// to the leader as before.
func TestKeepAliveOwner(t *testing.T) {
	dir := t.TempDir()
	ca, err := trust.NewCA(dir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.Issue(dir, trust.Leaf{Role: trust.RoleNode, Name: "n1", Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := trust.Load(files, ca.TrustDomain, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice := asIdentity(t, ca, trust.RoleSidecar, "alice")
	bob := asIdentity(t, ca, trust.RoleSidecar, "bob")

	// The cluster's log: a no-op, then alice opens session 2.
	lagging, current := ztree.New(), ztree.New()
	noop := &peerv1.Command{Op: &peerv1.Command_Noop{Noop: &peerv1.Noop{}}}
	lagging.Apply([]ztree.Entry{{Index: 1, Cmd: noop}})
	current.Apply([]ztree.Entry{{Index: 1, Cmd: noop}, {Index: 2, Cmd: &peerv1.Command{
		Owner: "spiffe://" + ca.TrustDomain + "/sidecar/alice",
		Op:    &peerv1.Command_OpenSession{OpenSession: &peerv1.OpenSession{TtlMs: 1000}},
	}}})
	if owner, _ := current.View().SessionOwner(2); owner == "" {
		t.Fatal("session 2 has no owner")
	}

	for _, tt := range []struct {
		name      string
		local     *ztree.View
		ctx       context.Context
		id        uint64
		insecure  bool
		denied    bool
		readViews int
		keptAlive bool
	}{
		{"stranger, applied", current.View(), bob, 2, false, true, 0, false},
		{"stranger, not applied yet", lagging.View(), bob, 2, false, true, 1, false},
		{"owner, applied", current.View(), alice, 2, false, false, 0, true},
		{"owner, not applied yet", lagging.View(), alice, 2, false, false, 1, true},
		{"no identity", current.View(), context.Background(), 2, false, true, 0, false},
		{"unknown session", current.View(), bob, 99, false, false, 1, true},
		{"ended session", current.View(), bob, 1, false, false, 0, true},
		{"insecure node", lagging.View(), context.Background(), 2, true, false, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			node := &keepAliveNode{local: tt.local, caughtUp: current.View()}
			cfg := Config{Trust: m}
			if tt.insecure {
				cfg.Trust = nil
			}
			srv := &sessionsServer{s: New(node, cfg)}
			_, err := srv.KeepAlive(tt.ctx, &colonyv1.KeepAliveRequest{SessionId: tt.id})
			st := status.Convert(err)
			if tt.denied != (st.Code() == codes.PermissionDenied && errinfo.Reason(st) == contract.ReasonSessionNotOwned) || (!tt.denied && err != nil) {
				t.Fatalf("KeepAlive: %v, want denied %v", err, tt.denied)
			}
			if node.readViews != tt.readViews {
				t.Errorf("%d read views, want %d", node.readViews, tt.readViews)
			}
			if got := len(node.keptAlive) > 0; got != tt.keptAlive {
				t.Errorf("reached the tracker: %v, want %v", got, tt.keptAlive)
			}
		})
	}
}
