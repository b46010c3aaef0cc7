package coordinator

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/internal/ztree"
)

// toStatus converts an error to a gRPC status at the API edge. It is the one
// place where errors become codes; it matches with errors.Is so wrapped
// errors map too, and keeps the message, which names what was wrong.
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
		return status.Error(c, err.Error())
	}
	if c := engine.Code(err); c != codes.Unknown {
		return status.Error(c, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
