// Package gobreakerstore lets programs that already use sony/gobreaker's
// DistributedCircuitBreaker (github.com/sony/gobreaker/v2) keep their shared
// breaker state in Colony's coordinator. A Store implements
// gobreaker.SharedDataStore with znodes: GetData and SetData read and write a
// persistent znode per name, and Lock and Unlock are a distributed mutex built
// with the ZooKeeper lock recipe on ephemeral sequential znodes owned by the
// Store's coordinator session.
//
// # Cost model: this bridge is for compatibility, not speed
//
// gobreaker's distributed mode puts the store on the path of every request.
// Each DistributedCircuitBreaker.Execute reads the shared state, takes the
// distributed lock, runs the request while holding it, writes the state back
// and unlocks. Through this Store that is at least five coordinator round
// trips per call (a read, a create and a list for the lock, a write, a
// delete), three of them raft writes, plus one watch wait per queued holder
// ahead of it. Every call for one breaker name is therefore serialised across
// the whole fleet, including the request itself: a slow callee makes every
// caller wait for the lock, and when the coordinator cannot be reached no
// request runs at all. Colony's own shared breakers (package breaker and the
// coordinator's breaker engine) avoid exactly this: callers report outcomes in
// the background and follow the decision through a watch, so no coordinator
// round trip sits on the request path. Use this package to move an existing
// gobreaker deployment onto Colony without changing its code, then migrate
// to Colony's breakers.
//
// Note too that gobreaker (v2.4.0) reads the shared state before it takes the
// lock, so concurrent calls overwrite each other's counts: with k calls in
// flight a breaker counts roughly one outcome per k, and trips that much
// later. No store can fix that; DESIGN.md beside this file lists this and
// the other behaviours of DistributedCircuitBreaker worth knowing.
//
// # Layout
//
// Every name the Store is given becomes one path segment under Config.Root
// (default "/colony/gobreaker"), escaped with url.PathEscape ("/" becomes
// "%2F", a space "%20"; the names "." and ".." have their dots escaped as
// "%2E"), so any non-empty name is valid:
//
//	<root>/<escaped name>/state              persistent; GetData / SetData
//	<root>/<escaped name>/lock/lock-<t>-<n>  ephemeral sequential; Lock / Unlock
//
// gobreaker itself passes the names "gobreaker:state:<breaker name>" to
// GetData and SetData and "gobreaker:mutex:<breaker name>" to Lock and Unlock,
// so one breaker uses two sibling directories. The directories are created on
// first use and never deleted. GetData of a name never written returns no
// data and no error, which gobreaker reads as "no shared state yet".
//
// # Locks and sessions
//
// The Store opens one coordinator session on the first Lock (and a new one on
// the next Lock after it was lost) and keeps it alive in the background.
// Every Lock call creates its own ephemeral sequential znode under the
// name's lock directory; the lowest sequence number holds the lock, and every
// other caller watches only the znode just below its own (no herd) and checks
// again when that one goes. Goroutines of one process sharing a Store queue
// the same way, so the mutex excludes them from each other as well as from
// other processes. Unlock deletes the znode the current holder created.
//
// A lock is only as good as the session that owns it. If the session is lost
// (the coordinator stopped hearing keep-alives within Config.SessionTTL, or it
// was closed), its znodes are deleted and another caller may take the lock
// while this one still believes it holds it; the next Unlock of that name
// then returns ErrLockLost. Close closes the session, releasing every lock the
// Store holds.
//
// gobreaker's SharedDataStore methods take no context, so Config.Timeout
// bounds each GetData, SetData and Unlock and Config.LockTimeout bounds a
// Lock, its wait for the lock included.
package gobreakerstore
