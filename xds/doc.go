// Package xds turns a sidecar's view of its service's callees and their
// shared breakers into xDS resources, and serves them over ADS (state of the
// world, and delta for Envoy) to the local Envoy and to local proxyless gRPC
// clients (targets "xds:///<callee>").
//
// Translate is pure: a State (the callees, their endpoints and breaker
// records) becomes listeners, route configurations, clusters and endpoints.
// Breaker state lives only in the route configurations, as a per-route
// override of the HTTP fault filter that every listener carries empty before
// the router, so a breaker flip changes route resources and nothing else:
// clusters and listeners are byte-identical across flips, and Envoy and gRPC
// swap route tables without draining connections.
//
// A Server holds the resources in go-control-plane linear caches (one per
// type, node-agnostic: every client of a sidecar sees the same resources) and
// watches the clients' ACKs and NACKs: Status reports, per client, what it
// has accepted and rejected, and, per breaker transition, how long it took
// from the sidecar learning it (and from the leader deciding it) to each
// client ACKing the routes that carry it.
//
// Typical use by a sidecar:
//
//	srv, err := xds.NewServer(xds.Config{Logger: log})
//	...
//	err = srv.Update(state) // before clients connect, and on every change
//	go srv.Serve(lis)       // or srv.Register(sidecarGRPCServer)
//	...
//	srv.Close()
//
// Load reports (lrs.go): every callee cluster names the server as its LRS
// server, so gRPC xDS clients stream per-cluster call counts to it
// (Config.OnLoad); a sidecar turns them into the outcomes of callers that
// run no Colony code. LRS carries no latency and no status code.
//
// Names (names.go): besides each callee's own name, a proxyless client may
// dial <callee>:<port> or any case of a callee's name; an unknown name is
// answered at once with a listener the client rejects with a message naming
// what is served.
//
// See DESIGN.md beside this file for the resource layout and its reasons.
package xds
