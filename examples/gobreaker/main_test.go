package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/goleak"

	"github.com/colonymesh/colony/adapters/gobreakerstore"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

// target is a real HTTP server on 127.0.0.1 that can be made to fail.
type target struct {
	failing  atomic.Bool
	requests atomic.Int64
}

func (tg *target) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	tg.requests.Add(1)
	if tg.failing.Load() {
		http.Error(w, "failing", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// process is one "process": its own coordinator client, Store (and so
// session) and breaker, as `gobreaker --id ...` builds them.
func process(t *testing.T, coord, id string, cfg config) *app {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: []string{coord}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	store, err := gobreakerstore.New(c, gobreakerstore.Config{SessionName: id + "/gobreaker"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() }) // before the client: cleanups run last-in first-out
	a, err := newApp(store, cfg, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestProcessesShareOneBreaker: two processes use one gobreaker
// DistributedCircuitBreaker through Colony. Failures seen by the first open
// it; the second, which has not seen a single failure, then rejects its
// calls without reaching the target. After the open timeout, with the
// target healed, the second's calls close it, and the first calls through
// again.
func TestProcessesShareOneBreaker(t *testing.T) {
	coord := coordinatortest.StartNode(t).Addr()
	tg := &target{}
	ts := httptest.NewServer(tg)
	t.Cleanup(ts.Close)
	// The open timeout must outlast the handful of calls made while the
	// breaker is open (a few coordinator round trips each), with room for a
	// slow machine.
	cfg := config{Name: "catalog", URL: ts.URL + "/", Failures: 3, OpenTimeout: 3 * time.Second, MaxRequests: 2}
	p1 := process(t, coord, "p1", cfg)
	p2 := process(t, coord, "p2", cfg)

	for _, p := range []*app{p1, p2, p1, p2} {
		if o, err := p.call(); o != ok {
			t.Fatalf("healthy target: %v %v", o, err)
		}
	}

	// The target fails; p1's calls see it and open the breaker.
	tg.failing.Store(true)
	for i := range cfg.Failures {
		if o, err := p1.call(); o != failed {
			t.Fatalf("p1, failing call %d: %v %v", i, o, err)
		}
	}
	// p2 has seen no failure, yet its calls are rejected and never reach
	// the target.
	before := tg.requests.Load()
	for i := range 5 {
		o, err := p2.call()
		if o != rejected || !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("p2, call %d after p1's failures: %v %v, want %v", i, o, err, gobreaker.ErrOpenState)
		}
	}
	if o, err := p1.call(); o != rejected {
		t.Fatalf("p1 after opening it: %v %v", o, err)
	}
	if n := tg.requests.Load() - before; n != 0 {
		t.Fatalf("%d calls reached the target while the breaker was open", n)
	}
	if st, err := p2.cb.State(); err != nil || st != gobreaker.StateOpen {
		t.Fatalf("p2 sees %v (%v), want open", st, err)
	}

	// Healed: after the open timeout p2's calls are let through (half-open)
	// and close the breaker, for p1 too.
	tg.failing.Store(false)
	deadline := time.Now().Add(15 * time.Second)
	for succeeded := uint32(0); succeeded < cfg.MaxRequests; {
		o, err := p2.call()
		switch o {
		case ok:
			succeeded++
		case rejected: // still open
			if time.Now().After(deadline) {
				t.Fatalf("still rejected %v after the open timeout", err)
			}
			time.Sleep(50 * time.Millisecond)
		default:
			t.Fatalf("p2 after healing: %v %v", o, err)
		}
	}
	if st, err := p1.cb.State(); err != nil || st != gobreaker.StateClosed {
		t.Fatalf("p1 sees %v (%v), want closed", st, err)
	}
	if o, err := p1.call(); o != ok {
		t.Fatalf("p1 after p2 closed the breaker: %v %v", o, err)
	}
}
