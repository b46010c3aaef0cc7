// Package benchcmd holds colony's bench commands, which measure what a
// cluster can carry. bench fleet simulates N sidecars against a cluster,
// each doing against the coordinators what package sidecar does (its own
// connection, a session with keep-alives and its registration, watches on
// its breakers, the policies and its callees' registrations, an outcome
// report every 250 ms), then trips a breaker in every simulated service at
// once and times the decision and its delivery to every sidecar
// (RunFleet). It reports the coordinators' CPU and memory per sidecar,
// from /proc or their metrics endpoints, and the errors of every call.
//
//	colony bench fleet --sidecars 2000 --pid 4101 --pid 4102 --pid 4103
package benchcmd
