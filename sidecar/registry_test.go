package sidecar_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// register writes a registration for service/instance as a sidecar would
// (but persistent: the test removes it itself).
func register(t *testing.T, c *client.Client, service, instance string, port int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The leader's engine creates the roots once it leads, which may be
	// after the node has started: create whichever is still missing.
	for _, dir := range []string{contract.Root, contract.ServicesRoot, contract.ServiceDir(service)} {
		if _, _, err := c.Create(ctx, dir, nil); err != nil && !errors.Is(err, client.ErrNodeExists) {
			t.Fatal(err)
		}
	}
	data, err := json.Marshal(sidecar.Registration{Service: service, Instance: instance, Address: "127.0.0.1", Port: port, Protocol: "grpc"})
	if err != nil {
		t.Fatal(err)
	}
	p := contract.RegistrationPath(service, instance)
	_, err = c.Set(ctx, p, data, client.AnyVersion)
	if errors.Is(err, client.ErrNoNode) {
		_, _, err = c.Create(ctx, p, data)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// endpoints returns the instance:port of each endpoint of callee in the
// sidecar's view, and whether the view has the callee at all.
func endpoints(s *sidecar.Sidecar, callee string) ([]string, bool) {
	for _, c := range s.View().Callees {
		if c.Name == callee {
			var out []string
			for _, e := range c.Endpoints {
				out = append(out, fmt.Sprintf("%s:%d", e.Instance, e.Port))
			}
			return out, true
		}
	}
	return nil, false
}

// waitEndpoints waits until callee's endpoints in s's view are want.
func waitEndpoints(t *testing.T, s *sidecar.Sidecar, callee string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := endpoints(s, callee)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's endpoints: %v, want %v", callee, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRegistryFollowsRegistrations: a sidecar's view of the registry starts
// from a full read (registrations made before it started) and then follows
// every change: an instance added, one re-registered at another port, one
// removed. A registration it cannot read is left out. A sidecar given
// Callees follows only theirs; one without follows every service but its
// own.
func TestRegistryFollowsRegistrations(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	register(t, admin, "payments", "p1", 9001)
	register(t, admin, "orders", "o1", 9501)

	all := startSidecar(t, srv.Addr(), "checkout", "c1", 9101)
	scoped := startSidecar(t, srv.Addr(), "checkout", "c2", 9102, func(cfg *sidecar.Config) { cfg.Callees = []string{"payments"} })

	// The full read.
	for _, s := range []*sidecar.Sidecar{all, scoped} {
		waitEndpoints(t, s, "payments", "p1:9001")
	}
	waitEndpoints(t, all, "orders", "o1:9501")

	// Changes, one at a time.
	register(t, admin, "payments", "p2", 9002)
	for _, s := range []*sidecar.Sidecar{all, scoped} {
		waitEndpoints(t, s, "payments", "p1:9001", "p2:9002")
	}
	register(t, admin, "payments", "p1", 9011)
	for _, s := range []*sidecar.Sidecar{all, scoped} {
		waitEndpoints(t, s, "payments", "p1:9011", "p2:9002")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.Delete(ctx, contract.RegistrationPath("payments", "p2"), client.AnyVersion); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*sidecar.Sidecar{all, scoped} {
		waitEndpoints(t, s, "payments", "p1:9011")
	}
	// Unreadable: not JSON, or no port. Then a good one, to know the bad
	// ones were seen.
	if _, _, err := admin.Create(ctx, contract.RegistrationPath("payments", "garbled"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.Create(ctx, contract.RegistrationPath("payments", "portless"), []byte(`{"service":"payments","instance":"portless"}`)); err != nil {
		t.Fatal(err)
	}
	register(t, admin, "payments", "p3", 9003)
	for _, s := range []*sidecar.Sidecar{all, scoped} {
		waitEndpoints(t, s, "payments", "p1:9011", "p3:9003")
	}

	// What each follows.
	if _, ok := endpoints(scoped, "orders"); ok {
		t.Error("a sidecar with Callees [payments] has orders in its view")
	}
	if _, ok := endpoints(all, "checkout"); ok {
		t.Error("a sidecar has its own service in its view")
	}
	register(t, admin, "orders", "o2", 9502)
	waitEndpoints(t, all, "orders", "o1:9501", "o2:9502")
	if _, ok := endpoints(scoped, "orders"); ok {
		t.Error("a sidecar with Callees [payments] follows orders")
	}
}
