package recipe

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/colonymesh/colony/coordinator/client"
)

// TestElection: candidates lead in the order they campaigned; Leader and
// Observe report each leader with its value and token; tokens increase;
// resigning or losing the session hands leadership on.
func TestElection(t *testing.T) {
	addr := startCoordinator(t)
	ctx := testContext(t, 30*time.Second)
	c := newClient(t, addr)
	candidate := func(s *client.Session) *Election {
		e, err := NewElection(c, s, "primary")
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	watcher := candidate(nil)
	if _, err := watcher.Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Leader of an empty election = %v, want ErrNoLeader", err)
	}
	if _, err := watcher.Campaign(ctx, nil); !errors.Is(err, ErrNoSession) {
		t.Errorf("Campaign without a session = %v, want ErrNoSession", err)
	}

	octx, stopObserving := context.WithCancel(ctx)
	observed := watcher.Observe(octx)
	// next returns the next leader Observe reports.
	next := func(what string) Leader {
		t.Helper()
		select {
		case l, ok := <-observed:
			if !ok {
				t.Fatalf("%s: Observe's channel closed", what)
			}
			return l
		case <-ctx.Done():
			t.Fatalf("%s: nothing observed", what)
		}
		return Leader{}
	}
	if l := next("before any candidate"); l.Path != "" {
		t.Errorf("first observation %+v, want no leader", l)
	}

	s1, s2 := openSession(t, c, testTTL), openSession(t, c, testTTL)
	e1, e2 := candidate(s1), candidate(s2)
	g1, err := e1.Campaign(ctx, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if l := next("after the first campaign"); string(l.Value) != "one" || l.Token != g1.Token() || l.Path != g1.Path() {
		t.Errorf("observed %+v, want one with token %d", l, g1.Token())
	}
	if l, err := watcher.Leader(ctx); err != nil || string(l.Value) != "one" || l.Token != g1.Token() {
		t.Errorf("Leader = %+v, %v; want one with token %d", l, err, g1.Token())
	}

	res := make(chan lockResult, 1)
	go func() {
		g, err := e2.Campaign(ctx, []byte("two"))
		res <- lockResult{g, err}
	}()
	waitFor(t, ctx, "the second candidate to watch", e2.k.watching.Load)
	if l, err := watcher.Leader(ctx); err != nil || string(l.Value) != "one" {
		t.Errorf("Leader with a second candidate waiting = %+v, %v; want still one", l, err)
	}
	if e1.Grant() != g1 || e2.Grant() != nil {
		t.Errorf("Grant(): leader %p (want %p), candidate %p (want nil)", e1.Grant(), g1, e2.Grant())
	}

	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.g.Token() <= g1.Token() {
		t.Errorf("second leader's token %d is not above the first's %d", r.g.Token(), g1.Token())
	}
	if l := next("after the first leader resigned"); string(l.Value) != "two" || l.Token != r.g.Token() {
		t.Errorf("observed %+v, want two with token %d", l, r.g.Token())
	}

	// A new candidate on the first session, then the leader's session ends:
	// it leads.
	g3res := make(chan lockResult, 1)
	go func() {
		g, err := e1.Campaign(ctx, []byte("three"))
		g3res <- lockResult{g, err}
	}()
	waitFor(t, ctx, "the third candidate to watch", e1.k.watching.Load)
	if err := s2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	g3 := <-g3res
	if g3.err != nil {
		t.Fatal(g3.err)
	}
	if l := next("after the second leader's session closed"); string(l.Value) != "three" || l.Token <= r.g.Token() {
		t.Errorf("observed %+v, want three with a token above %d", l, r.g.Token())
	}
	<-r.g.Done()
	if !errors.Is(r.g.Err(), ErrLost) {
		t.Errorf("closed leader's grant Err = %v, want ErrLost", r.g.Err())
	}

	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if l := next("after the last leader resigned"); l.Path != "" {
		t.Errorf("observed %+v, want no leader", l)
	}
	if err := e1.Resign(ctx); !errors.Is(err, ErrNotHeld) {
		t.Errorf("second Resign = %v, want ErrNotHeld", err)
	}

	stopObserving()
	for l := range observed {
		t.Errorf("observed %+v after Observe's context ended", l)
	}
}

// TestElectionCampaignCancelled: a candidate that stops campaigning leaves
// no node, so it never becomes leader.
func TestElectionCampaignCancelled(t *testing.T) {
	addr := startCoordinator(t)
	ctx := testContext(t, 20*time.Second)
	c := newClient(t, addr)
	e1, err := NewElection(c, openSession(t, c, testTTL), "cancelled")
	if err != nil {
		t.Fatal(err)
	}
	e2, err := NewElection(c, openSession(t, c, testTTL), "cancelled")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e1.Campaign(ctx, []byte("leader")); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := e2.Campaign(cctx, []byte("quitter")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign past its deadline = %v, want DeadlineExceeded", err)
	}
	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if l, err := e1.Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Errorf("Leader after the leader resigned and the other candidate quit = %+v, %v; want ErrNoLeader", l, err)
	}
}
