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

	"github.com/colonymesh/colony/internal/trust"
)

// Option adjusts a bootstrap.
type Option func(*options)

type options struct {
	tls   *trust.Files
	guard bool
}

// AsGuard marks the client's node as one whose process reports its
// outcomes through Colony's client library (node metadata
// "colony.guard": true, guard.XDSNodeMetadataKey), so the sidecar does not
// count its load reports as outcomes a second time.
func AsGuard() Option {
	return func(o *options) { o.guard = true }
}

// WithTLS makes the xDS channel to the sidecar mutual TLS (a sidecar whose
// API listens with TLS): the client presents files' certificate and
// verifies the sidecar's against files' CA, for the host the server
// address names (gRFC A65's "tls" channel credentials, which re-read the
// files when they change).
func WithTLS(files trust.Files) Option {
	return func(o *options) { o.tls = &files }
}

// Bootstrap returns a gRPC xDS bootstrap for a client whose node is nodeID
// (service/instance, by Colony's convention) in cluster (its service), fed
// by the xDS server at server: over plaintext (a sidecar on loopback), or
// over TLS with WithTLS.
func Bootstrap(server, nodeID, cluster string, opts ...Option) []byte {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	type creds struct {
		Type   string            `json:"type"`
		Config map[string]string `json:"config,omitempty"`
	}
	cc := creds{Type: "insecure"}
	if o.tls != nil {
		cc = creds{Type: "tls", Config: map[string]string{
			"ca_certificate_file": o.tls.CA,
			"certificate_file":    o.tls.Cert,
			"private_key_file":    o.tls.Key,
		}}
	}
	node := map[string]any{"id": nodeID, "cluster": cluster}
	if o.guard {
		node["metadata"] = map[string]any{"colony.guard": true}
	}
	b, err := json.Marshal(map[string]any{
		"xds_servers": []map[string]any{{
			"server_uri":      server,
			"channel_creds":   []creds{cc},
			"server_features": []string{"xds_v3"},
		}},
		"node": node,
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
	return DialWith(server, nodeID, cluster, callee, nil, opts...)
}

// DialWith is Dial with bootstrap options (WithTLS for a sidecar that serves
// xDS over TLS). The channel to the callee itself stays plaintext unless
// opts give it transport credentials.
func DialWith(server, nodeID, cluster, callee string, bopts []Option, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	// grpc-go's only API for an in-process bootstrap is named ForTesting; it
	// is how one process hosts many xDS clients with distinct nodes.
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(Bootstrap(server, nodeID, cluster, bopts...))
	if err != nil {
		return nil, err
	}
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb)}, opts...)
	return grpc.NewClient("xds:///"+callee, opts...)
}
