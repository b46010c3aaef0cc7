package coordinator

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/internal/ztree"
)

// toStatus converts an error to a gRPC status at the API edge. It is the one
// place where errors become codes; it matches with errors.Is so wrapped
// errors map too, and keeps the message, which names what was wrong. Kinds
// that share a code also get their reason (contract.Reason*).
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return st.Err() // already a status: forwarded from another node
	}
	switch {
	case retryable(err):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, raft.ErrRaftShutdown):
		return status.Error(codes.Unavailable, "node is shutting down: "+err.Error())
	case errors.Is(err, errNotTracking), errors.Is(err, errCatchingUp):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, errFutureZxid):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, errTooManyParked):
		return status.Error(codes.ResourceExhausted, err.Error())
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

// withReason attaches the kind of error to st as a google.rpc.ErrorInfo in
// contract.ErrorDomain, for clients to tell apart kinds that share a code.
func withReason(st *status.Status, reason string) error {
	if reason == "" {
		return st.Err()
	}
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: contract.ErrorDomain}); err == nil {
		return d.Err()
	}
	return st.Err()
}
