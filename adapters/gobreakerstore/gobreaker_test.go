package gobreakerstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/colonymesh/colony/adapters/gobreakerstore"
)

var errBoom = errors.New("payments: 503")

// instance is one "process" using gobreaker's DistributedCircuitBreaker
// through its own client, Store and session.
type instance struct {
	store *gobreakerstore.Store
	cb    *gobreaker.DistributedCircuitBreaker[int]

	mu      sync.Mutex
	changes []string // OnStateChange calls seen by this instance, "from->to"
}

func (in *instance) onStateChange(_ string, from, to gobreaker.State) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.changes = append(in.changes, from.String()+"->"+to.String())
}

func (in *instance) seen() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.changes)
}

// sharedState reads the state gobreaker keeps in the store for breaker name.
func sharedState(t *testing.T, s *gobreakerstore.Store, name string) gobreaker.SharedState {
	t.Helper()
	data, err := s.GetData("gobreaker:state:" + name)
	if err != nil {
		t.Fatal(err)
	}
	var st gobreaker.SharedState
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("shared state %q: %v", data, err)
	}
	return st
}

// gobreaker's own DistributedCircuitBreaker, run against the Store by three
// instances (as if three processes) with several goroutines each, behaves as
// one breaker: failures seen by one instance open it for all, and after its
// timeout successes close it for all.
func TestGobreakerDistributedCircuitBreaker(t *testing.T) {
	addr := startCoordinator(t)
	const (
		instances   = 3
		workers     = 3 // goroutines per instance
		name        = "payments/charge v2"
		maxRequests = 2 // half-open: successes needed to close
		// openTimeout must outlast the calls of the "others reject" phase
		// (a few dozen coordinator round trips) with room to spare.
		openTimeout = time.Second
	)
	var ins []*instance
	for i := range instances {
		in := &instance{store: newStore(t, newClient(t, addr), gobreakerstore.Config{SessionName: fmt.Sprintf("instance-%d", i)})}
		cb, err := gobreaker.NewDistributedCircuitBreaker[int](in.store, gobreaker.Settings{
			Name:          name,
			MaxRequests:   maxRequests,
			Timeout:       openTimeout,
			ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 5 },
			OnStateChange: in.onStateChange,
		})
		if err != nil {
			t.Fatalf("instance %d: NewDistributedCircuitBreaker: %v", i, err)
		}
		in.cb = cb
		ins = append(ins, in)
	}
	// run calls fn from workers goroutines of each instance in which, at
	// once, and waits for them.
	run := func(which []int, fn func(in *instance)) {
		var wg sync.WaitGroup
		for _, i := range which {
			for range workers {
				wg.Go(func() { fn(ins[i]) })
			}
		}
		wg.Wait()
	}
	all := []int{0, 1, 2}
	var calls atomic.Int64 // how often a request function ran
	succeed := func() (int, error) { calls.Add(1); return 1, nil }
	fail := func() (int, error) { calls.Add(1); return 0, errBoom }
	wantState := func(phase string, want gobreaker.State) {
		t.Helper()
		for i, in := range ins {
			if st, err := in.cb.State(); err != nil || st != want {
				t.Fatalf("%s: instance %d: State() = %v, %v; want %v", phase, i, st, err, want)
			}
		}
	}

	// 1. Healthy traffic from every instance at once: all of it runs.
	const healthy = 5
	run(all, func(in *instance) {
		for range healthy {
			if _, err := in.cb.Execute(succeed); err != nil {
				t.Errorf("healthy call: %v", err)
			}
		}
	})
	if got, want := calls.Load(), int64(instances*workers*healthy); got != want {
		t.Errorf("healthy phase ran %d requests, want %d", got, want)
	}
	wantState("healthy", gobreaker.StateClosed)
	// gobreaker reads the shared state before it takes the lock (see
	// DESIGN.md), so concurrent calls overwrite each other's counts.
	t.Logf("shared counts after %d concurrent successes: %+v", instances*workers*healthy, sharedState(t, ins[0].store, name).Counts)

	// 2. Instance 0's callee fails: its goroutines trip the shared breaker.
	calls.Store(0)
	run([]int{0}, func(in *instance) {
		for range 100 {
			_, err := in.cb.Execute(fail)
			if errors.Is(err, gobreaker.ErrOpenState) {
				return
			}
			if !errors.Is(err, errBoom) {
				t.Errorf("failing call: %v", err)
				return
			}
		}
		t.Error("100 failures did not open the breaker")
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d concurrent failing requests ran before the breaker (ConsecutiveFailures >= 5) rejected calls", calls.Load())
	tripped := time.Now()

	// 3. Instances 1 and 2, which never saw a failure, now reject every call
	// without running it.
	calls.Store(0)
	run([]int{1, 2}, func(in *instance) {
		for range 3 {
			if _, err := in.cb.Execute(succeed); !errors.Is(err, gobreaker.ErrOpenState) {
				t.Errorf("call through an instance that did not trip: err = %v, want ErrOpenState", err)
			}
		}
	})
	if n := calls.Load(); n != 0 {
		t.Errorf("an open breaker ran %d requests", n)
	}
	t.Logf("the other instances' %d calls were rejected within %v of the trip (open timeout %v)", 2*workers*3, time.Since(tripped).Round(time.Millisecond), openTimeout)
	wantState("tripped", gobreaker.StateOpen)
	for i, in := range ins[1:] {
		if seen := in.seen(); len(seen) != 0 {
			t.Errorf("instance %d saw state changes %v; gobreaker calls OnStateChange only where the transition happens", i+1, seen)
		}
	}
	if seen := ins[0].seen(); !slices.Contains(seen, "closed->open") {
		t.Errorf("instance 0 saw state changes %v, want closed->open", seen)
	}

	// 4. After the timeout, the first call (here through instance 1) finds
	// the breaker half-open for everyone, and maxRequests successes close it.
	time.Sleep(time.Until(sharedState(t, ins[0].store, name).Expiry) + 10*time.Millisecond)
	for n := 1; n <= maxRequests; n++ {
		if _, err := ins[1].cb.Execute(succeed); err != nil {
			t.Fatalf("probe %d: %v", n, err)
		}
		if n < maxRequests {
			wantState("probing", gobreaker.StateHalfOpen)
		}
	}
	wantState("recovered", gobreaker.StateClosed)
	if seen, want := ins[1].seen(), []string{"open->half-open", "half-open->closed"}; !slices.Equal(seen, want) {
		t.Errorf("instance 1 saw state changes %v, want %v", seen, want)
	}

	// 5. Closed again for everyone: concurrent calls from all instances run.
	calls.Store(0)
	run(all, func(in *instance) {
		for range healthy {
			if _, err := in.cb.Execute(succeed); err != nil {
				t.Errorf("call after recovery: %v", err)
			}
		}
	})
	if got, want := calls.Load(), int64(instances*workers*healthy); got != want {
		t.Errorf("after recovery %d requests ran, want %d", got, want)
	}
	wantState("closed", gobreaker.StateClosed)
}

// When the coordinator cannot be reached (here: the Store is closed),
// gobreaker runs no request at all. It also hides the store's error: a failed
// GetData without data reads as "no shared state".
func TestGobreakerStoreDown(t *testing.T) {
	addr := startCoordinator(t)
	s := newStore(t, newClient(t, addr), gobreakerstore.Config{})
	cb, err := gobreaker.NewDistributedCircuitBreaker[int](s, gobreaker.Settings{Name: "down"})
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	req := func() (int, error) { ran = true; return 0, nil }
	if _, err := cb.Execute(req); err != nil || !ran {
		t.Fatalf("Execute with the store up = %v (ran: %v)", err, ran)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ran = false
	if _, err := cb.Execute(req); !errors.Is(err, gobreaker.ErrNoSharedState) || ran {
		t.Errorf("Execute with the store down = %v (ran: %v); want gobreaker.ErrNoSharedState and no request", err, ran)
	}
}

// BenchmarkDistributedBreakerCall measures one gobreaker
// DistributedCircuitBreaker.Execute through the Store on a single-node
// coordinator: the shared-state read, lock, request (a no-op), state write
// and unlock.
func BenchmarkDistributedBreakerCall(b *testing.B) {
	addr := startCoordinator(b)
	s := newStore(b, newClient(b, addr), gobreakerstore.Config{})
	cb, err := gobreaker.NewDistributedCircuitBreaker[int](s, gobreaker.Settings{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := cb.Execute(func() (int, error) { return 0, nil }); err != nil {
			b.Fatal(err)
		}
	}
}
