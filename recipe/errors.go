package recipe

import "errors"

// Errors returned by the recipes. Errors from the coordinator are wrapped, so
// client's sentinels (client.ErrSessionExpired, client.ErrUnavailable, ...)
// match them too.
var (
	// ErrInvalidName: a lock or election name is empty, too long, or has a
	// character other than letters, digits, '.', '_' and '-'.
	ErrInvalidName = errors.New("recipe: invalid name")
	// ErrLocked: TryLock found the lock held by another contender.
	ErrLocked = errors.New("recipe: lock is held by another contender")
	// ErrBusy: Lock, TryLock or Campaign was called on a Mutex or Election
	// that already holds its grant or is acquiring it. One Mutex is one
	// contender; make another for concurrent attempts.
	ErrBusy = errors.New("recipe: already held or being acquired by this contender")
	// ErrNotHeld: Unlock or Resign without a grant, or a guarded write whose
	// lock node no longer exists (the grant was released or lost).
	ErrNotHeld = errors.New("recipe: not held")
	// ErrLost: the grant ended without Unlock or Resign: its session ended
	// (expired, closed, or its client closed) or its node was deleted.
	// Another contender may hold the lock now.
	ErrLost = errors.New("recipe: lock lost")
	// ErrReleased: Grant.Err after Unlock or Resign.
	ErrReleased = errors.New("recipe: released")
	// ErrNoLeader: Leader found no candidate in the election.
	ErrNoLeader = errors.New("recipe: election has no leader")
	// ErrStaleToken: a Fence rejected a token lower than one it admitted.
	ErrStaleToken = errors.New("recipe: stale fencing token")
	// ErrNoSession: Lock, TryLock or Campaign on a Mutex or Election made
	// without a session.
	ErrNoSession = errors.New("recipe: no session")
)
