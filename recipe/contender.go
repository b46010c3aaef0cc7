package recipe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

const (
	// cleanupTimeout bounds the delete of a node left by an attempt that
	// failed or was cancelled, after the caller's context has ended.
	cleanupTimeout = 5 * time.Second
	// relistDelay is the pause before listing again after a watch ended
	// without an event (its stream broke), so that a failing stream does not
	// turn the wait into a busy loop.
	relistDelay = 20 * time.Millisecond
	// createAttempts bounds the creates that find the directory missing (the
	// coordinator reaps an empty container between our ensure and create).
	createAttempts = 5
)

// contender is one participant of a recipe in one directory: it creates its
// node, waits for the nodes it must wait for, and holds at most one grant.
// Mutex and Election are contenders.
type contender struct {
	c    *client.Client
	s    *client.Session // nil: this contender can only observe
	dir  string          // e.g. /colony/locks/<name>
	kind string          // the kind of node it creates
	// kinds are the node kinds that take part in dir; others are ignored.
	kinds []string

	mu    sync.Mutex
	busy  bool   // acquiring, or holding grant
	grant *Grant // the current grant, or nil

	// For tests: watch events that woke a wait, and whether a wait is
	// watching its predecessor now.
	wakeups  atomic.Int64
	watching atomic.Bool
}

// blocker returns the node that me must wait for among ms (the nearest one
// below it that excludes it), or ok=false if me holds.
func (k *contender) blocker(me member, ms []member) (m member, ok bool) {
	for _, o := range ms {
		if o.seq >= me.seq {
			continue
		}
		// A shared holder is excluded by exclusive holders only; an
		// exclusive holder (or a candidate) by everyone before it.
		if me.kind == kindShared && o.kind != kindExclusive {
			continue
		}
		if !ok || o.seq > m.seq {
			m, ok = o, true
		}
	}
	return m, ok
}

// members lists dir and returns its recipe nodes and the zxid of the read.
// A missing dir has no members. The read is linearizable unless
// afterOwnCreate is set: a contender whose node exists (its create's zxid,
// and any watch event since, are in the client's session) only asks whether
// a node below its own remains, and that answer can only change from yes to
// no, since sequence numbers grow and the directory is not reaped while its
// node is in it. So any state at or after what the client has seen answers
// it, and a session-consistent read (any node, no read index on the leader)
// suffices. The fencing token and guarded writes, not this read, are what
// protect the holder's writes.
func (k *contender) members(ctx context.Context, afterOwnCreate bool) ([]member, uint64, error) {
	var hdr *colonyv1.ResponseHeader
	opts := []client.ReadOption{client.WithHeader(&hdr)}
	if afterOwnCreate {
		opts = append(opts, client.WithSessionConsistency())
	}
	names, _, err := k.c.Children(ctx, k.dir, opts...)
	if errors.Is(err, client.ErrNoNode) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", k.dir, err)
	}
	var out []member
	for _, m := range parseMembers(names) {
		for _, kind := range k.kinds {
			if m.kind == kind {
				out = append(out, m)
			}
		}
	}
	return out, hdr.GetZxid(), nil
}

// acquire creates this contender's node with data and waits until it holds
// (wait=false: gives up with ErrLocked if it does not hold at once). On any
// failure it removes the node it created, even after ctx ended.
func (k *contender) acquire(ctx context.Context, data []byte, wait bool) (*Grant, error) {
	if k.s == nil {
		return nil, ErrNoSession
	}
	k.mu.Lock()
	if k.busy {
		k.mu.Unlock()
		return nil, ErrBusy
	}
	k.busy = true
	k.mu.Unlock()

	g, err := k.tryAcquire(ctx, data, wait)

	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.busy = false
		return nil, err
	}
	k.grant = g
	return g, nil
}

func (k *contender) tryAcquire(ctx context.Context, data []byte, wait bool) (*Grant, error) {
	// The attempt ends with the caller's context or with the session: a node
	// of a session that ended is gone, and so is any hope of holding.
	actx, stop := sessionContext(ctx, k.s)
	defer stop()
	id := newID()
	g, err := k.attempt(actx, id, data, wait)
	if err == nil {
		return g, nil
	}
	k.abandon(ctx, id)
	if k.s.Err() != nil {
		return nil, fmt.Errorf("recipe: session %#x ended while acquiring: %w", k.s.ID(), k.s.Err())
	}
	if ctx.Err() != nil && !errors.Is(err, context.Cause(ctx)) {
		return nil, fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	return nil, err
}

// attempt creates the node with id and waits until it holds.
func (k *contender) attempt(ctx context.Context, id string, data []byte, wait bool) (*Grant, error) {
	path, stat, err := k.create(ctx, id, data)
	if err != nil {
		return nil, err
	}
	mine := path[len(k.dir)+1:]
	me, _ := parseMember(mine)
	for {
		ms, zxid, err := k.members(ctx, true)
		if err != nil {
			return nil, err
		}
		found := false
		for _, m := range ms {
			found = found || m.name == mine
		}
		if !found {
			return nil, fmt.Errorf("%w: %s was deleted while waiting", ErrLost, path)
		}
		pred, blocked := k.blocker(me, ms)
		if !blocked {
			return newGrant(k.c, k.s, path, Token(stat.GetCzxid())), nil
		}
		if !wait {
			return nil, ErrLocked
		}
		if err := k.waitChange(ctx, k.dir+"/"+pred.name, zxid); err != nil {
			return nil, err
		}
	}
}

// create creates the ephemeral sequential node <dir>/<kind><id>-<seq>. When
// the outcome of a create is unknown (its reply was lost and the client gave
// up), it looks for its node by id before creating another.
func (k *contender) create(ctx context.Context, id string, data []byte) (string, *colonyv1.Stat, error) {
	base := k.dir + "/" + k.kind + id + "-"
	opts := []client.CreateOption{client.Ephemeral(k.s.ID()), client.Sequential()}
	missing := 0
	for {
		p, st, err := k.c.Create(ctx, base, data, opts...)
		switch {
		case err == nil:
			return p, st, nil
		case errors.Is(err, client.ErrNoNode) && missing < createAttempts:
			// The directory does not exist (yet, or any more: an empty
			// container is reaped).
			missing++
			if err := k.ensureDir(ctx); err != nil {
				return "", nil, err
			}
			continue
		case ctx.Err() != nil || isDefinite(err):
			return "", nil, fmt.Errorf("create %s: %w", base, err)
		}
		// The create may or may not have been applied.
		p, st, found, ferr := k.findOwn(ctx, id)
		if ferr != nil {
			return "", nil, fmt.Errorf("create %s: %w (then: %w)", base, err, ferr)
		}
		if found {
			return p, st, nil
		}
	}
}

// isDefinite reports whether err is the coordinator's answer that a request
// was not applied (as opposed to an outcome the client could not learn).
func isDefinite(err error) bool {
	for _, e := range []error{client.ErrNoNode, client.ErrNodeExists, client.ErrBadVersion, client.ErrNotEmpty,
		client.ErrEphemeralParent, client.ErrSessionExpired, client.ErrInvalidArgument, client.ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// findOwn returns this attempt's node (found by id), if it exists.
func (k *contender) findOwn(ctx context.Context, id string) (string, *colonyv1.Stat, bool, error) {
	ms, _, err := k.members(ctx, false) // the create's reply was lost: its zxid is not in the session
	if err != nil {
		return "", nil, false, err
	}
	for _, m := range ms {
		if m.id != id || m.kind != k.kind {
			continue
		}
		p := k.dir + "/" + m.name
		ok, st, err := k.c.Exists(ctx, p)
		if err != nil {
			return "", nil, false, fmt.Errorf("stat %s: %w", p, err)
		}
		if ok {
			return p, st, true, nil
		}
	}
	return "", nil, false, nil
}

// ensureDir creates the recipe directory (a container) and its parents.
func (k *contender) ensureDir(ctx context.Context) error {
	_, _, err := k.c.Create(ctx, k.dir, nil, client.Container())
	if errors.Is(err, client.ErrNoNode) {
		parent := k.dir[:strings.LastIndexByte(k.dir, '/')]
		for _, p := range []string{rootDir, parent} {
			if _, _, err := k.c.Create(ctx, p, nil); err != nil && !errors.Is(err, client.ErrNodeExists) {
				return fmt.Errorf("create %s: %w", p, err)
			}
		}
		_, _, err = k.c.Create(ctx, k.dir, nil, client.Container())
	}
	if err != nil && !errors.Is(err, client.ErrNodeExists) {
		return fmt.Errorf("create %s: %w", k.dir, err)
	}
	return nil
}

// waitChange waits for the next change of the node at p after zxid (for a
// lock node: its delete). It also returns nil when the watch could not tell
// (history trimmed, stream broken): the caller lists again.
func (k *contender) waitChange(ctx context.Context, p string, zxid uint64) error {
	w, err := k.c.Watch(ctx, p, colonyv1.WatchKind_WATCH_KIND_EXISTS, client.AfterZxid(zxid))
	if errors.Is(err, client.ErrResync) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("watch %s: %w", p, err)
	}
	defer w.Close()
	k.watching.Store(true)
	_, err = w.Next(ctx)
	k.watching.Store(false)
	if err == nil {
		k.wakeups.Add(1)
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("wait for %s: %w", p, context.Cause(ctx))
	}
	t := time.NewTimer(relistDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("wait for %s: %w", p, context.Cause(ctx))
	case <-t.C:
		return nil
	}
}

// abandon deletes the node of a failed attempt with id, if it exists, within
// cleanupTimeout even if ctx has ended. If the delete fails the node stays
// until its session ends.
func (k *contender) abandon(ctx context.Context, id string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	ms, _, err := k.members(cctx, false)
	if err != nil {
		return
	}
	for _, m := range ms {
		if m.id == id && m.kind == k.kind {
			_ = k.c.Delete(cctx, k.dir+"/"+m.name, client.AnyVersion)
		}
	}
}

// release deletes the node of the current grant and ends the grant. A grant
// that had been lost (its session ended, or its node was gone) is ended too,
// and reported as ErrLost. If the delete fails for another reason the grant
// stays, and release may be called again.
func (k *contender) release(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	g := k.grant
	if g == nil {
		return ErrNotHeld
	}
	err := k.c.Delete(ctx, g.path, client.AnyVersion)
	switch {
	case g.Err() != nil:
		err = g.Err()
	case errors.Is(err, client.ErrNoNode):
		err = fmt.Errorf("%w: %s was deleted while held: %w", ErrLost, g.path, err)
	case err != nil && k.s.Err() == nil:
		return fmt.Errorf("recipe: release %s: %w", g.path, err)
	case err != nil:
		err = fmt.Errorf("%w: session %#x ended: %w", ErrLost, k.s.ID(), k.s.Err())
	}
	g.end()
	k.grant, k.busy = nil, false
	return err
}

// sessionContext returns a context that ends with parent or, with
// ErrLost as its cause, when s ends. stop releases it and waits for the
// goroutine that watches s.
func sessionContext(parent context.Context, s *client.Session) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-s.Done():
			cancel(fmt.Errorf("%w: session %#x ended: %w", ErrLost, s.ID(), s.Err()))
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		cancel(context.Canceled)
		<-exited
	}
}
