// Package xdsdialtest opens proxyless gRPC channels for tests (package
// xdsdial), failing the test when the channel cannot be made and closing
// it at the test's end.
package xdsdialtest

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/colonymesh/colony/internal/xdsdial"
)

// Dial opens a channel to xds:///callee for a client whose node is nodeID
// in cluster, fed by the xDS server at server, with bootstrap options
// (xdsdial.AsGuard, xdsdial.WithTLS). The test's cleanup closes it.
func Dial(tb testing.TB, server, nodeID, cluster, callee string, opts ...xdsdial.Option) *grpc.ClientConn {
	tb.Helper()
	cc, err := xdsdial.DialWith(server, nodeID, cluster, callee, opts)
	if err != nil {
		tb.Fatalf("dialing xds:///%s through %s: %v", callee, server, err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc
}
