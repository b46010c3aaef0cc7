// Package recipe provides coordination recipes over the coordinator's znode
// tree: a mutex (exclusive, or shared for readers), and leader election, each
// with fencing tokens. They follow ZooKeeper's recipes and build on
// coordinator/client.
//
// A contender creates an ephemeral sequential znode owned by its Session
// (under /colony/locks/<name>/ or /colony/elections/<name>/) and holds the
// lock once no node it must wait for has a lower sequence number. While it
// waits it watches only the node just below its own, so a release wakes one
// waiter, not all of them. The node's name carries a random id per attempt,
// so a create whose reply was lost is found again instead of leaked.
//
// Every grant carries a fencing token: the zxid at which the holder's node was
// created. Tokens of one lock strictly increase from holder to holder, across
// sessions and coordinator leader changes, so a resource can reject a holder
// that lost the lock without knowing it (it paused past its session's TTL).
// Grant.Multi makes a write to the znode tree that applies only while the
// grant's node exists; Fence rejects stale tokens in other resources.
//
// Usage:
//
//	sess, err := c.OpenSession(ctx, 10*time.Second, "billing-cron")
//	if err != nil { ... }
//	defer sess.Close(context.Background())
//
//	m, err := recipe.NewMutex(c, sess, "billing")
//	g, err := m.Lock(ctx) // blocks until held, or ctx ends
//	if err != nil { ... }
//	defer m.Unlock(context.Background())
//
//	// A write that applies only while the lock is still held.
//	_, err = g.Multi(ctx, client.SetOp("/billing/last-run", now, client.AnyVersion))
//	if errors.Is(err, recipe.ErrNotHeld) { ... the lock was lost ... }
//
//	// Elsewhere: a resource that rejects stale holders.
//	if err := fence.Admit(g.Token()); err != nil { ... reject ... }
//
// See DESIGN.md beside this file for why tokens are creation zxids, the
// guarded-write pattern and the known gaps.
package recipe
