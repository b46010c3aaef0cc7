package api

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/internal/errinfo"
	"github.com/colonymesh/colony/internal/watchhub"
	"github.com/colonymesh/colony/internal/ztree"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Errors a Node returns that ToStatus maps to a code of their own. The node
// returns or wraps these (with %w), so the mapping below finds them.
var (
	// ErrNoLeader: no leader is known, or it has not registered its gRPC
	// address yet. Unavailable; retried while an election may end it.
	ErrNoLeader = errors.New("coordinator: no leader known")
	// ErrTermNotReady: this node leads but has not committed an entry of
	// its term yet. Unavailable; retried.
	ErrTermNotReady = errors.New("coordinator: leader has not committed an entry in its term yet")
	// ErrNotTracking: this node does not lead (or has not armed its session
	// tracker yet). Unavailable.
	ErrNotTracking = errors.New("coordinator: session tracker not active on this node")
	// ErrFutureZxid: a SESSION read's min_zxid is beyond the cluster's
	// commit index, so no node will ever be able to serve it (etcd's
	// ErrFutureRev). OutOfRange.
	ErrFutureZxid = errors.New("min_zxid is a future zxid")
	// ErrCatchingUp: this node has not applied what the read needs: it has
	// just (re)started and not yet caught up with the leader, or it fell
	// behind for longer than LeaderWait. Unavailable: another node may
	// serve the read.
	ErrCatchingUp = errors.New("catching up")
	// ErrTooManyParked: MaxParkedReads reads already wait on this node's
	// FSM. ResourceExhausted.
	ErrTooManyParked = errors.New("reads waiting for this node to apply their zxid")
	// ErrTransferUnsafe: a leadership transfer raft cannot start safely in
	// this term (coordinator/transferguard.go). FailedPrecondition.
	ErrTransferUnsafe = errors.New("leadership transfer refused")
)

// Retryable reports whether a proposal or read-index request may be tried
// again, possibly through another leader: ToStatus answers these
// Unavailable, and the node retries them while it waits out an election.
func Retryable(err error) bool {
	switch {
	case errors.Is(err, ErrNoLeader),
		errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, ErrTermNotReady):
		return true
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return true
	}
	return false
}

// ToStatus converts an error to a gRPC status at the API edge. It is the one
// place where errors become codes, for the public services here and for the
// node's peer service; it matches with errors.Is so wrapped errors map too,
// and keeps the message, which names what was wrong. Kinds that share a
// code also get their reason (contract.Reason*).
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return st.Err() // already a status: forwarded from another node
	}
	switch {
	case Retryable(err):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, raft.ErrRaftShutdown):
		return status.Error(codes.Unavailable, "node is shutting down: "+err.Error())
	case errors.Is(err, watchhub.ErrClosed):
		// A watch opened on a node that is stopping: the client resumes
		// it on another node (an Internal error would end it for good).
		return status.Error(codes.Unavailable, "node is shutting down; resume the watch on another node: "+err.Error())
	case errors.Is(err, ErrNotTracking), errors.Is(err, ErrCatchingUp):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrFutureZxid):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, ErrTooManyParked):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrTransferUnsafe):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	if c := ztree.Code(err); c != codes.Unknown {
		return withReason(status.New(c, err.Error()), ztree.Reason(err))
	}
	if c := engine.Code(err); c != codes.Unknown {
		return withReason(status.New(c, err.Error()), engine.Reason(err))
	}
	return status.Error(codes.Internal, err.Error())
}

// withReason attaches the kind of error to st (errinfo), for clients to
// tell apart kinds that share a code.
func withReason(st *status.Status, reason string) error { return errinfo.With(st, reason).Err() }

// OpError carries err across a node-to-node call (a forwarded write or
// report batch) as ToStatus would answer it: code, message and reason.
func OpError(err error) *colonyv1.OpError {
	return errinfo.ToOpError(status.Convert(ToStatus(err)))
}

// FromOpError is the status e carried, reason included, for the node that
// forwarded the call to answer its client with.
func FromOpError(e *colonyv1.OpError) error { return errinfo.FromOpError(e).Err() }
