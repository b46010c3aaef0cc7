package api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/errinfo"
	"github.com/colonymesh/colony/internal/watchhub"
	"github.com/colonymesh/colony/internal/ztree"
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
		{"watch hub closed", fmt.Errorf("subscribing: %w", watchhub.ErrClosed), codes.Unavailable},
		{"not tracking", ErrNotTracking, codes.Unavailable},
		{"catching up", fmt.Errorf("%w: applied 1 of 9", ErrCatchingUp), codes.Unavailable},
		{"future zxid", fmt.Errorf("%w: min_zxid 9", ErrFutureZxid), codes.OutOfRange},
		{"too many parked", ErrTooManyParked, codes.ResourceExhausted},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"canceled", context.Canceled, codes.Canceled},
		{"forwarded status", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied},
		{"session not owned", ztree.SessionNotOwned(7, "cn:bob", "close it"), codes.PermissionDenied},
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

// An error that crosses a node-to-node call (a write or report batch a
// follower forwarded) reaches the client as the leader would have answered
// it: code, message and reason.
func TestOpErrorKeepsTheReason(t *testing.T) {
	for _, err := range []error{
		ztree.SessionNotFound(42),
		ztree.SessionNotOwned(42, "cn:bob", "keep it alive"),
		fmt.Errorf("op 0: %w", ztree.ErrNotEmpty),
		ErrNoLeader,
	} {
		want := status.Convert(ToStatus(err))
		got := status.Convert(FromOpError(OpError(err)))
		if got.Code() != want.Code() || got.Message() != want.Message() || errinfo.Reason(got) != errinfo.Reason(want) {
			t.Errorf("%v: forwarded as %v (reason %q), want %v (reason %q)", err, got, errinfo.Reason(got), want, errinfo.Reason(want))
		}
	}
	if r := errinfo.Reason(status.Convert(FromOpError(OpError(ztree.SessionNotFound(42))))); r != contract.ReasonSessionNotFound {
		t.Errorf("a forwarded session error has reason %q, want %q", r, contract.ReasonSessionNotFound)
	}
	if r := errinfo.Reason(status.Convert(ToStatus(ztree.SessionNotOwned(42, "", "close it")))); r != contract.ReasonSessionNotOwned {
		t.Errorf("a session of another identity has reason %q, want %q", r, contract.ReasonSessionNotOwned)
	}
}
