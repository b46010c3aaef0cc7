// Package grpcnode holds the test of the Node.js example (client.js): a
// gRPC client on @grpc/grpc-js and @grpc/grpc-js-xds from npm, with no
// Colony code, that trips, probes and recovers the shared breaker through
// its sidecar's xDS server. See README.md; the Go code here is only the
// test that runs the walkthrough for real.
package grpcnode
