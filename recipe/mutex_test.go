package recipe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/colonymesh/colony/coordinator/client"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // substring; empty: valid
	}{
		{"deploy", ""},
		{"billing.cron_v2-eu", ""},
		{string(make([]byte, 0)), "empty"},
		{"a/b", `byte 1 ('/')`},
		{"with space", `byte 4 (' ')`},
		{"é", "byte 0"},
		{".", "not allowed"},
		{"..", "not allowed"},
		{fmt.Sprintf("%0129d", 0), "129 bytes exceeds the limit of 128"},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.name), func(t *testing.T) {
			_, err := NewMutex(nil, nil, tt.name)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewMutex(%q) = %v, want no error", tt.name, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewMutex(%q) = %v, want ErrInvalidName mentioning %q", tt.name, err, tt.wantErr)
			}
		})
	}
	if _, err := NewElection(nil, nil, "a b"); !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), "election name") {
		t.Errorf("NewElection with a bad name = %v, want ErrInvalidName naming the election", err)
	}
}

// TestBlocker: the node each contender waits for, as in ZooKeeper's lock
// and read-write lock recipes.
func TestBlocker(t *testing.T) {
	const id = "0123456789abcdef"
	node := func(kind string, seq int) member {
		m, ok := parseMember(fmt.Sprintf("%s%s-%010d", kind, id, seq))
		if !ok {
			t.Fatalf("parseMember of a %s node failed", kind)
		}
		return m
	}
	w1, r2, r3, w4, r5 := node(kindExclusive, 1), node(kindShared, 2), node(kindShared, 3), node(kindExclusive, 4), node(kindShared, 5)
	all := []member{r5, w1, r3, w4, r2} // any order
	tests := []struct {
		name string
		me   member
		want string // "" holds
	}{
		{"first exclusive holds", w1, ""},
		{"shared waits for the exclusive below it", r2, w1.name},
		{"shared skips shared nodes", r3, w1.name},
		{"exclusive waits for the next node below, shared or not", w4, r3.name},
		{"shared after an exclusive waits for it", r5, w4.name},
	}
	k := &contender{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, blocked := k.blocker(tt.me, all)
			if tt.want == "" && blocked {
				t.Fatalf("blocked by %s, want to hold", got.name)
			}
			if tt.want != "" && got.name != tt.want {
				t.Fatalf("blocked by %q (blocked=%v), want %s", got.name, blocked, tt.want)
			}
		})
	}
	// Without the exclusive nodes, every shared node holds.
	for _, me := range []member{r2, r3, r5} {
		if got, blocked := k.blocker(me, []member{r2, r3, r5}); blocked {
			t.Errorf("%s blocked by %s among shared nodes only", me.name, got.name)
		}
	}
}

func TestParseMember(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
		seq  uint64
	}{
		{"lock-0123456789abcdef-0000000042", true, 42},
		{"read-0123456789abcdef-12345678901", true, 12345678901},
		{"cand-0123456789abcdef-0000000000", true, 0},
		{"lock-0123456789abcdef-42", false, 0},          // not a sequence suffix
		{"lock-0123-0000000042", false, 0},              // short id
		{"other-0123456789abcdef-0000000001", false, 0}, // unknown kind
		{"lock-0123456789abcdef", false, 0},
		{"lock-0123456789abcdef-00000000x1", false, 0},
	} {
		m, ok := parseMember(tt.name)
		if ok != tt.ok || ok && m.seq != tt.seq {
			t.Errorf("parseMember(%q) = %+v, %v; want ok=%v seq=%d", tt.name, m, ok, tt.ok, tt.seq)
		}
	}
}

// TestMutualExclusion: contenders on several clients and sessions increment
// counters only while holding the lock. No two ever hold at once, no
// increment is lost, and every grant's token is greater than the previous
// one's.
func TestMutualExclusion(t *testing.T) {
	addr := startCoordinator(t)
	ctx := testContext(t, 60*time.Second)
	const (
		clients    = 3
		contenders = 8
		rounds     = 5
	)
	var cs []*client.Client
	for range clients {
		cs = append(cs, newClient(t, addr))
	}
	// The shared resources: a znode written only through guarded writes, and
	// in-memory state read and written back non-atomically.
	if _, _, err := cs[0].Create(ctx, "/counter", []byte("0")); err != nil {
		t.Fatal(err)
	}
	var (
		holders atomic.Int32
		local   atomic.Int64
		mu      sync.Mutex
		tokens  []Token
		wg      sync.WaitGroup
		errs    = make(chan error, contenders)
	)
	for i := range contenders {
		c := cs[i%clients]
		m := testMutex(t, c, openSession(t, c, testTTL), "contended")
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				for range rounds {
					g, err := m.Lock(ctx)
					if err != nil {
						return err
					}
					if n := holders.Add(1); n != 1 {
						return fmt.Errorf("%d holders at once", n)
					}
					mu.Lock()
					tokens = append(tokens, g.Token())
					mu.Unlock()
					v := local.Load()
					data, _, err := c.Get(ctx, "/counter")
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(string(data))
					time.Sleep(time.Millisecond)
					local.Store(v + 1)
					// Any version: only the lock keeps writers apart.
					if _, err := g.Multi(ctx, client.SetOp("/counter", []byte(strconv.Itoa(n+1)), client.AnyVersion)); err != nil {
						return err
					}
					holders.Add(-1)
					if err := m.Unlock(ctx); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	data, _, err := cs[0].Get(ctx, "/counter")
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(contenders * rounds); string(data) != want || local.Load() != contenders*rounds {
		t.Errorf("counters: znode %s, local %d; want %s", data, local.Load(), want)
	}
	if len(tokens) != contenders*rounds {
		t.Errorf("%d grants, want %d", len(tokens), contenders*rounds)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Errorf("grant %d has token %d, not above the previous grant's %d", i, tokens[i], tokens[i-1])
		}
	}
	if left := children(t, ctx, cs[0], locksDir+"/contended"); len(left) != 0 {
		t.Errorf("lock nodes left after every Unlock: %v", left)
	}
}

// TestNoHerd: with a holder and a queue of waiters, each release wakes only
// the next waiter: every waiter gets exactly one watch event, the one that
// makes it the holder.
func TestNoHerd(t *testing.T) {
	addr := startCoordinator(t)
	ctx := testContext(t, 30*time.Second)
	c := newClient(t, addr)
	const waiters = 6

	holder := testMutex(t, c, openSession(t, c, testTTL), "herd")
	if _, err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	var (
		ms      []*Mutex
		results []<-chan lockResult
	)
	for i := range waiters {
		wc := newClient(t, addr)
		m := testMutex(t, wc, openSession(t, wc, testTTL), "herd")
		ms = append(ms, m)
		results = append(results, lockAsync(ctx, m))
		// Queue them in order: each is watching before the next asks.
		waitFor(t, ctx, fmt.Sprintf("waiter %d to watch", i), m.k.watching.Load)
	}
	wakeups := func() []int64 {
		var out []int64
		for _, m := range ms {
			out = append(out, m.k.wakeups.Load())
		}
		return out
	}
	if got := wakeups(); slices.Max(got) != 0 {
		t.Fatalf("wakeups before any release: %v", got)
	}

	prev := holder
	var lastToken Token
	for i, m := range ms {
		if err := prev.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		r := <-results[i]
		if r.err != nil {
			t.Fatalf("waiter %d: %v", i, r.err)
		}
		if r.g.Token() <= lastToken {
			t.Errorf("waiter %d's token %d is not above the previous holder's %d", i, r.g.Token(), lastToken)
		}
		lastToken = r.g.Token()
		// Exactly the waiters up to this one have been woken, once each.
		got := wakeups()
		for j, n := range got {
			if want := int64(min(1, max(0, i-j+1))); n != want {
				t.Errorf("after release %d: waiter %d woken %d times, want %d (all: %v)", i, j, n, want, got)
			}
		}
		for j := i + 1; j < waiters; j++ {
			if !ms[j].k.watching.Load() {
				t.Errorf("after release %d: waiter %d is not waiting", i, j)
			}
		}
		prev = m
	}
	if err := prev.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTryLock: TryLock fails at once while another holds (or waits ahead),
// leaving no node behind, and succeeds once the lock is free.
func TestTryLock(t *testing.T) {
	addr := startCoordinator(t)
	ctx := testContext(t, 20*time.Second)
	c := newClient(t, addr)
	a := testMutex(t, c, openSession(t, c, testTTL), "try")
	b := testMutex(t, c, openSession(t, c, testTTL), "try")

	ga, err := a.TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock of a free lock: %v", err)
	}
	if _, err := b.TryLock(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("TryLock of a held lock = %v, want ErrLocked", err)
	}
	if got := children(t, ctx, c, locksDir+"/try"); !slices.Equal(got, []string{ga.Path()[len(locksDir+"/try/"):]}) {
		t.Errorf("nodes after a failed TryLock: %v, want only the holder's", got)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	gb, err := b.TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock after the holder unlocked: %v", err)
	}
	if gb.Token() <= ga.Token() {
		t.Errorf("token %d after %d", gb.Token(), ga.Token())
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLockCancelled: a Lock whose context ends while it waits returns the
// context's error and leaves no node behind, so the next waiter is not held
// up by it.
func TestLockCancelled(t *testing.T) {
	addr := startCoordinator(t)
	ctx := testContext(t, 20*time.Second)
	c := newClient(t, addr)
	holder := testMutex(t, c, openSession(t, c, testTTL), "cancel")
	g, err := holder.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("cancel", func(t *testing.T) {
		w := testMutex(t, c, openSession(t, c, testTTL), "cancel")
		wctx, cancel := context.WithCancel(ctx)
		res := lockAsync(wctx, w)
		waitFor(t, ctx, "the waiter to watch", w.k.watching.Load)
		cancel()
		r := <-res
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Lock after cancel = %v, want context.Canceled", r.err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		w := testMutex(t, c, openSession(t, c, testTTL), "cancel")
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := w.Lock(wctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock past its deadline = %v, want context.DeadlineExceeded", err)
		}
		// The Mutex can try again.
		if _, err := w.TryLock(ctx); !errors.Is(err, ErrLocked) {
			t.Fatalf("TryLock after a timed-out Lock = %v, want ErrLocked", err)
		}
	})
	t.Run("session ends", func(t *testing.T) {
		s := openSession(t, c, testTTL)
		w := testMutex(t, c, s, "cancel")
		res := lockAsync(ctx, w)
		waitFor(t, ctx, "the waiter to watch", w.k.watching.Load)
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		r := <-res
		if !errors.Is(r.err, client.ErrClosed) {
			t.Fatalf("Lock after its session closed = %v, want client.ErrClosed", r.err)
		}
	})
	if got, want := children(t, ctx, c, locksDir+"/cancel"), []string{g.Path()[len(locksDir+"/cancel/"):]}; !slices.Equal(got, want) {
		t.Errorf("nodes after cancelled waits: %v, want only the holder's %v", got, want)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLockPassesOnSessionEnd: when a holder's session ends without Unlock,
// the lock passes to the next waiter, with a greater token, and the old
// holder's guarded writes are rejected.
func TestLockPassesOnSessionEnd(t *testing.T) {
	addr := startCoordinator(t)
	ctx := testContext(t, 30*time.Second)
	observer := newClient(t, addr)
	if _, _, err := observer.Create(ctx, "/resource", []byte("initial")); err != nil {
		t.Fatal(err)
	}

	// holdAndQueue makes a holder on its own client and a waiter behind it.
	holdAndQueue := func(t *testing.T, name string) (*client.Client, *client.Session, *Mutex, *Grant, *Mutex, <-chan lockResult) {
		c := newClient(t, addr)
		s := openSession(t, c, testTTL)
		old := testMutex(t, c, s, name)
		g, err := old.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Multi(ctx, client.SetOp("/resource", []byte("by the old holder"), client.AnyVersion)); err != nil {
			t.Fatalf("guarded write while holding: %v", err)
		}
		wc := newClient(t, addr)
		next := testMutex(t, wc, openSession(t, wc, testTTL), name)
		res := lockAsync(ctx, next)
		waitFor(t, ctx, "the next contender to watch", next.k.watching.Load)
		return c, s, old, g, next, res
	}

	t.Run("closed by the coordinator", func(t *testing.T) {
		// As when the coordinator expires it: the holder's client keeps
		// running and learns of it only afterwards.
		_, s, old, g, next, res := holdAndQueue(t, "expire")
		if err := observer.CloseSession(ctx, s.ID()); err != nil {
			t.Fatal(err)
		}
		r := <-res
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.g.Token() <= g.Token() {
			t.Errorf("next holder's token %d is not above the old holder's %d", r.g.Token(), g.Token())
		}
		// The old holder writes, unaware: rejected.
		_, err := g.Multi(ctx, client.SetOp("/resource", []byte("stale"), client.AnyVersion))
		if !errors.Is(err, ErrNotHeld) {
			t.Errorf("guarded write by the old holder = %v, want ErrNotHeld", err)
		}
		if data, _, _ := observer.Get(ctx, "/resource"); string(data) == "stale" {
			t.Error("the old holder's guarded write was applied")
		}
		// And it learns that it lost the lock.
		select {
		case <-g.Done():
		case <-ctx.Done():
			t.Fatal("the old grant's Done was not closed after its session ended")
		}
		if !errors.Is(g.Err(), ErrLost) || !errors.Is(g.Err(), client.ErrSessionExpired) {
			t.Errorf("old grant's Err = %v, want ErrLost and client.ErrSessionExpired", g.Err())
		}
		if err := old.Unlock(ctx); !errors.Is(err, ErrLost) {
			t.Errorf("Unlock of a lost lock = %v, want ErrLost", err)
		}
		if _, err := r.g.Multi(ctx, client.SetOp("/resource", []byte("by the next holder"), client.AnyVersion)); err != nil {
			t.Errorf("guarded write by the next holder: %v", err)
		}
		if err := next.Unlock(ctx); err != nil {
			t.Error(err)
		}
	})

	t.Run("expires after the holder stops", func(t *testing.T) {
		// The holder's client stops keeping the session alive (here: it is
		// closed, without closing the session); the coordinator expires the
		// session a TTL after the last keep-alive, not before.
		c, s, _, g, next, res := holdAndQueue(t, "stop")
		ttl := s.TTL()
		stopped := time.Now()
		c.Close()
		r := <-res
		if r.err != nil {
			t.Fatal(r.err)
		}
		// Keep-alives go every TTL/3, so the last acknowledged one was sent
		// at most TTL/3 (plus a round trip) before the stop.
		if waited := time.Since(stopped); waited < ttl/2 {
			t.Errorf("the lock passed %v after the holder stopped, before its session's TTL of %v could have run out", waited, ttl)
		}
		if r.g.Token() <= g.Token() {
			t.Errorf("next holder's token %d is not above the old holder's %d", r.g.Token(), g.Token())
		}
		if _, err := GuardedMulti(ctx, observer, g.Path(), client.SetOp("/resource", []byte("stale"), client.AnyVersion)); !errors.Is(err, ErrNotHeld) || !errors.Is(err, client.ErrNoNode) {
			t.Errorf("guarded write with the old holder's lock path = %v, want ErrNotHeld", err)
		}
		if err := next.Unlock(ctx); err != nil {
			t.Error(err)
		}
	})
}

// TestGrantState: Busy, NotHeld and a grant's life.
func TestGrantState(t *testing.T) {
	addr := startCoordinator(t)
	ctx := testContext(t, 20*time.Second)
	c := newClient(t, addr)
	s := openSession(t, c, testTTL)
	m := testMutex(t, c, s, "state")

	if err := m.Unlock(ctx); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Unlock without Lock = %v, want ErrNotHeld", err)
	}
	if m.Grant() != nil {
		t.Error("Grant() before Lock is not nil")
	}
	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Grant() != g || g.Err() != nil {
		t.Errorf("Grant() = %p, Err %v; want the held grant %p, nil", m.Grant(), g.Err(), g)
	}
	if _, err := m.Lock(ctx); !errors.Is(err, ErrBusy) {
		t.Errorf("second Lock = %v, want ErrBusy", err)
	}
	tok, err := ParseToken(g.Token().String())
	if err != nil || tok != g.Token() {
		t.Errorf("ParseToken(%q) = %d, %v", g.Token().String(), tok, err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.Done():
	default:
		t.Fatal("Done not closed after Unlock")
	}
	if !errors.Is(g.Err(), ErrReleased) {
		t.Errorf("Err after Unlock = %v, want ErrReleased", g.Err())
	}
	if _, err := GuardedMulti(ctx, c, g.Path(), client.CreateOp("/after-unlock", nil)); !errors.Is(err, ErrNotHeld) {
		t.Errorf("guarded write after Unlock = %v, want ErrNotHeld", err)
	}
	if observeOnly, err := NewMutex(c, nil, "state"); err != nil {
		t.Fatal(err)
	} else if _, err := observeOnly.Lock(ctx); !errors.Is(err, ErrNoSession) {
		t.Errorf("Lock without a session = %v, want ErrNoSession", err)
	}

	// A grant ends when its session is closed.
	g, err = m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-g.Done()
	if !errors.Is(g.Err(), ErrLost) || !errors.Is(g.Err(), client.ErrClosed) {
		t.Errorf("Err after the session closed = %v, want ErrLost and client.ErrClosed", g.Err())
	}
	if err := m.Unlock(ctx); !errors.Is(err, ErrLost) {
		t.Errorf("Unlock after the session closed = %v, want ErrLost", err)
	}
	if _, err := m.Lock(ctx); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Lock on a closed session = %v, want client.ErrClosed", err)
	}
}

// TestOwnNodeFoundByID: the node of an attempt whose create's outcome was
// unknown is found by its id, and removed when the attempt is abandoned.
func TestOwnNodeFoundByID(t *testing.T) {
	addr := startCoordinator(t)
	ctx := testContext(t, 20*time.Second)
	c := newClient(t, addr)
	s := openSession(t, c, testTTL)
	m := testMutex(t, c, s, "protected")
	if err := m.k.ensureDir(ctx); err != nil {
		t.Fatal(err)
	}
	id := newID()
	// The create went through, but its reply was lost.
	p, _, err := c.Create(ctx, m.k.dir+"/"+kindExclusive+id+"-", nil, client.Ephemeral(s.ID()), client.Sequential())
	if err != nil {
		t.Fatal(err)
	}
	got, st, found, err := m.k.findOwn(ctx, id)
	if err != nil || !found || got != p || st.GetEphemeralOwner() != s.ID() {
		t.Fatalf("findOwn = %q, %v, %v, %v; want %q", got, st, found, err, p)
	}
	if _, _, found, _ := m.k.findOwn(ctx, newID()); found {
		t.Error("findOwn found a node for an id nobody used")
	}
	m.k.abandon(ctx, id)
	if left := children(t, ctx, c, m.k.dir); len(left) != 0 {
		t.Errorf("nodes after abandon: %v", left)
	}
}

// TestSharedMutex: shared holders hold together, an exclusive one waits for
// them, and a shared one that asks after it waits for it.
func TestSharedMutex(t *testing.T) {
	addr := startCoordinator(t)
	ctx := testContext(t, 20*time.Second)
	c := newClient(t, addr)
	shared := func() *Mutex {
		m, err := NewSharedMutex(c, openSession(t, c, testTTL), "rw")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	r1, r2 := shared(), shared()
	g1, err := r1.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := r2.TryLock(ctx)
	if err != nil {
		t.Fatalf("second shared holder: %v", err)
	}
	w := testMutex(t, c, openSession(t, c, testTTL), "rw")
	if _, err := w.TryLock(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive TryLock while shared holders hold = %v, want ErrLocked", err)
	}
	wres := lockAsync(ctx, w)
	waitFor(t, ctx, "the exclusive waiter to watch", w.k.watching.Load)
	r3 := shared()
	r3res := lockAsync(ctx, r3)
	waitFor(t, ctx, "the shared waiter to watch", r3.k.watching.Load)

	if err := r2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wr := <-wres
	if wr.err != nil {
		t.Fatal(wr.err)
	}
	if wr.g.Token() <= max(g1.Token(), g2.Token()) {
		t.Errorf("exclusive token %d not above the shared ones %d, %d", wr.g.Token(), g1.Token(), g2.Token())
	}
	select {
	case r := <-r3res:
		t.Fatalf("shared waiter got %v while the exclusive holder holds", r)
	case <-time.After(50 * time.Millisecond):
	}
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-r3res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.g.Token() <= wr.g.Token() {
		t.Errorf("shared token %d after exclusive %d", r.g.Token(), wr.g.Token())
	}
	if err := r3.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFence(t *testing.T) {
	var f Fence
	for _, step := range []struct {
		tok  Token
		want error
	}{
		{5, nil},
		{5, nil}, // the same holder again
		{9, nil},
		{7, ErrStaleToken},
		{9, nil},
		{10, nil},
	} {
		if err := f.Admit(step.tok); !errors.Is(err, step.want) || (step.want == nil && err != nil) {
			t.Errorf("Admit(%d) = %v, want %v", step.tok, err, step.want)
		}
	}
	if f.Highest() != 10 {
		t.Errorf("Highest = %d, want 10", f.Highest())
	}
	for _, s := range []string{"", "0", "-1", "x", "1.5"} {
		if _, err := ParseToken(s); err == nil {
			t.Errorf("ParseToken(%q) succeeded", s)
		}
	}
}
