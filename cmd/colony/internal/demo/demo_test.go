package demo_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/colonymesh/colony/cmd/colony/internal/demo"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

// TestDemoMeshTrips: the demo's callers get through while the callee is
// healthy; "colony demo fail" (its control znode) makes every caller's
// breaker trip and the callers reject locally; Close stops everything.
func TestDemoMeshTrips(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	m, err := demo.Start(demo.Config{Coordinator: srv.Addr(), Every: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitAll := func(what string, cond func(*demo.Caller) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for _, c := range m.Callers {
			for !cond(c) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s: ok %d failed %d rejected %d", what, c.Service, c.OK.Load(), c.Failed.Load(), c.Rejected.Load())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	waitAll("traffic flows", func(c *demo.Caller) bool { return c.OK.Load() > 10 })
	c, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Set(context.Background(), demo.ControlRoot+"/payments", []byte("fail"), client.AnyVersion); err != nil {
		t.Fatal(err)
	}
	waitAll("every caller rejects locally", func(c *demo.Caller) bool { return c.Rejected.Load() > 0 })
}
