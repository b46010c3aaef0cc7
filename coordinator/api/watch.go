package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/internal/watchhub"
	"github.com/colonymesh/colony/internal/ztree"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// watchServer serves colony.v1.Watch.
type watchServer struct {
	colonyv1.UnimplementedWatchServer
	s *Service
}

// Watch serves a watch from this node's own applied state: followers serve
// watches as well as the leader. Events come from the node's watch hub in
// zxid order; a watcher the hub cannot serve without a gap gets resync=true
// and the stream ends.
//
// Memory: the hub keeps no per-watch queue, and this handler asks it for the
// next batch only after the previous one was handed to gRPC, so a watch
// whose client does not read stops at its blocked Send (holding at most two
// messages of its own, counted against its connection's byte budget,
// MaxWatchBytesPerConn). A watch whose next message would take its
// connection over that budget is cut with ResourceExhausted; its client
// resumes after the last zxid it received (or is told to resync if that is
// no longer retained).
func (a *watchServer) Watch(req *colonyv1.WatchRequest, stream colonyv1.Watch_WatchServer) error {
	if err := ztree.ValidatePath(req.Path); err != nil {
		return ToStatus(err)
	}
	if _, ok := colonyv1.WatchKind_name[int32(req.Kind)]; !ok {
		return status.Errorf(codes.InvalidArgument, "kind: unknown watch kind %d", req.Kind)
	}
	if req.Recursive && req.Kind != colonyv1.WatchKind_WATCH_KIND_PERSISTENT {
		return status.Errorf(codes.InvalidArgument, "recursive: only PERSISTENT watches can be recursive, got %s", req.Kind)
	}
	s := a.s
	node := s.node
	ctx := stream.Context()
	release, err := s.watches.acquire(ctx, s.cfg.MaxWatchesPerConn, s.cfg.MaxWatches)
	if err != nil {
		return err
	}
	defer release()
	out := &watchSender{
		stream: stream,
		limits: &s.watches,
		conn:   connKey(ctx),
		budget: watchConnBudget(s.cfg),
	}
	defer out.close()

	after := node.WatchIndex()
	if req.AfterZxid != nil {
		after = *req.AfterZxid
	}
	sub, err := node.Subscribe(watchhub.Filter{Path: req.Path, Kind: req.Kind, Recursive: req.Recursive}, after)
	if errors.Is(err, watchhub.ErrResync) {
		return out.send(&colonyv1.WatchResponse{Header: node.Header(), Resync: true, ResyncReason: err.Error()}, after)
	}
	if err != nil {
		return ToStatus(err)
	}
	defer sub.Close()
	created := &colonyv1.WatchResponse{Header: node.Header(), Created: true, StartZxid: after}
	var interval time.Duration
	if req.ProgressNotify {
		interval = s.cfg.WatchProgressInterval
		created.ProgressIntervalMs = uint64(interval.Milliseconds())
	}
	if err := out.send(created, after); err != nil {
		return err
	}
	sent := after // the last zxid whose events were all sent
	for {
		events, err := a.next(ctx, sub, interval)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF): // a one-shot watch fired
			return nil
		case errors.Is(err, watchhub.ErrResync):
			return out.send(&colonyv1.WatchResponse{Header: node.Header(), Resync: true, ResyncReason: err.Error()}, sent)
		case errors.Is(err, watchhub.ErrClosed):
			return status.Error(codes.Unavailable, "node is shutting down; resume the watch on another node")
		case ctx.Err() != nil:
			return status.FromContextError(ctx.Err()).Err()
		case errors.Is(err, context.DeadlineExceeded):
			// Idle for an interval. Look once more (entries without events
			// advance the index without waking watchers), then say how far
			// the watch has read.
			if events, err = sub.Next(doneCtx); err == nil {
				break // events after all: send them
			}
			if !errors.Is(err, context.Canceled) {
				continue // the next Next reports it
			}
			h := node.Header()
			h.Zxid = sub.Progress()
			if err := out.send(&colonyv1.WatchResponse{Header: h, Progress: true}, sent); err != nil {
				return err
			}
			sent = max(sent, h.Zxid)
			continue
		default:
			return ToStatus(fmt.Errorf("watch: %w", err))
		}
		msg := &colonyv1.WatchResponse{Header: node.Header(), Events: events, Fragment: sub.Fragment()}
		if err := out.send(msg, sent); err != nil {
			return err
		}
		if z := events[len(events)-1].GetZxid(); msg.Fragment {
			sent = max(sent, z-1)
		} else {
			sent = max(sent, z)
		}
	}
}

// doneCtx is a context that has ended: Next with it reads what is published
// and returns at once.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// next waits for the subscription's next batch, at most interval when that
// is positive: then it returns context.DeadlineExceeded while ctx is live.
func (a *watchServer) next(ctx context.Context, sub *watchhub.Subscription, interval time.Duration) ([]*colonyv1.Event, error) {
	if interval <= 0 {
		return sub.Next(ctx)
	}
	ictx, cancel := context.WithTimeout(ctx, interval)
	defer cancel()
	return sub.Next(ictx)
}

// watchConnBudget is the bytes of watch messages one connection may have
// queued: MaxWatchBytesPerConn, raised to two of the largest messages (a
// batch, or one event of MaxDataBytes with the longest path) so that a
// single watch always fits.
func watchConnBudget(cfg Config) int {
	largest := max(cfg.WatchBatchBytes, cfg.Limits.MaxDataBytes+ztree.MaxPathBytes+watchMessageOverhead)
	return max(cfg.MaxWatchBytesPerConn, 2*largest)
}

// watchMessageOverhead generously covers what a watch message adds to its
// events' data and path: header, stat, tags and lengths.
const watchMessageOverhead = 4 << 10

// watchSender sends one watch's messages, counting them against its
// connection's byte budget: a message is counted from before its Send until
// the Send of the next message returns, because until then it may still be
// in gRPC's buffers (a stream's Send returns once gRPC has queued the
// message, and blocks while the stream has 64 KiB unsent).
type watchSender struct {
	stream colonyv1.Watch_WatchServer
	limits *watchLimits
	conn   string
	budget int
	held   int // bytes of the last message sent
}

// send sends msg, or cuts the watch with ResourceExhausted when it does not
// fit the connection's budget; resume is the zxid the client should resume
// after, named in the message.
func (w *watchSender) send(msg *colonyv1.WatchResponse, resume uint64) error {
	n := proto.Size(msg)
	if !w.limits.reserve(w.conn, n, w.budget) {
		return status.Errorf(codes.ResourceExhausted,
			"watch cut: the watches of this connection (%s) have %d bytes of messages queued, the limit (MaxWatchBytesPerConn); read watches faster, and resume after zxid %d",
			w.conn, w.budget, resume)
	}
	err := w.stream.Send(msg)
	w.limits.unreserve(w.conn, w.held)
	w.held = n
	return err
}

// close releases what the watch still holds of its connection's budget.
func (w *watchSender) close() {
	w.limits.unreserve(w.conn, w.held)
	w.held = 0
}

// watchLimits counts open watches per client connection and per node, and
// the bytes of watch messages each connection has queued.
type watchLimits struct {
	mu     sync.Mutex
	total  int
	byConn map[string]int
	bytes  map[string]int // per connection, while it has watch messages queued
}

// reserve counts n more queued bytes for conn if that keeps it within limit.
func (w *watchLimits) reserve(conn string, n, limit int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.bytes == nil {
		w.bytes = map[string]int{}
	}
	if w.bytes[conn]+n > limit {
		return false
	}
	w.bytes[conn] += n
	return true
}

// unreserve gives back n bytes reserved for conn.
func (w *watchLimits) unreserve(conn string, n int) {
	if n == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.bytes[conn] -= n; w.bytes[conn] <= 0 {
		delete(w.bytes, conn)
	}
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
