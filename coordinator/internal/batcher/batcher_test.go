package batcher

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"
)

// gatedSend is a batch round trip that records each batch and blocks until
// the test releases it, so the test controls what is in flight.
type gatedSend struct {
	mu      sync.Mutex
	batches [][]int
	release chan struct{}
	fail    func(batch []int) error
}

func (g *gatedSend) send(ctx context.Context, reqs []int) ([]string, []error, error) {
	g.mu.Lock()
	g.batches = append(g.batches, append([]int(nil), reqs...))
	g.mu.Unlock()
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if g.fail != nil {
		if err := g.fail(reqs); err != nil {
			return nil, nil, err
		}
	}
	res := make([]string, len(reqs))
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		if r < 0 {
			errs[i] = fmt.Errorf("request %d refused", r)
			continue
		}
		res[i] = fmt.Sprintf("r%d", r)
	}
	return res, errs, nil
}

func (g *gatedSend) sizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n []int
	for _, b := range g.batches {
		n = append(n, len(b))
	}
	return n
}

func newTestBatcher(t *testing.T, g *gatedSend) (*Batcher[int, string], *sync.WaitGroup) {
	var wg sync.WaitGroup
	b := &Batcher[int, string]{
		Send:    g.send,
		GoFunc:  func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() },
		Ctx:     context.Background(),
		Timeout: 5 * time.Second,
	}
	t.Cleanup(wg.Wait)
	return b, &wg
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatcherCoalescesWhileInFlight(t *testing.T) {
	g := &gatedSend{release: make(chan struct{})}
	b, _ := newTestBatcher(t, g)

	type outcome struct {
		req int
		res string
		err error
	}
	out := make(chan outcome, 32)
	call := func(r int) {
		go func() {
			res, err := b.Do(context.Background(), r)
			out <- outcome{r, res, err}
		}()
	}
	// Two lone requests fill both in-flight slots at once.
	call(1)
	waitFor(t, func() bool { return len(g.sizes()) == 1 })
	call(2)
	waitFor(t, func() bool { return len(g.sizes()) == 2 })
	// Everything arriving now waits and goes out as one batch.
	for r := 3; r <= 10; r++ {
		call(r)
	}
	call(-1) // refused by the leader: its caller alone gets the error
	waitFor(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.queue) == 9
	})
	close(g.release)
	got := map[int]outcome{}
	for range 11 {
		o := <-out
		got[o.req] = o
	}
	if sizes := g.sizes(); fmt.Sprint(sizes) != "[1 1 9]" {
		t.Errorf("batch sizes %v, want [1 1 9]: lone requests at once, the rest coalesced", sizes)
	}
	for r := 1; r <= 10; r++ {
		if o := got[r]; o.err != nil || o.res != fmt.Sprintf("r%d", r) {
			t.Errorf("request %d got %q, %v", r, o.res, o.err)
		}
	}
	if o := got[-1]; o.err == nil {
		t.Error("refused request got no error")
	}
}

func TestBatcherBatchFailureReachesEveryCaller(t *testing.T) {
	boom := errors.New("leader unreachable")
	g := &gatedSend{release: make(chan struct{}), fail: func([]int) error { return boom }}
	close(g.release)
	b, _ := newTestBatcher(t, g)
	var wg sync.WaitGroup
	for r := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Do(context.Background(), r); !errors.Is(err, boom) {
				t.Errorf("request %d: %v, want the batch's error", r, err)
			}
		}()
	}
	wg.Wait()
}

func TestBatcherCallerContextEndsFirst(t *testing.T) {
	g := &gatedSend{release: make(chan struct{})}
	b, _ := newTestBatcher(t, g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := b.Do(ctx, 1); done <- err }()
	waitFor(t, func() bool { return len(g.sizes()) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	close(g.release) // the batch still completes and its goroutine ends
}

// TestBatcherBoundsBatchBytes: requests that queue while batches are in
// flight are coalesced only up to maxBytes, and one request larger than that
// still goes out, alone.
func TestBatcherBoundsBatchBytes(t *testing.T) {
	g := &gatedSend{release: make(chan struct{})}
	b, _ := newTestBatcher(t, g)
	b.Size = func(r int) int { return r } // a request's size is its value
	b.MaxBytes = 10

	done := make(chan error, 16)
	call := func(r int) {
		go func() {
			_, err := b.Do(context.Background(), r)
			done <- err
		}()
	}
	call(1)
	waitFor(t, func() bool { return len(g.sizes()) == 1 })
	call(1)
	waitFor(t, func() bool { return len(g.sizes()) == 2 })
	// Both slots are busy: these queue in this order.
	queued := []int{6, 4, 5, 20, 3, 3, 3}
	for i, r := range queued {
		call(r)
		waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == i+1 })
	}
	close(g.release)
	for range 2 + len(queued) {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// The queue is cut in order; the two in-flight slots may send the
	// pieces in either order, so compare them as a set.
	var got []string
	for _, b := range g.batches[2:] {
		got = append(got, fmt.Sprint(b))
	}
	sort.Strings(got)
	want := []string{"[20]", "[3 3 3]", "[5]", "[6 4]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("batches after the first two: %v, want %v (at most 10 bytes each, an oversized request alone)", got, want)
	}
}
