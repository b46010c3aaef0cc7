package client_test

import (
	"errors"
	"regexp"
	"testing"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// TestClientIDScopesRequestIDs: two clients that use the same request id
// both get their write applied; one client reusing an id for a different
// write gets ErrInvalidArgument.
func TestClientIDScopesRequestIDs(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	ctx := testContext(t)
	newClient := func(cfg client.Config) *client.Client {
		cfg.Endpoints = []string{srv.Addr()}
		c, err := client.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := newClient(client.Config{}), newClient(client.Config{})
	hex := regexp.MustCompile(`^[0-9a-f]{32}$`)
	if !hex.MatchString(a.ClientID()) || a.ClientID() == b.ClientID() {
		t.Fatalf("client ids %q and %q, want two random 128-bit hex ids", a.ClientID(), b.ClientID())
	}

	rctx := client.WithRequestID(ctx, "the-same-id")
	if _, _, err := a.Create(rctx, "/a", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Create(rctx, "/b", nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/a", "/b"} {
		if ok, _, err := a.Exists(ctx, p); err != nil || !ok {
			t.Errorf("%s: exists %v %v, want each client's create applied", p, ok, err)
		}
	}
	if _, _, err := a.Create(rctx, "/c", nil); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("same client, same id, other path: %v, want ErrInvalidArgument", err)
	}

	// A fixed ClientID lets a restarted process retry its own writes.
	restarted := newClient(client.Config{ClientID: a.ClientID()})
	if path, _, err := restarted.Create(rctx, "/a", nil); err != nil || path != "/a" {
		t.Errorf("retry with the same client id: %q %v, want the first result", path, err)
	}

	for _, bad := range []string{"has space", "x/y", string(make([]byte, 65))} {
		if _, err := client.New(client.Config{ClientID: bad}); err == nil {
			t.Errorf("ClientID %q accepted", bad)
		}
	}
}
