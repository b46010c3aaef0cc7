package gobreakerstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/colonymesh/colony/adapters/gobreakerstore"
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

// startCoordinator starts a single-node coordinator and returns its address.
func startCoordinator(tb testing.TB) string {
	tb.Helper()
	return coordinatortest.StartNode(tb).Addr()
}

// newClient returns a client of the coordinator at addr, closed at cleanup.
func newClient(tb testing.TB, addr string) *client.Client {
	tb.Helper()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// newStore returns a Store on c, closed at cleanup (before c).
func newStore(tb testing.TB, c *client.Client, cfg gobreakerstore.Config) *gobreakerstore.Store {
	tb.Helper()
	s, err := gobreakerstore.New(c, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     gobreakerstore.Config
		wantErr string // substring; empty: valid
	}{
		{"zero value", gobreakerstore.Config{}, ""},
		{"defaults", gobreakerstore.DefaultConfig(), ""},
		{"nested root", gobreakerstore.Config{Root: "/apps/orders/breakers"}, ""},
		{"relative root", gobreakerstore.Config{Root: "colony"}, "Root"},
		{"trailing slash", gobreakerstore.Config{Root: "/colony/"}, "Root"},
		{"tree root", gobreakerstore.Config{Root: "/"}, "Root"},
		{"dot segment", gobreakerstore.Config{Root: "/colony/../x"}, "Root"},
		{"root too long", gobreakerstore.Config{Root: "/" + strings.Repeat("r", 1000)}, "Root"},
		{"negative ttl", gobreakerstore.Config{SessionTTL: -time.Second}, "SessionTTL"},
		{"negative timeout", gobreakerstore.Config{Timeout: -1}, "Timeout"},
		{"negative lock timeout", gobreakerstore.Config{LockTimeout: -1}, "LockTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
	if _, err := gobreakerstore.New(nil, gobreakerstore.Config{}); err == nil {
		t.Error("New(nil client) succeeded")
	}
}

// GetData and SetData round-trip any name, each in its own escaped segment.
func TestData(t *testing.T) {
	addr := startCoordinator(t)
	c := newClient(t, addr)
	ctx := testContext(t)
	const root = "/apps/orders/gobreaker" // parents created on demand
	s := newStore(t, c, gobreakerstore.Config{Root: root})

	tests := []struct {
		name string
		node string // the data znode, below root
	}{
		{"payments", "payments/state"},
		{"gobreaker:state:payments", "gobreaker:state:payments/state"},
		{"a/b", "a%2Fb/state"},
		{"/leading/and/trailing/", "%2Fleading%2Fand%2Ftrailing%2F/state"},
		{"with space", "with%20space/state"},
		{"gobreaker:state:svc/charge v2", "gobreaker:state:svc%2Fcharge%20v2/state"},
		{".", "%2E/state"},
		{"..", "%2E%2E/state"},
		{"...", ".../state"},
		{"héllo\n", "h%C3%A9llo%0A/state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := s.GetData(tt.name)
			if err != nil || data != nil {
				t.Fatalf("GetData before any SetData = %q, %v; want nil, nil", data, err)
			}
			for _, v := range []string{"v1", "v2 for " + tt.name} {
				if err := s.SetData(tt.name, []byte(v)); err != nil {
					t.Fatalf("SetData(%q): %v", v, err)
				}
				data, err := s.GetData(tt.name)
				if err != nil || string(data) != v {
					t.Fatalf("GetData = %q, %v; want %q", data, err, v)
				}
			}
			data, _, err = c.Get(ctx, root+"/"+tt.node)
			if err != nil || !bytes.HasPrefix(data, []byte("v2")) {
				t.Errorf("znode %s/%s = %q, %v", root, tt.node, data, err)
			}
		})
	}

	// Names are escaped, not collapsed: "a/b" and "a%2Fb" stay apart.
	if err := s.SetData("a%2Fb", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if data, err := s.GetData("a/b"); err != nil || !bytes.HasPrefix(data, []byte("v2")) {
		t.Errorf(`GetData("a/b") after SetData("a%%2Fb") = %q, %v`, data, err)
	}

	for _, name := range []string{"", strings.Repeat("x", 1000)} {
		if err := s.SetData(name, nil); !errors.Is(err, gobreakerstore.ErrInvalidName) {
			t.Errorf("SetData(%d-byte name) = %v, want ErrInvalidName", len(name), err)
		}
		if _, err := s.GetData(name); !errors.Is(err, gobreakerstore.ErrInvalidName) {
			t.Errorf("GetData(%d-byte name) = %v, want ErrInvalidName", len(name), err)
		}
		if err := s.Lock(name); !errors.Is(err, gobreakerstore.ErrInvalidName) {
			t.Errorf("Lock(%d-byte name) = %v, want ErrInvalidName", len(name), err)
		}
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetData("payments"); !errors.Is(err, gobreakerstore.ErrClosed) {
		t.Errorf("GetData after Close = %v, want ErrClosed", err)
	}
	if err := s.SetData("payments", nil); !errors.Is(err, gobreakerstore.ErrClosed) {
		t.Errorf("SetData after Close = %v, want ErrClosed", err)
	}
	if err := s.Lock("payments"); !errors.Is(err, gobreakerstore.ErrClosed) {
		t.Errorf("Lock after Close = %v, want ErrClosed", err)
	}
}

// Goroutines of one process (sharing a Store) and of another (its own Store
// and session) never hold the lock at the same time.
func TestLockMutualExclusion(t *testing.T) {
	addr := startCoordinator(t)
	stores := []*gobreakerstore.Store{
		newStore(t, newClient(t, addr), gobreakerstore.Config{}),
		newStore(t, newClient(t, addr), gobreakerstore.Config{}),
	}
	const perStore, iterations = 4, 10
	const name = "gobreaker:mutex:counter"

	var (
		counter    int // guarded by the distributed lock only
		holders    atomic.Int32
		maxHolders atomic.Int32
		wg         sync.WaitGroup
	)
	for _, s := range stores {
		for range perStore {
			wg.Go(func() {
				for range iterations {
					if err := s.Lock(name); err != nil {
						t.Error(err)
						return
					}
					h := holders.Add(1)
					for m := maxHolders.Load(); h > m && !maxHolders.CompareAndSwap(m, h); m = maxHolders.Load() {
					}
					v := counter
					time.Sleep(time.Millisecond)
					counter = v + 1
					holders.Add(-1)
					if err := s.Unlock(name); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if want := len(stores) * perStore * iterations; counter != want {
		t.Errorf("counter = %d, want %d: increments were lost", counter, want)
	}
	if m := maxHolders.Load(); m != 1 {
		t.Errorf("at most %d goroutines held the lock at once, want 1", m)
	}
}

func TestUnlockNotLocked(t *testing.T) {
	addr := startCoordinator(t)
	s := newStore(t, newClient(t, addr), gobreakerstore.Config{})
	if err := s.Unlock("nobody"); !errors.Is(err, gobreakerstore.ErrNotLocked) {
		t.Errorf("Unlock without Lock = %v, want ErrNotLocked", err)
	}
	if err := s.Lock("once"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock("once"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock("once"); !errors.Is(err, gobreakerstore.ErrNotLocked) {
		t.Errorf("second Unlock = %v, want ErrNotLocked", err)
	}
}

// A Lock that times out returns context.DeadlineExceeded and takes its
// znode away, so it does not block the holders after it.
func TestLockTimeout(t *testing.T) {
	addr := startCoordinator(t)
	c := newClient(t, addr)
	ctx := testContext(t)
	holder := newStore(t, c, gobreakerstore.Config{})
	waiter := newStore(t, c, gobreakerstore.Config{LockTimeout: 200 * time.Millisecond})
	const name = "slow"

	if err := holder.Lock(name); err != nil {
		t.Fatal(err)
	}
	if err := waiter.Lock(name); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held lock = %v, want context.DeadlineExceeded", err)
	}
	names, _, err := c.Children(ctx, gobreakerstore.DefaultRoot+"/"+name+"/lock")
	if err != nil || len(names) != 1 {
		t.Errorf("lock znodes after the timed-out Lock = %v, %v; want only the holder's", names, err)
	}
	if err := holder.Unlock(name); err != nil {
		t.Fatal(err)
	}
	if err := waiter.Lock(name); err != nil {
		t.Fatalf("Lock after the holder's Unlock: %v", err)
	}
	if err := waiter.Unlock(name); err != nil {
		t.Fatal(err)
	}
}

// When the holder's session ends, its lock goes with it: a waiter in another
// Store takes it, and the old holder's Unlock reports ErrLockLost.
func TestLockReleasedWithSession(t *testing.T) {
	addr := startCoordinator(t)

	// lockInBackground starts s.Lock(name) and returns a channel that gets
	// its result. (If the test fails first, closing s ends the Lock.)
	lockInBackground := func(s *gobreakerstore.Store, name string) <-chan error {
		done := make(chan error, 1)
		go func() { done <- s.Lock(name) }()
		return done
	}
	// notYet checks that the background Lock is still waiting.
	notYet := func(t *testing.T, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("the waiter's Lock returned (%v) while the lock was held", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	acquired := func(t *testing.T, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("the waiter's Lock: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the waiter did not get the lock after the holder's session ended")
		}
	}

	t.Run("session lost", func(t *testing.T) {
		c := newClient(t, addr)
		ctx := testContext(t)
		holder := newStore(t, c, gobreakerstore.Config{SessionName: "holder-lost", SessionTTL: time.Second})
		waiter := newStore(t, c, gobreakerstore.Config{})
		const name = "lost"
		if err := holder.Lock(name); err != nil {
			t.Fatal(err)
		}
		done := lockInBackground(waiter, name)
		notYet(t, done)

		// The coordinator ends the holder's session, as it would if the
		// holder stopped sending keep-alives.
		sessions, err := c.ListSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		killed := false
		for _, si := range sessions {
			if si.GetName() == "holder-lost" {
				if err := c.CloseSession(ctx, si.GetSessionId()); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		if !killed {
			t.Fatalf("no session named holder-lost among %v", sessions)
		}
		acquired(t, done)
		if err := holder.Unlock(name); !errors.Is(err, gobreakerstore.ErrLockLost) {
			t.Errorf("the old holder's Unlock = %v, want ErrLockLost", err)
		}
		if err := waiter.Unlock(name); err != nil {
			t.Fatal(err)
		}

		// The holder's Store carries on with a new session once it has
		// noticed the loss.
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := holder.Lock(name)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Lock after the session was lost: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := holder.Unlock(name); err != nil {
			t.Fatalf("Unlock on the new session: %v", err)
		}
	})

	t.Run("store closed", func(t *testing.T) {
		c := newClient(t, addr)
		holder := newStore(t, c, gobreakerstore.Config{})
		waiter := newStore(t, c, gobreakerstore.Config{})
		const name = "closed"
		if err := holder.Lock(name); err != nil {
			t.Fatal(err)
		}
		done := lockInBackground(waiter, name)
		notYet(t, done)
		if err := holder.Close(); err != nil {
			t.Fatal(err)
		}
		acquired(t, done)
		if err := holder.Unlock(name); !errors.Is(err, gobreakerstore.ErrLockLost) {
			t.Errorf("Unlock after Close = %v, want ErrLockLost", err)
		}
		if err := waiter.Unlock(name); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("close ends a waiting Lock", func(t *testing.T) {
		c := newClient(t, addr)
		holder := newStore(t, c, gobreakerstore.Config{})
		waiter := newStore(t, c, gobreakerstore.Config{LockTimeout: time.Minute})
		const name = "close-waiter"
		if err := holder.Lock(name); err != nil {
			t.Fatal(err)
		}
		done := lockInBackground(waiter, name)
		notYet(t, done)
		if err := waiter.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, gobreakerstore.ErrClosed) {
				t.Errorf("waiting Lock after Close = %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not end the waiting Lock")
		}
		if err := holder.Unlock(name); err != nil {
			t.Fatal(err)
		}
	})
}

// The lock directories of different names are independent.
func TestLockNamesIndependent(t *testing.T) {
	addr := startCoordinator(t)
	s := newStore(t, newClient(t, addr), gobreakerstore.Config{LockTimeout: 2 * time.Second})
	for i := range 3 {
		if err := s.Lock(fmt.Sprintf("name/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := s.Unlock(fmt.Sprintf("name/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}
