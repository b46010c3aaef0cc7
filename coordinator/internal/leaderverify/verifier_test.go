package leaderverify

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// gatedRaft answers each VerifyLeader round once the test releases it.
type gatedRaft struct {
	rounds  atomic.Int32
	started chan struct{}
	release chan error
}

type future struct{ err error }

func (f future) Error() error { return f.err }

func (g *gatedRaft) VerifyLeader() raft.Future {
	g.rounds.Add(1)
	g.started <- struct{}{}
	return future{<-g.release}
}

// Callers that arrive while a round runs share the next round, and every
// caller gets the error of a round that started after it arrived.
func TestVerifierCoalescesRounds(t *testing.T) {
	g := &gatedRaft{started: make(chan struct{}), release: make(chan error)}
	var wg sync.WaitGroup
	v := New(g, &wg)

	first := make(chan error, 1)
	go func() { first <- v.Verify(context.Background()) }()
	<-g.started // round 1 runs

	lost := errors.New("leadership lost")
	const waiting = 10
	errs := make(chan error, waiting)
	for range waiting {
		go func() { errs <- v.Verify(context.Background()) }()
	}
	// Round 1 answers only the first caller: the others arrived after it
	// started, so they get the error of a later round, which they share.
	for {
		v.mu.Lock()
		queued := v.next != nil
		v.mu.Unlock()
		if queued {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the other callers queue too
	g.release <- nil
	if err := <-first; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	served := make(chan struct{})
	go func() { // later rounds fail
		defer close(served)
		for range g.started {
			g.release <- lost
		}
	}()
	for range waiting {
		if err := <-errs; !errors.Is(err, lost) {
			t.Errorf("caller that arrived during round 1: %v, want %v", err, lost)
		}
	}
	wg.Wait()
	close(g.started)
	<-served
	// Usually 2; never one per caller.
	if n := g.rounds.Load(); n >= waiting+1 {
		t.Errorf("%d rounds for %d callers: not coalesced", n, waiting+1)
	}
}

// A caller whose context ends stops waiting; the round still finishes.
func TestVerifierCallerContextEnds(t *testing.T) {
	g := &gatedRaft{started: make(chan struct{}), release: make(chan error)}
	var wg sync.WaitGroup
	v := New(g, &wg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Verify(ctx) }()
	<-g.started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify = %v, want context.Canceled", err)
	}
	g.release <- nil
	wg.Wait()
}
