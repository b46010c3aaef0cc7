package recipe

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc's and raft's package-level background goroutines.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

// testTTL is the session TTL of most tests: the test coordinator's minimum
// is 300ms, and a short TTL keeps expiry tests fast.
const testTTL = time.Second

// startCoordinator starts a single-node coordinator and returns its address.
func startCoordinator(t *testing.T) string {
	t.Helper()
	return coordinatortest.StartNode(t).Addr()
}

// newClient returns a client of the coordinator at addr, closed at cleanup.
func newClient(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// openSession opens a session on c, closed at cleanup (before c, if c was
// made first).
func openSession(t *testing.T, c *client.Client, ttl time.Duration) *client.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenSession(ctx, ttl, "recipe-test/"+t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

func testMutex(t *testing.T, c *client.Client, s *client.Session, name string) *Mutex {
	t.Helper()
	m, err := NewMutex(c, s, name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// children returns the names of the recipe nodes under dir (none if dir does
// not exist).
func children(t *testing.T, ctx context.Context, c *client.Client, dir string) []string {
	t.Helper()
	k := contender{c: c, dir: dir, kinds: []string{kindExclusive, kindShared, kindCandidate}}
	ms, _, err := k.members(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.name)
	}
	slices.Sort(names)
	return names
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// lockResult is the outcome of a Lock run in a goroutine.
type lockResult struct {
	g   *Grant
	err error
}

// lockAsync runs m.Lock(ctx) in a goroutine and returns its result channel.
func lockAsync(ctx context.Context, m *Mutex) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		g, err := m.Lock(ctx)
		ch <- lockResult{g, err}
	}()
	return ch
}
