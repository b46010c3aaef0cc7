package api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestToStatusCodes: the node's error kinds map to their codes, wrapped or
// not, with their message kept, and a status passes through unchanged.
func TestToStatusCodes(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		code codes.Code
	}{
		{"nil", nil, codes.OK},
		{"no leader", ErrNoLeader, codes.Unavailable},
		{"term not ready, wrapped", fmt.Errorf("%w (breaker engine starting)", ErrTermNotReady), codes.Unavailable},
		{"raft not leader", raft.ErrNotLeader, codes.Unavailable},
		{"raft shutdown", raft.ErrRaftShutdown, codes.Unavailable},
		{"not tracking", ErrNotTracking, codes.Unavailable},
		{"catching up", fmt.Errorf("%w: applied 1 of 9", ErrCatchingUp), codes.Unavailable},
		{"future zxid", fmt.Errorf("%w: min_zxid 9", ErrFutureZxid), codes.OutOfRange},
		{"too many parked", ErrTooManyParked, codes.ResourceExhausted},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"canceled", context.Canceled, codes.Canceled},
		{"forwarded status", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied},
		{"anything else", errors.New("boom"), codes.Internal},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := ToStatus(tt.err)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("ToStatus(%v) = %v, want %v", tt.err, got, tt.code)
			}
			if tt.err != nil && status.Convert(err).Message() == "" {
				t.Fatalf("ToStatus(%v) lost the message", tt.err)
			}
		})
	}
}
