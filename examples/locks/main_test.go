package main

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/recipe"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

var discard = log.New(io.Discard, "", 0)

// startResource serves the example's resource on a loopback port until
// cleanup and returns it with its counter's URL.
func startResource(t *testing.T) (*resource, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &resource{logger: discard}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveResource(ctx, r, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("resource: %v", err)
		}
	})
	return r, "http://" + lis.Addr().String() + "/counter"
}

func newClient(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// goLocker is a worker's lock through package recipe, on its own client
// and session, as `locks worker --via go` makes it.
func goLocker(t *testing.T, coord, name, id string) *recipeLocker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := newRecipeLocker(ctx, newClient(t, coord), name, id, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Close(ctx)
	})
	return l
}

// sidecarLockerOf is a worker's lock through a real sidecar's Locks API,
// as `locks worker --via sidecar` makes it.
func sidecarLockerOf(t *testing.T, coord, instance, name string) *sidecarLocker {
	t.Helper()
	s, err := sidecar.New(sidecar.Config{Service: "billing", Instance: instance, Coordinators: []string{coord},
		Address: "127.0.0.1:9501", APIAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &sidecarLocker{locks: colonyv1.NewLocksClient(conn), name: name, ttl: 2 * time.Second}
}

// TestWorkersContend: four workers, two taking the lock with package
// recipe and two through two sidecars' Locks API, each do rounds of
// read-modify-write on the fenced counter at once. The resource sees their
// critical sections one after the other, never interleaved (each GET is
// followed by the PUT of the same holder), with strictly increasing tokens;
// no request is rejected and no increment is lost.
func TestWorkersContend(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	res, url := startResource(t)
	const lockName, rounds = "counter", 4
	lockers := map[string]locker{
		"go-1":      goLocker(t, srv.Addr(), lockName, "go-1"),
		"go-2":      goLocker(t, srv.Addr(), lockName, "go-2"),
		"sidecar-1": sidecarLockerOf(t, srv.Addr(), "b1", lockName),
		"sidecar-2": sidecarLockerOf(t, srv.Addr(), "b2", lockName),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	tokens := map[string][]recipe.Token{}
	for id, l := range lockers {
		w := &worker{id: id, lock: l, hold: 10 * time.Millisecond, logger: discard,
			res: &resourceClient{url: url, worker: id, http: &http.Client{Timeout: 5 * time.Second}}}
		wg.Go(func() {
			ts, err := w.run(ctx, rounds)
			if err != nil {
				t.Errorf("%s: %v", id, err)
			}
			mu.Lock()
			tokens[id] = ts
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() || ctx.Err() != nil {
		t.Fatalf("workers did not finish: %v", ctx.Err())
	}

	h := res.History()
	want := len(lockers) * rounds
	if len(h) != 2*want {
		t.Fatalf("the resource saw %d requests, want %d (a GET and a PUT per round): %+v", len(h), 2*want, h)
	}
	var last recipe.Token
	for i := 0; i < len(h); i += 2 {
		get, put := h[i], h[i+1]
		if get.Rejected || put.Rejected {
			t.Fatalf("requests %d-%d rejected: %+v %+v", i, i+1, get, put)
		}
		if get.Method != http.MethodGet || put.Method != http.MethodPut || get.Token != put.Token || get.Worker != put.Worker {
			t.Fatalf("critical sections overlap at requests %d-%d: %+v then %+v", i, i+1, get, put)
		}
		if get.Token <= last {
			t.Fatalf("round %d: token %d after %d: tokens must strictly increase from holder to holder", i/2, get.Token, last)
		}
		last = get.Token
		if put.Value != get.Value+1 {
			t.Fatalf("round %d: read %d, wrote %d", i/2, get.Value, put.Value)
		}
	}
	if got := h[len(h)-1].Value; got != int64(want) {
		t.Fatalf("counter %d after %d increments", got, want)
	}
	for id, ts := range tokens {
		if len(ts) != rounds {
			t.Errorf("%s: %d rounds, want %d", id, len(ts), rounds)
		}
	}
	t.Logf("%d rounds by %d workers; tokens %v", want, len(lockers), tokens)
}

// TestStaleHolderIsFenced: a holder loses the lock (its session ends while
// it works, as when it pauses past the TTL) and another worker takes the
// lock and writes. When the first one resumes and writes with its old token,
// the resource rejects it: fencing, not the lock alone, protects the data.
func TestStaleHolderIsFenced(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	res, url := startResource(t)
	rc := func(id string) *resourceClient {
		return &resourceClient{url: url, worker: id, http: &http.Client{Timeout: 5 * time.Second}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The slow holder reads under the lock, then loses it.
	slow := goLocker(t, srv.Addr(), "counter", "slow")
	h, err := slow.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := rc("slow").get(ctx, h.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.sess.Close(ctx); err != nil { // the coordinator ends the session
		t.Fatal(err)
	}
	<-h.Done

	// The next holder gets a greater token, and writes.
	fast := &worker{id: "fast", lock: sidecarLockerOf(t, srv.Addr(), "b1", "counter"), res: rc("fast"), logger: discard}
	next, err := fast.round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next <= h.Token {
		t.Fatalf("token %d after %d", next, h.Token)
	}

	// The slow holder resumes and writes with its old token: rejected, and
	// the counter keeps the next holder's write.
	if err := rc("slow").put(ctx, h.Token, v+1); !errors.Is(err, errStaleToken) {
		t.Fatalf("stale write: %v, want %v", err, errStaleToken)
	}
	hist := res.History()
	lastOp := hist[len(hist)-1]
	if !lastOp.Rejected || lastOp.Token != h.Token {
		t.Fatalf("last request %+v, want the stale write, rejected", lastOp)
	}
	if got, err := rc("reader").get(ctx, next); err != nil || got != v+1 {
		t.Fatalf("counter %d (%v), want %d, the next holder's", got, err, v+1)
	}
	t.Logf("slow holder's token %d fenced off by %d", h.Token, next)
}
