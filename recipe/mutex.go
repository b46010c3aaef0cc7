package recipe

import (
	"context"
	"fmt"

	"github.com/colonymesh/colony/coordinator/client"
)

// Mutex is one contender for a named lock shared by every process that uses
// the same coordinator: the ZooKeeper lock recipe. It holds at most one
// grant at a time and is safe for concurrent use, but Lock and TryLock while
// it holds or is acquiring return ErrBusy: make one Mutex per contender.
//
// Its node is owned by its Session: when the session ends (expires, is
// closed, or its client is closed) the lock is released by the coordinator
// and the Grant's Done is closed. A Mutex whose session ended cannot lock
// again; make a new one on a new session.
type Mutex struct {
	name string
	k    contender
}

// NewMutex returns an exclusive contender for the lock called name, whose
// nodes live under /colony/locks/<name>/ and are owned by s. A name is 1 to
// 128 letters, digits, '.', '_' or '-'.
func NewMutex(c *client.Client, s *client.Session, name string) (*Mutex, error) {
	return newMutex(c, s, name, kindExclusive)
}

// NewSharedMutex returns a shared (read) contender for the lock called name:
// any number of shared holders hold it at once, while no exclusive holder
// (from NewMutex on the same name) does; exclusive and shared holders are
// served in the order they asked, as in ZooKeeper's read-write lock recipe.
// A shared grant's token orders it against exclusive grants only: shared
// holders that hold together have distinct tokens, none of which excludes
// the others.
func NewSharedMutex(c *client.Client, s *client.Session, name string) (*Mutex, error) {
	return newMutex(c, s, name, kindShared)
}

func newMutex(c *client.Client, s *client.Session, name, kind string) (*Mutex, error) {
	if err := validateName("lock", name); err != nil {
		return nil, err
	}
	return &Mutex{name: name, k: contender{
		c: c, s: s, dir: locksDir + "/" + name, kind: kind,
		kinds: []string{kindExclusive, kindShared},
	}}, nil
}

// Name returns the lock's name.
func (m *Mutex) Name() string { return m.name }

// Lock waits until this contender holds the lock and returns the grant. It
// waits until ctx ends or the session ends; then it deletes its node (within
// a few seconds, even though ctx has ended) and returns an error matching
// ctx's cause, or client.ErrSessionExpired (or client.ErrClosed).
func (m *Mutex) Lock(ctx context.Context) (*Grant, error) {
	g, err := m.k.acquire(ctx, nil, true)
	if err != nil {
		return nil, fmt.Errorf("lock %q: %w", m.name, err)
	}
	return g, nil
}

// TryLock takes the lock if no other contender holds it or waits for it
// ahead of this one, and otherwise returns ErrLocked at once, leaving no node
// behind.
func (m *Mutex) TryLock(ctx context.Context) (*Grant, error) {
	g, err := m.k.acquire(ctx, nil, false)
	if err != nil {
		return nil, fmt.Errorf("lock %q: %w", m.name, err)
	}
	return g, nil
}

// Unlock releases the lock: it deletes the grant's node and ends the grant.
// It returns ErrNotHeld if this Mutex holds no grant, and an error matching
// ErrLost if the grant had been lost (its session ended or its node was
// deleted): someone else may have held the lock meanwhile, so work done
// under it may have overlapped another holder's. Either way the Mutex no
// longer holds. If the delete fails for another reason (the coordinator is
// unreachable), the Mutex still holds and Unlock may be called again; the
// lock is released anyway when the session ends.
func (m *Mutex) Unlock(ctx context.Context) error {
	if err := m.k.release(ctx); err != nil {
		return fmt.Errorf("unlock %q: %w", m.name, err)
	}
	return nil
}

// Grant returns the current grant, or nil if this Mutex does not hold the lock.
func (m *Mutex) Grant() *Grant {
	m.k.mu.Lock()
	defer m.k.mu.Unlock()
	return m.k.grant
}
