// Package xdsdial opens proxyless gRPC channels to xds:///<callee>, each
// with its own xDS bootstrap naming a sidecar's xDS server and the client's
// node: what a separate process would read from GRPC_XDS_BOOTSTRAP, for the
// many clients the demo, the tests and the benchmarks run in one process.
package xdsdial

import (
	"encoding/json"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds" // registers the xds resolver and balancers
)

// Bootstrap returns a gRPC xDS bootstrap for a client whose node is nodeID
// (service/instance, by Colony's convention) in cluster (its service), fed
// by the xDS server at server over plaintext (a sidecar on loopback).
func Bootstrap(server, nodeID, cluster string) []byte {
	type creds struct {
		Type string `json:"type"`
	}
	b, err := json.Marshal(map[string]any{
		"xds_servers": []map[string]any{{
			"server_uri":      server,
			"channel_creds":   []creds{{Type: "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]string{"id": nodeID, "cluster": cluster},
	})
	if err != nil {
		panic(err) // strings and slices always marshal
	}
	return b
}

// Dial opens a channel to xds:///callee with Bootstrap(server, nodeID,
// cluster), plaintext to the callee, plus opts. The channel stays idle until
// used or Connect is called.
func Dial(server, nodeID, cluster, callee string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	// grpc-go's only API for an in-process bootstrap is named ForTesting; it
	// is how one process hosts many xDS clients with distinct nodes.
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(Bootstrap(server, nodeID, cluster))
	if err != nil {
		return nil, err
	}
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb)}, opts...)
	return grpc.NewClient("xds:///"+callee, opts...)
}
