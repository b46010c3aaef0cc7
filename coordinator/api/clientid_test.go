package api

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/colonymesh/colony/internal/trust"
)

// TestRequestScope checks that on a secure node a write's request-id scope
// starts with the caller's verified identity, so that no caller can name
// another's scope, and that an insecure node keeps the client id alone.
func TestRequestScope(t *testing.T) {
	md := func(id string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(ClientIDMetadata, id))
	}
	alice := trust.Identity{ID: "spiffe://colony.local/client/alice", Role: trust.RoleClient, Name: "alice"}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"Insecure", md("c1"), "c1"},
		{"InsecureAnonymous", context.Background(), ""},
		{"Secure", context.WithValue(md("c1"), identityKey{}, alice), alice.ID + " c1"},
		{"SecureAnonymous", context.WithValue(context.Background(), identityKey{}, alice), alice.ID + " "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := requestScope(tc.ctx)
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
