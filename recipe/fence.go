package recipe

import (
	"fmt"
	"sync"
)

// Fence is the check a protected resource makes before it accepts a write
// from a lock holder: it remembers the highest fencing token it has admitted
// and rejects lower ones. A holder that paused past its session's TTL (and so
// lost the lock to a holder with a greater token) is rejected once the new
// holder has written. Equal tokens are admitted: one holder writes many
// times with the same token.
//
// A Fence lives in memory, so it protects a resource served by one process
// for that process's life. A resource that outlives its process keeps the
// highest token with its data and compares in the same transaction as the
// write, e.g. in SQL:
//
//	UPDATE jobs SET state = $1, fence = $2 WHERE id = $3 AND fence <= $2
//
// (zero rows updated: a stale holder). The zero Fence admits any token.
type Fence struct {
	mu      sync.Mutex
	highest Token
}

// Admit reports whether a write with token t may proceed: nil (and t is
// remembered) if t is at least the highest token admitted so far, an error
// matching ErrStaleToken otherwise.
func (f *Fence) Admit(t Token) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t < f.highest {
		return fmt.Errorf("%w: %d is below %d, already admitted", ErrStaleToken, t, f.highest)
	}
	f.highest = t
	return nil
}

// Highest returns the highest token admitted so far (0: none).
func (f *Fence) Highest() Token {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.highest
}
