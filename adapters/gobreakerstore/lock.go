package gobreakerstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// tokenLen is the length of the random token in a lock znode's name,
// lock-<token>-<sequence>. The token finds the znode again when the outcome
// of its create is unknown (the ZooKeeper recipe's "protection").
const tokenLen = 16

// relistDelay is the pause before listing a lock directory again after a
// watch ended without an event (its stream broke), so that a failing stream
// does not turn the wait into a busy loop.
const relistDelay = 20 * time.Millisecond

// storeSession is one coordinator session of the Store and a context that
// ends with it.
type storeSession struct {
	s   *client.Session
	ctx context.Context // cancelled when the session ends
}

func (ss *storeSession) alive() bool { return ss.ctx.Err() == nil }

// heldLock is the lock znode of one Lock call.
type heldLock struct {
	sess  *storeSession
	dir   string // the name's lock directory
	token string
	path  string // the znode; empty while its create's outcome is unknown
}

// Lock takes the distributed lock called name, waiting (at most
// Config.LockTimeout) for the holders ahead of it. It excludes every other
// Lock of name, from this Store's other goroutines as well as from other
// Stores. The lock lasts until Unlock, Close, or the loss of the Store's
// session. A Lock that times out returns an error matching
// context.DeadlineExceeded and leaves no znode behind.
func (s *Store) Lock(name string) error {
	dir, err := s.dir(name)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(s.cfg.LockTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	s.cleanOrphans(ctx)
	ss, err := s.session(ctx)
	if err != nil {
		return fmt.Errorf("gobreakerstore: lock %q: %w", name, err)
	}
	// The wait ends with the deadline or with the session.
	lctx, lcancel := context.WithDeadline(ss.ctx, deadline)
	defer lcancel()
	h := &heldLock{sess: ss, dir: dir + "/lock", token: newToken()}
	err = s.acquire(lctx, h)
	switch {
	case err == nil:
		s.mu.Lock()
		s.held[name] = append(s.held[name], h)
		s.mu.Unlock()
		return nil
	case s.closed.Load():
		return fmt.Errorf("gobreakerstore: lock %q: %w", name, ErrClosed)
	case !ss.alive(): // its znode went with it
		return fmt.Errorf("gobreakerstore: lock %q: session %d ended while waiting: %w", name, ss.s.ID(), ss.s.Err())
	}
	s.abandon(h)
	if lctx.Err() != nil {
		return fmt.Errorf("gobreakerstore: lock %q: not acquired within %v: %w", name, s.cfg.LockTimeout, lctx.Err())
	}
	return fmt.Errorf("gobreakerstore: lock %q: %w", name, err)
}

// acquire creates h's znode and waits until it is the lowest in h.dir.
func (s *Store) acquire(ctx context.Context, h *heldLock) error {
	prefix := h.dir + "/lock-" + h.token + "-"
	opts := []client.CreateOption{client.Ephemeral(h.sess.s.ID()), client.Sequential()}
	p, _, err := s.c.Create(ctx, prefix, nil, opts...)
	if errors.Is(err, client.ErrNoNode) {
		if err := s.ensure(ctx, h.dir); err != nil {
			return err
		}
		p, _, err = s.c.Create(ctx, prefix, nil, opts...)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", prefix, err)
	}
	h.path = p
	mine := p[len(h.dir)+1:]
	for {
		var hdr *colonyv1.ResponseHeader
		names, _, err := s.c.Children(ctx, h.dir, client.WithHeader(&hdr))
		if err != nil {
			return fmt.Errorf("list %s: %w", h.dir, err)
		}
		pred, ok := predecessor(names, mine)
		if !ok {
			return fmt.Errorf("%s disappeared while waiting (its session expired, or it was deleted)", p)
		}
		if pred == "" {
			return nil
		}
		if err := s.waitGone(ctx, h.dir+"/"+pred, hdr.GetZxid()); err != nil {
			return err
		}
	}
}

// waitGone waits for the next change of the znode at p after the zxid after
// (for a lock znode: its delete). It also returns nil when the watch could
// not tell, and the caller then lists again.
func (s *Store) waitGone(ctx context.Context, p string, after uint64) error {
	w, err := s.c.Watch(ctx, p, colonyv1.WatchKind_WATCH_KIND_EXISTS, client.AfterZxid(after))
	if errors.Is(err, client.ErrResync) { // history trimmed: list again
		return nil
	}
	if err != nil {
		return fmt.Errorf("watch %s: %w", p, err)
	}
	defer w.Close()
	if _, err := w.Next(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("wait for %s: %w", p, err)
		}
		// The stream broke before the event: list again, after a pause.
		t := time.NewTimer(relistDelay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", p, context.Cause(ctx))
		case <-t.C:
		}
	}
	return nil
}

// predecessor returns the lock znode just below mine in names (by sequence
// number), "" if mine is the lowest, and ok=false if mine is not there.
// Names that are not lock znodes are ignored.
func predecessor(names []string, mine string) (pred string, ok bool) {
	seq, valid := sequence(mine)
	if !valid {
		return "", false
	}
	var best uint64
	for _, n := range names {
		if n == mine {
			ok = true
			continue
		}
		if q, valid := sequence(n); valid && q < seq && (pred == "" || q > best) {
			pred, best = n, q
		}
	}
	return pred, ok
}

// sequence returns the sequence number of a lock znode's name,
// lock-<token>-<sequence>.
func sequence(name string) (uint64, bool) {
	if !strings.HasPrefix(name, "lock-") {
		return 0, false
	}
	i := strings.LastIndexByte(name, '-')
	q, err := strconv.ParseUint(name[i+1:], 10, 64)
	return q, err == nil
}

// Unlock releases the lock called name that this Store holds. If the lock
// was lost while held (the session ended, or its znode was deleted), Unlock
// returns an error matching ErrLockLost: another caller may have held the
// lock meanwhile. Unlock of a name that is not held is ErrNotLocked.
//
// Unlock takes a name, not a holder, as gobreaker's interface does: like
// sync.Mutex, any goroutine may unlock a lock another one took. When one
// name has both a lost lock and a live one (the session was lost and a new
// holder took the lock on a new session), Unlock reports the lost one first.
func (s *Store) Unlock(name string) error {
	s.mu.Lock()
	h := s.popHeld(name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("gobreakerstore: unlock %q: %w", name, ErrNotLocked)
	}
	if !h.sess.alive() {
		return fmt.Errorf("gobreakerstore: unlock %q: %w: session %d ended: %w", name, ErrLockLost, h.sess.s.ID(), h.sess.s.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	err := s.c.Delete(ctx, h.path, client.AnyVersion)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, client.ErrNoNode):
		return fmt.Errorf("gobreakerstore: unlock %q: %w: %s was deleted while held (its session expired?)", name, ErrLockLost, h.path)
	}
	// Its znode may still be there, holding up every other caller: the next
	// Lock (or the session's end) removes it.
	s.addOrphan(h)
	return fmt.Errorf("gobreakerstore: unlock %q: delete %s: %w", name, h.path, err)
}

// popHeld removes and returns a lock held for name, a lost one first, or nil.
// s.mu must be held.
func (s *Store) popHeld(name string) *heldLock {
	hs := s.held[name]
	if len(hs) == 0 {
		return nil
	}
	i := 0
	for j, h := range hs {
		if !h.sess.alive() {
			i = j
			break
		}
	}
	h := hs[i]
	hs = append(hs[:i], hs[i+1:]...)
	if len(hs) == 0 {
		delete(s.held, name)
	} else {
		s.held[name] = hs
	}
	return h
}

// abandon removes the znode of a Lock that failed, or leaves it to the next
// Lock if that fails too.
func (s *Store) abandon(h *heldLock) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	if err := s.removeNode(ctx, h); err != nil {
		s.log.Debug("gobreakerstore: could not remove an abandoned lock znode; will retry", "dir", h.dir, "token", h.token, "err", err)
		s.addOrphan(h)
	}
}

func (s *Store) addOrphan(h *heldLock) {
	s.mu.Lock()
	s.orphans = append(s.orphans, h)
	s.mu.Unlock()
}

// cleanOrphans tries again to remove the lock znodes that failed deletes
// left behind, as long as their session lives (its end removes them).
func (s *Store) cleanOrphans(ctx context.Context) {
	s.mu.Lock()
	orphans := s.orphans
	s.orphans = nil
	s.mu.Unlock()
	for _, h := range orphans {
		if h.sess.alive() && s.removeNode(ctx, h) != nil {
			s.addOrphan(h)
		}
	}
}

// removeNode deletes h's znode; if its path is unknown, it finds it by token.
func (s *Store) removeNode(ctx context.Context, h *heldLock) error {
	paths := []string{h.path}
	if h.path == "" {
		names, _, err := s.c.Children(ctx, h.dir)
		if errors.Is(err, client.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		paths = paths[:0]
		for _, n := range names {
			if strings.HasPrefix(n, "lock-"+h.token+"-") {
				paths = append(paths, h.dir+"/"+n)
			}
		}
	}
	for _, p := range paths {
		if err := s.c.Delete(ctx, p, client.AnyVersion); err != nil && !errors.Is(err, client.ErrNoNode) {
			return err
		}
	}
	return nil
}

// session returns the Store's session, opening one if there is none or it
// was lost.
func (s *Store) session(ctx context.Context) (*storeSession, error) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if s.sess != nil && s.sess.alive() {
		return s.sess, nil
	}
	cs, err := s.c.OpenSession(ctx, s.cfg.SessionTTL, s.cfg.SessionName)
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	ss := &storeSession{s: cs, ctx: sctx}
	s.sess = ss
	s.log.Debug("gobreakerstore: session opened", "session", cs.ID(), "ttl", cs.TTL())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-cs.Done()
		cancel()
		if !s.closed.Load() {
			s.log.Warn("gobreakerstore: session lost; its locks are released", "session", cs.ID(), "err", cs.Err())
		}
		// The client gives a session up when it cannot keep it alive; the
		// coordinator may still have it, and its locks, until its TTL runs
		// out. Closing it releases them now if the coordinator is reachable.
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		_ = cs.Close(ctx)
	}()
	return ss, nil
}

func newToken() string {
	var b [tokenLen / 2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}
