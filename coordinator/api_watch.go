package coordinator

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/internal/watchhub"
	"github.com/colonymesh/colony/internal/ztree"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Watch serves a watch from this node's own applied state: followers serve
// watches as well as the leader. Events come from the node's watch hub in
// zxid order; a watcher the hub cannot serve without a gap gets resync=true
// and the stream ends.
func (a *api) Watch(req *colonyv1.WatchRequest, stream colonyv1.Watch_WatchServer) error {
	if err := ztree.ValidatePath(req.Path); err != nil {
		return toStatus(err)
	}
	if _, ok := colonyv1.WatchKind_name[int32(req.Kind)]; !ok {
		return status.Errorf(codes.InvalidArgument, "kind: unknown watch kind %d", req.Kind)
	}
	if req.Recursive && req.Kind != colonyv1.WatchKind_WATCH_KIND_PERSISTENT {
		return status.Errorf(codes.InvalidArgument, "recursive: only PERSISTENT watches can be recursive, got %s", req.Kind)
	}
	s := a.s
	after := s.hub.Index()
	if req.AfterZxid != nil {
		after = *req.AfterZxid
	}
	sub, err := s.hub.Subscribe(watchhub.Filter{Path: req.Path, Kind: req.Kind, Recursive: req.Recursive}, after)
	if errors.Is(err, watchhub.ErrResync) {
		return stream.Send(&colonyv1.WatchResponse{Header: s.header(), Resync: true, ResyncReason: err.Error()})
	}
	if err != nil {
		return toStatus(err)
	}
	defer sub.Close()
	if err := stream.Send(&colonyv1.WatchResponse{Header: s.header(), Created: true, StartZxid: after}); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		events, err := sub.Next(ctx)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF): // a one-shot watch fired
			return nil
		case errors.Is(err, watchhub.ErrResync):
			return stream.Send(&colonyv1.WatchResponse{Header: s.header(), Resync: true, ResyncReason: err.Error()})
		case errors.Is(err, watchhub.ErrClosed):
			return status.Error(codes.Unavailable, "node is shutting down; resume the watch on another node")
		case ctx.Err() != nil:
			return status.FromContextError(ctx.Err()).Err()
		default:
			return toStatus(fmt.Errorf("watch: %w", err))
		}
		if err := stream.Send(&colonyv1.WatchResponse{Header: s.header(), Events: events}); err != nil {
			return err
		}
	}
}
