// Package client is the Go client of Colony's coordinator: a replicated,
// ZooKeeper-like tree of znodes with sessions, watches and cluster operations,
// served over gRPC (proto/colony/v1). Applications, sidecars and the colony
// CLI use it.
//
// A Client holds one gRPC connection per configured endpoint and sends every
// request to one of them, the sticky current endpoint. When that endpoint
// answers Unavailable, does not answer within Config.RequestTimeout, or the
// connection fails, the client moves on to the next endpoint and retries, with
// jittered backoff, until the caller's context ends. Every write carries a
// request id (random, one per logical write, unless the caller supplies one
// with WithRequestID) and every retry reuses it, so the coordinator applies
// the write exactly once even when a reply was lost.
//
// Reads are linearizable by default. WithSessionConsistency makes a read
// cheaper: any node may answer it from its local state, but never with state
// older than the newest the client has already seen (the highest response zxid
// it has observed).
//
// Errors returned by the coordinator match the package's sentinels with
// errors.Is (ErrNoNode, ErrBadVersion, ...), keep the server's message as
// their text, and still carry their gRPC status for status.Code.
//
// Sessions (OpenSession) own ephemeral znodes. A Session keeps itself alive in
// the background, failing over between endpoints within its TTL, and closes
// Done when it is lost. Watches (Watch) deliver events in zxid order; a
// persistent watch survives the loss of its endpoint by resuming, on another
// endpoint, right after the last event it delivered.
//
// Usage:
//
//	c, err := client.New(client.Config{Endpoints: []string{"10.0.0.1:7400", "10.0.0.2:7400"}})
//	if err != nil { ... }
//	defer c.Close()
//
//	p, _, err := c.Create(ctx, "/colony/services/orders", nil)
//	data, stat, err := c.Get(ctx, p)
//	_, err = c.Set(ctx, p, []byte("v2"), stat.GetVersion()) // compare-and-set
//	if errors.Is(err, client.ErrBadVersion) { ... someone else wrote first ... }
//
//	w, err := c.Watch(ctx, "/colony/breakers", colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive())
//	defer w.Close()
//	for {
//		ev, err := w.Next(ctx)
//		if errors.Is(err, client.ErrResync) { ... reread, then watch again ... }
//		...
//	}
//
// See DESIGN.md beside this file for the failover, session and watch-resume
// rules and what the client expects of the server.
package client
