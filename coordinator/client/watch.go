package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/internal/wiretime"
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
// failed, the node cut it for reading too slowly) or falls silent for three
// of the progress intervals the node promised re-subscribes on another
// endpoint, after a jittered backoff, with after_zxid set to the last zxid
// it received whole, so the caller sees no gap and no duplicate; only when
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

	resumes atomic.Int64 // streams resumed after a break
}

// subscription is one Watch stream that has been registered (created).
type subscription struct {
	ep     *endpoint
	stream colonyv1.Watch_WatchClient
	cancel context.CancelFunc
	start  uint64
	first  []*colonyv1.Event // events that came with the created message

	// silence, when positive, is how long recv waits for a message before
	// it takes the stream for dead (the server promised progress messages)
	// and cancels it through watchdog.
	silence  time.Duration
	watchdog *time.Timer
	silent   atomic.Bool
}

// recv receives the stream's next message. On a progress-notified stream
// that stays silent for sub.silence it fails with Unavailable.
func (sub *subscription) recv() (*colonyv1.WatchResponse, error) {
	if sub.silence > 0 {
		sub.watchdog.Reset(sub.silence)
	}
	msg, err := sub.stream.Recv()
	if sub.silence > 0 {
		sub.watchdog.Stop()
	}
	if err != nil && sub.silent.Load() {
		err = status.Errorf(codes.Unavailable, "watch stream on %s sent nothing for %v, though it promised progress messages; taking it for dead", sub.ep.addr, sub.silence)
	}
	return msg, err
}

// stop ends the stream.
func (sub *subscription) stop() {
	if sub.watchdog != nil {
		sub.watchdog.Stop()
	}
	sub.cancel()
}

// Watch registers a watch of kind on path and returns once the coordinator
// has confirmed it: every matching change after that (or after AfterZxid)
// will be delivered. ctx governs the watch's whole life, not just the call:
// when it ends, so does the watch.
func (c *Client) Watch(ctx context.Context, path string, kind colonyv1.WatchKind, opts ...WatchOption) (*Watcher, error) {
	// A persistent watch asks for progress messages, so that it can tell
	// a quiet watch from a dead stream.
	req := &colonyv1.WatchRequest{Path: path, Kind: kind, ProgressNotify: kind == colonyv1.WatchKind_WATCH_KIND_PERSISTENT}
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
		sub.stop()
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

// Resumes is how many times the watch's stream broke (or fell silent) and
// was resumed on a new stream.
func (w *Watcher) Resumes() int64 { return w.resumes.Load() }

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
	sub := &subscription{
		ep:     ep,
		stream: stream,
		cancel: scancel,
		start:  msg.GetStartZxid(),
		first:  msg.GetEvents(),
	}
	if ms := msg.GetProgressIntervalMs(); ms > 0 {
		sub.silence = silentIntervals * wiretime.UMillis(ms)
		sub.watchdog = time.AfterFunc(sub.silence, func() {
			sub.silent.Store(true)
			scancel()
		})
		sub.watchdog.Stop() // recv arms it
	}
	return sub, nil
}

func resyncError(reason string) error {
	if reason == "" {
		return ErrResync
	}
	return fmt.Errorf("%w: %s", ErrResync, reason)
}

// silentIntervals is how many progress intervals a progress-notified watch
// may go without any message before the client takes its stream for dead.
const silentIntervals = 3

// pump reads the watch's stream into w.ch until the watch ends, resuming a
// persistent watch on another endpoint when its stream breaks or falls
// silent. Every resume waits a capped, jittered, exponentially growing delay
// (reset once a stream delivers something), so a server that keeps failing
// is never hammered.
func (w *Watcher) pump(ctx context.Context, sub *subscription) {
	defer close(w.exited)
	defer close(w.ch)
	defer func() { sub.stop() }()

	// received is the newest zxid whose events have all been handed to w.ch
	// (or that a progress message covered): a resumed stream starts after
	// it. partial is a zxid of which only the first have events were
	// handed over (the stream broke between its fragments); the resumed
	// stream sends them again and the pump drops them. floor is the zxid
	// the current stream started after (defensive: the server sends nothing
	// at or below it).
	received, floor := sub.start, sub.start
	if a := w.req.AfterZxid; a != nil && *a > floor {
		floor, received = *a, *a
	}
	var partial uint64
	var have, cnt int // events of partial handed over; seen on this stream
	resumes := 0      // resumes since a stream last delivered anything
	// A node whose progress messages stay below a zxid the client had
	// already seen when the first of them came is behind the cluster (a
	// restarted or cut-off member): after silentIntervals of them the watch
	// moves to another node.
	var lagTarget uint64
	lagCount := 0
	msg := &colonyv1.WatchResponse{Events: sub.first}
	for {
		if evs := msg.GetEvents(); len(evs) > 0 {
			var fresh []*colonyv1.Event
			for _, ev := range evs {
				z := ev.GetZxid()
				if z <= floor {
					continue
				}
				if partial != 0 && z == partial {
					if cnt++; cnt <= have {
						continue // sent again after a resume
					}
					have++
				}
				fresh = append(fresh, ev)
				w.c.observeZxid(z)
			}
			// Every zxid before the message's last is complete; the last is
			// too unless the message is a fragment.
			last := evs[len(evs)-1].GetZxid()
			switch {
			case !msg.GetFragment():
				received = max(received, last)
				partial, have, cnt = 0, 0, 0
			case last > floor:
				received = max(received, last-1)
				if partial != last {
					partial, have = last, 0
					for _, ev := range fresh {
						if ev.GetZxid() == last {
							have++
						}
					}
					cnt = have
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

		var err error
		if w.persistent && w.c.leaving(sub.ep) {
			// The node leads and others can serve the watch: move, as a
			// broken stream would, resuming after received.
			err = status.Errorf(codes.Unavailable, "moving the watch off %s, the leader", sub.ep.addr)
		} else {
			msg, err = sub.recv()
		}
		if err == nil && msg.GetProgress() {
			z := msg.GetHeader().GetZxid()
			switch known := w.c.LastZxid(); {
			case lagTarget == 0 || z >= lagTarget:
				lagTarget, lagCount = 0, 0
				if known > z {
					lagTarget = known
				}
			default:
				if lagCount++; lagCount >= silentIntervals {
					err = status.Errorf(codes.Unavailable, "watch on %s is behind: its progress stayed below zxid %d, which the client had seen, for %d intervals (at %d)", sub.ep.addr, lagTarget, lagCount, z)
				}
			}
		}
		if err == nil {
			resumes = 0
			w.c.observe(msg.GetHeader())
			if msg.GetResync() {
				w.err = resyncError(msg.GetResyncReason())
				return
			}
			if msg.GetProgress() && partial == 0 {
				received = max(received, msg.GetHeader().GetZxid())
			}
			continue
		}
		lagTarget, lagCount = 0, 0
		msg = nil
		sub.stop()
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
		resumes++
		w.resumes.Add(1)
		delay := retryDelay(resumes)
		w.c.log.Debug("coordinator client: watch stream broke, resuming", "endpoint", sub.ep.addr, "after_zxid", received, "in", delay, "err", err)
		w.c.rotate(sub.ep)
		if err := sleep(ctx, delay); err != nil {
			w.err = err
			return
		}
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
		sub, floor, cnt = next, received, 0
		msg = &colonyv1.WatchResponse{Events: next.first}
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
