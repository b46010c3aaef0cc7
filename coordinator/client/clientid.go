package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Every request carries the client's id in the colony-client-id metadata.
// The coordinator remembers a write's request id per client id, so a retry is
// recognised as the same request from the same client, and two clients that
// happen to use the same request id never see each other's results.
const (
	clientIDMetadata = "colony-client-id"
	maxClientIDLen   = 64
)

// ClientID returns the id this client sends with every request: Config.ClientID,
// or the random one New chose.
func (c *Client) ClientID() string { return c.clientID }

// clientIDFor returns the configured client id, checked, or a new random
// 128-bit one in hex.
func clientIDFor(cfg Config) (string, error) {
	if cfg.ClientID == "" {
		return newRequestID(), nil
	}
	if err := checkClientID(cfg.ClientID); err != nil {
		return "", err
	}
	return cfg.ClientID, nil
}

// checkClientID applies the coordinator's rule: 1 to 64 characters of
// A-Z a-z 0-9 . _ : -.
func checkClientID(id string) error {
	ok := len(id) > 0 && len(id) <= maxClientIDLen
	for i := 0; ok && i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("client: config: client id %q must be 1 to %d characters of A-Z a-z 0-9 . _ : -", id, maxClientIDLen)
	}
	return nil
}

// clientIDDialOptions add id to the metadata of every call on a connection.
func clientIDDialOptions(id string) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, clientIDMetadata, id), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(metadata.AppendToOutgoingContext(ctx, clientIDMetadata, id), desc, cc, method, opts...)
		}),
	}
}
