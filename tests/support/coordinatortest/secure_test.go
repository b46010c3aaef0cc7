package coordinatortest

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func treeClient(t *testing.T, addr string, creds credentials.TransportCredentials) colonyv1.TreeClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return colonyv1.NewTreeClient(conn)
}

// A secure cluster takes writes through any node from a certificate of its
// CA, and refuses plaintext.
func TestStartSecureCluster(t *testing.T) {
	p := NewPKI(t)
	nodes := StartSecureCluster(t, p, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin := credentials.NewTLS(p.ClientTLS(trust.RoleAdmin, "t"))
	for _, n := range nodes {
		if _, err := treeClient(t, n.Addr(), admin).Create(ctx, &colonyv1.CreateRequest{Path: "/" + n.ID()}); err != nil {
			t.Errorf("create through %s: %v", n.ID(), err)
		}
	}
	_, err := treeClient(t, nodes[1].Addr(), insecure.NewCredentials()).Get(ctx, &colonyv1.GetRequest{Path: "/n1"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext Get: %v, want Unavailable", err)
	}
}

func TestStartSecureNode(t *testing.T) {
	p := NewPKI(t)
	srv := StartSecureNode(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tree := treeClient(t, srv.Addr(), credentials.NewTLS(p.ClientTLS(trust.RoleAdmin, "t")))
	if _, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: "/x"}); err != nil {
		t.Fatalf("create: %v", err)
	}
}
