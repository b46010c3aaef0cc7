package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

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
	release, err := s.watches.acquire(stream.Context(), s.cfg.MaxWatchesPerConn, s.cfg.MaxWatches)
	if err != nil {
		return err
	}
	defer release()
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

// watchLimits counts open watches per client connection and per node.
type watchLimits struct {
	mu     sync.Mutex
	total  int
	byConn map[string]int
}

// acquire counts one more watch for ctx's connection, or refuses it with
// ResourceExhausted naming the limit. release undoes it.
func (w *watchLimits) acquire(ctx context.Context, perConn, total int) (release func(), err error) {
	conn := connKey(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byConn == nil {
		w.byConn = map[string]int{}
	}
	switch {
	case w.byConn[conn] >= perConn:
		return nil, status.Errorf(codes.ResourceExhausted, "watches: this connection (%s) already has %d open watches, the limit (MaxWatchesPerConn)", conn, perConn)
	case w.total >= total:
		return nil, status.Errorf(codes.ResourceExhausted, "watches: this node already serves %d watches, its limit (MaxWatches); watch through another node", total)
	}
	w.byConn[conn]++
	w.total++
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.total--
		if w.byConn[conn]--; w.byConn[conn] <= 0 {
			delete(w.byConn, conn)
		}
	}, nil
}
