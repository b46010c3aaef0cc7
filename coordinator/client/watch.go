package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// WatchOption sets an optional field of a watch.
type WatchOption func(*colonyv1.WatchRequest)

// Recursive makes a PERSISTENT watch cover every descendant of the path too
// (without CHILDREN_CHANGED events, as in ZooKeeper).
func Recursive() WatchOption {
	return func(r *colonyv1.WatchRequest) { r.Recursive = true }
}

// AfterZxid delivers the events with zxid > z: pass the Zxid of a read's
// header (WithHeader) to see every change after that read, exactly once.
// Without it the watch starts at the serving node's applied zxid.
func AfterZxid(z uint64) WatchOption {
	return func(r *colonyv1.WatchRequest) { r.AfterZxid = &z }
}

// watchBuffer is how many server messages a Watcher reads ahead of Next.
const watchBuffer = 16

// Watcher delivers the events of one watch, in zxid order, through Next.
//
// A PERSISTENT watch whose stream breaks (its node went away, the network
// failed) re-subscribes on another endpoint with after_zxid set to the last
// event it received, so the caller sees no gap and no duplicate; only when
// the coordinator cannot resume (history trimmed, snapshot restored, the
// watcher fell behind) does Next return ErrResync. A one-shot watch (DATA,
// CHILDREN, EXISTS) delivers one event and then io.EOF; if its stream breaks
// first, Next returns the error and the caller should reread and watch again.
//
// A goroutine owned by the Watcher reads the stream; it ends with Close, the
// context given to Watch, or the client's Close.
type Watcher struct {
	c          *Client
	req        *colonyv1.WatchRequest
	persistent bool
	start      uint64

	cancel     context.CancelCauseFunc // ends the watch (and the pump)
	stopClient func() bool             // unhooks the watch from the client's Close
	ch         chan []*colonyv1.Event  // pump -> Next; closed when the pump ends
	err        error                   // why the pump ended; written before ch is closed
	exited     chan struct{}           // closed when the pump has returned

	// Next's state: only Next touches pending and final.
	pending []*colonyv1.Event
	final   error
	last    atomic.Uint64
}

// subscription is one Watch stream that has been registered (created).
type subscription struct {
	ep     *endpoint
	stream colonyv1.Watch_WatchClient
	cancel context.CancelFunc
	start  uint64
	first  []*colonyv1.Event // events that came with the created message
}

// Watch registers a watch of kind on path and returns once the coordinator
// has confirmed it: every matching change after that (or after AfterZxid)
// will be delivered. ctx governs the watch's whole life, not just the call:
// when it ends, so does the watch.
func (c *Client) Watch(ctx context.Context, path string, kind colonyv1.WatchKind, opts ...WatchOption) (*Watcher, error) {
	req := &colonyv1.WatchRequest{Path: path, Kind: kind}
	for _, opt := range opts {
		opt(req)
	}
	wctx, cancel := context.WithCancelCause(ctx)
	w := &Watcher{
		c:          c,
		req:        req,
		persistent: kind == colonyv1.WatchKind_WATCH_KIND_PERSISTENT,
		cancel:     cancel,
		stopClient: context.AfterFunc(c.ctx, func() { cancel(ErrClosed) }),
		ch:         make(chan []*colonyv1.Event, watchBuffer),
		exited:     make(chan struct{}),
	}
	var sub *subscription
	err := c.call(ctx, retrySafe, hintNode, func(actx context.Context, ep *endpoint) (err error) {
		sub, err = w.subscribe(wctx, actx, ep, req)
		return err
	})
	if err == nil && !c.goFunc(func() { w.pump(wctx, sub) }) {
		sub.cancel()
		err = ErrClosed
	}
	if err != nil {
		w.stopClient()
		cancel(err)
		return nil, err
	}
	w.start = sub.start
	return w, nil
}

// StartZxid is the zxid the watch started after: it delivers every matching
// event with a greater zxid.
func (w *Watcher) StartZxid() uint64 { return w.start }

// LastZxid is the zxid of the last event Next returned (0 before the first).
func (w *Watcher) LastZxid() uint64 { return w.last.Load() }

// Next returns the next event, waiting for it until ctx ends. After the
// watch ends it returns why, every time: io.EOF after a one-shot watch's
// event, ErrResync (wrapped, with the server's reason) when events may have
// been missed, ErrClosed after Close, the Watch context's error when that
// ended, or the error that broke a one-shot watch's stream. Next must not be
// called from several goroutines at once.
func (w *Watcher) Next(ctx context.Context) (*colonyv1.Event, error) {
	for len(w.pending) == 0 {
		if w.final != nil {
			return nil, w.final
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case evs, ok := <-w.ch:
			if !ok {
				w.final = w.err
				continue
			}
			w.pending = evs
		}
	}
	ev := w.pending[0]
	w.pending[0] = nil
	w.pending = w.pending[1:]
	w.last.Store(ev.GetZxid())
	return ev, nil
}

// Close ends the watch and waits for its goroutine. It is safe to call more
// than once.
func (w *Watcher) Close() {
	w.stopClient()
	w.cancel(ErrClosed)
	<-w.exited
}

// subscribe opens a Watch stream on ep and waits for the created message.
// The stream lives in wctx; the wait for created is bounded by the attempt's
// context actx.
func (w *Watcher) subscribe(wctx, actx context.Context, ep *endpoint, req *colonyv1.WatchRequest) (*subscription, error) {
	sctx, scancel := context.WithCancel(wctx)
	stop := context.AfterFunc(actx, scancel)
	stream, err := ep.watch.Watch(sctx, req)
	var msg *colonyv1.WatchResponse
	if err == nil {
		msg, err = stream.Recv()
	}
	if !stop() {
		// The attempt timed out (or the caller gave up) before the watch was
		// confirmed; the stream is canceled.
		scancel()
		return nil, status.FromContextError(actx.Err()).Err()
	}
	if errors.Is(err, io.EOF) {
		err = status.Error(codes.Unavailable, "watch stream ended before the watch was created")
	}
	if err != nil {
		scancel()
		return nil, err
	}
	w.c.observe(msg.GetHeader())
	if msg.GetResync() {
		scancel()
		return nil, resyncError(msg.GetResyncReason())
	}
	if !msg.GetCreated() {
		scancel()
		return nil, status.Error(codes.Internal, "watch: the server's first message did not confirm the watch")
	}
	if a := req.AfterZxid; a != nil && msg.GetStartZxid() != *a {
		w.c.log.Debug("coordinator client: watch started elsewhere than asked", "after_zxid", *a, "start_zxid", msg.GetStartZxid())
	}
	return &subscription{
		ep:     ep,
		stream: stream,
		cancel: scancel,
		start:  msg.GetStartZxid(),
		first:  msg.GetEvents(),
	}, nil
}

func resyncError(reason string) error {
	if reason == "" {
		return ErrResync
	}
	return fmt.Errorf("%w: %s", ErrResync, reason)
}

// pump reads the watch's stream into w.ch until the watch ends, resuming a
// persistent watch on another endpoint when its stream breaks.
func (w *Watcher) pump(ctx context.Context, sub *subscription) {
	defer close(w.exited)
	defer close(w.ch)
	defer func() { sub.cancel() }()

	// received is the zxid of the newest event handed to w.ch: a resumed
	// stream starts after it. floor is the zxid the current stream started
	// after: events at or below it were seen already (defensive; the server
	// does not send them).
	received, floor := sub.start, sub.start
	if a := w.req.AfterZxid; a != nil && *a > floor {
		floor, received = *a, *a
	}
	evs := sub.first
	for {
		if len(evs) > 0 {
			var fresh []*colonyv1.Event
			for _, ev := range evs {
				if ev.GetZxid() > floor {
					fresh = append(fresh, ev)
					received = max(received, ev.GetZxid())
					w.c.observeZxid(ev.GetZxid())
				}
			}
			if len(fresh) > 0 {
				select {
				case w.ch <- fresh:
				case <-ctx.Done():
					w.err = context.Cause(ctx)
					return
				}
				if !w.persistent {
					w.err = io.EOF // a one-shot watch fires once
					return
				}
			}
		}

		msg, err := sub.stream.Recv()
		if err == nil {
			w.c.observe(msg.GetHeader())
			if msg.GetResync() {
				w.err = resyncError(msg.GetResyncReason())
				return
			}
			evs = msg.GetEvents()
			continue
		}
		evs = nil
		sub.cancel()
		if ctx.Err() != nil {
			w.err = context.Cause(ctx)
			return
		}
		if errors.Is(err, io.EOF) {
			err = status.Error(codes.Unavailable, "watch stream ended by the server")
		}
		if !w.persistent || !resumable(err) {
			w.err = toError(err, hintNode)
			return
		}
		w.c.log.Debug("coordinator client: watch stream broke, resuming", "endpoint", sub.ep.addr, "after_zxid", received, "err", err)
		w.c.rotate(sub.ep)
		req := proto.CloneOf(w.req)
		req.AfterZxid = &received
		var next *subscription
		err = w.c.call(ctx, retrySafe, hintNode, func(actx context.Context, ep *endpoint) (err error) {
			next, err = w.subscribe(ctx, actx, ep, req)
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			w.err = err
			return
		}
		sub, floor, evs = next, received, next.first
	}
}

// resumable reports whether a persistent watch's broken stream should be
// resumed elsewhere: the failure is the transport's or the node's, not a
// verdict on the request.
func resumable(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented, codes.Unauthenticated:
		return false
	}
	return true
}
