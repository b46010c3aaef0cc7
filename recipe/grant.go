package recipe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Token is a fencing token: the zxid at which a holder's lock node was
// created. For one lock (or election), a later grant always has a greater
// token than an earlier one, across sessions and coordinator leader changes.
// A resource that remembers the highest token it has accepted and rejects
// lower ones cannot be written by a holder that lost the lock (see Fence).
type Token uint64

// String formats the token in decimal, as COLONY_FENCING_TOKEN carries it.
func (t Token) String() string { return strconv.FormatUint(uint64(t), 10) }

// ParseToken parses a token in decimal, e.g. from COLONY_FENCING_TOKEN.
func ParseToken(s string) (Token, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("recipe: fencing token: want a positive decimal number, got %q", s)
	}
	return Token(v), nil
}

// Grant is one holding of a lock or of an election's leadership: the
// holder's node, its fencing token, and whether it still holds.
//
// A Grant ends with Unlock (or Resign), or when its session ends. A goroutine
// owned by the Grant waits for either; it ends with them (the session also
// ends when its client is closed).
type Grant struct {
	c     *client.Client
	path  string
	token Token

	release     chan struct{} // closed by end
	releaseOnce sync.Once
	done        chan struct{} // closed once the grant has ended and err is set
	err         error         // why it ended; set before done is closed
}

func newGrant(c *client.Client, s *client.Session, path string, token Token) *Grant {
	g := &Grant{c: c, path: path, token: token, release: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		select {
		case <-s.Done():
			g.err = fmt.Errorf("%w: session %#x ended: %w", ErrLost, s.ID(), s.Err())
		case <-g.release:
			g.err = ErrReleased
		}
	}()
	return g
}

// end releases the grant (if its session has not ended it first) and waits
// for its goroutine.
func (g *Grant) end() {
	g.releaseOnce.Do(func() { close(g.release) })
	<-g.done
}

// Path returns the path of the holder's node, as COLONY_LOCK_PATH carries it.
// Guard and GuardedMulti take it.
func (g *Grant) Path() string { return g.path }

// Token returns the grant's fencing token.
func (g *Grant) Token() Token { return g.token }

// Done is closed when the grant ends: released, or lost with its session.
// Work done under the lock should stop then; writes guarded by the grant
// (Multi) fail from the moment the coordinator deletes the node, which may
// come before the holder learns of it.
func (g *Grant) Done() <-chan struct{} { return g.done }

// Err returns nil while the grant holds; afterwards ErrReleased, or an error
// matching ErrLost (and the session's error) if the session ended first.
// The coordinator may have ended a session before its holder notices, so a
// nil Err is no proof of ownership: use guarded writes and fencing tokens.
func (g *Grant) Err() error {
	select {
	case <-g.done:
		return g.err
	default:
		return nil
	}
}

// Guard returns ops preceded by a check that the grant's node still exists.
// Pass them to client.Multi, or use Multi.
func (g *Grant) Guard(ops ...*colonyv1.Op) []*colonyv1.Op { return Guard(g.path, ops...) }

// Multi applies ops atomically, and only if the grant's node still exists:
// a holder whose session has expired, or who released the lock, cannot write.
// If the node is gone the error matches ErrNotHeld; if another op fails, its
// error, as client.Multi reports it.
func (g *Grant) Multi(ctx context.Context, ops ...*colonyv1.Op) (*colonyv1.MultiResponse, error) {
	return GuardedMulti(ctx, g.c, g.path, ops...)
}

// Guard returns ops preceded by a check that the lock node at lockPath
// (Grant.Path, or COLONY_LOCK_PATH in a command run by `colony lock`) still
// exists. Lock node names carry a random id and a sequence number, so a path
// names one grant only: while it exists, that grant holds.
func Guard(lockPath string, ops ...*colonyv1.Op) []*colonyv1.Op {
	return append([]*colonyv1.Op{client.CheckOp(lockPath, client.AnyVersion)}, ops...)
}

// GuardedMulti applies ops with c atomically, only if the lock node at
// lockPath still exists (see Guard). If it does not, the error matches
// ErrNotHeld and client.ErrNoNode.
func GuardedMulti(ctx context.Context, c *client.Client, lockPath string, ops ...*colonyv1.Op) (*colonyv1.MultiResponse, error) {
	resp, err := c.Multi(ctx, Guard(lockPath, ops...)...)
	if err != nil && resp != nil && resp.GetFailedOp() == 0 && errors.Is(err, client.ErrNoNode) {
		return resp, fmt.Errorf("%w: guarded write: lock node %s no longer exists: %w", ErrNotHeld, lockPath, err)
	}
	if err != nil {
		return resp, fmt.Errorf("recipe: guarded write: %w", err)
	}
	return resp, nil
}
