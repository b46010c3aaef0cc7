package api

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Request ids are scoped by client: the FSM remembers a write's result under
// (client scope, request id), so that two clients never see each other's
// results, and answers a remembered id only for the request it was first used
// for (see ztree's DESIGN.md).
const (
	// ClientIDMetadata is the gRPC metadata key that names the client a
	// write's request_id belongs to. The Go client sends a random id per
	// client.Client; without it a request is in the anonymous scope, shared
	// by every caller that sends none.
	ClientIDMetadata = "colony-client-id"
	// maxClientIDLen is the longest client id accepted.
	maxClientIDLen = 64
)

// requestScope returns the scope of the request ids of the write ctx
// carries, or InvalidArgument when the metadata is malformed. On an
// insecure node it is the client id from the metadata ("" without one); on
// a secure node it is the verified identity's ID, a space and the client id,
// so that one caller can never name another's scope. (A client id has no
// space, so the last space separates the two: no identity's scope is
// another's.)
//
// This is the one place that decides whose request ids a write's id may
// collide with.
func requestScope(ctx context.Context) (string, error) {
	id, err := clientID(ctx)
	if err != nil {
		return "", err
	}
	if v, ok := verifiedIdentity(ctx); ok {
		return v.ID + " " + id, nil
	}
	return id, nil
}

// clientID is the client id in ctx's metadata, "" without one.
func clientID(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, ClientIDMetadata)
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", status.Errorf(codes.InvalidArgument, "%s: sent %d times, at most once", ClientIDMetadata, len(vals))
	}
	id := vals[0]
	if !validClientID(id) {
		return "", status.Errorf(codes.InvalidArgument, "%s: %q must be 1 to %d characters of A-Z a-z 0-9 . _ : -", ClientIDMetadata, truncate(id, maxClientIDLen+8), maxClientIDLen)
	}
	return id, nil
}

func validClientID(id string) bool {
	if len(id) == 0 || len(id) > maxClientIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
