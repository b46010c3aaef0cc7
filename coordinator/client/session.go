package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/internal/wiretime"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Session is a coordinator session: it owns ephemeral znodes, which the
// coordinator deletes when the session ends. A Session keeps itself alive
// with a goroutine that sends a keep-alive every TTL/3 on a KeepAliveStream,
// switching to another endpoint when one fails, for as long as the session
// can still be alive: the coordinator never expires a session before TTL after
// the send time of its last acknowledged keep-alive. When the coordinator says
// the session is gone, or no keep-alive was acknowledged within that TTL, the
// Session is lost: Done is closed and Err says why.
type Session struct {
	c    *Client
	id   uint64
	name string
	ttl  atomic.Int64 // granted TTL, as a time.Duration
	// lastAck is the send time (unix ns) of the newest acknowledged
	// keep-alive, or of the open.
	lastAck atomic.Int64

	cancel context.CancelCauseFunc // stops the keep-alive goroutine
	done   chan struct{}           // closed when the keep-alive goroutine ends
	err    error                   // why it ended; written before done is closed

	closeOnce sync.Once
	closeErr  error
}

// OpenSession opens a session with the requested ttl (the coordinator clamps
// it to its limits; TTL reports the granted one) and starts keeping it alive.
// name describes the owner, for operators (e.g. "orders-7f9c/sidecar").
// ctx bounds the open only; the session lives until Close, its loss, or the
// client's Close.
func (c *Client) OpenSession(ctx context.Context, ttl time.Duration, name string) (*Session, error) {
	req := &colonyv1.OpenSessionRequest{TtlMs: ttl.Milliseconds(), Name: name, RequestId: requestID(ctx)}
	var resp *colonyv1.OpenSessionResponse
	// The session cannot have been created before the first attempt was sent,
	// so its TTL is safely counted from then, whichever attempt succeeded.
	var opened time.Time
	err := c.call(ctx, retrySafe, hintSession, func(ctx context.Context, ep *endpoint) (err error) {
		if opened.IsZero() {
			opened = time.Now()
		}
		resp, err = ep.sessions.Open(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.observe(resp.GetHeader())
	granted := wiretime.Millis(resp.GetTtlMs())
	if granted <= 0 {
		return nil, fmt.Errorf("client: open session: server granted ttl_ms %d", resp.GetTtlMs())
	}
	s := &Session{c: c, id: resp.GetSessionId(), name: name, done: make(chan struct{})}
	s.ttl.Store(int64(granted))
	s.lastAck.Store(opened.UnixNano())
	kctx, cancel := context.WithCancelCause(c.ctx)
	s.cancel = cancel
	if !c.goFunc(func() { s.run(kctx, opened) }) {
		cancel(ErrClosed)
		return nil, ErrClosed
	}
	c.log.Debug("coordinator client: session opened", "session", s.id, "ttl", granted, "name", name)
	return s, nil
}

// ID returns the session id, for Ephemeral.
func (s *Session) ID() uint64 { return s.id }

// TTL returns the TTL the coordinator granted (most recently).
func (s *Session) TTL() time.Duration { return time.Duration(s.ttl.Load()) }

// LastAck returns the send time of the newest keep-alive the coordinator
// acknowledged (at first: when the open was sent). The session is alive at
// least until LastAck() + TTL(); how long ago it was says how stale the
// holder's view of the coordinator may be.
func (s *Session) LastAck() time.Time { return time.Unix(0, s.lastAck.Load()) }

// Done is closed when the session ends: lost, closed, or its client closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns nil while the session is alive; afterwards why it ended:
// ErrSessionExpired (wrapped) if it was lost, ErrClosed if it was closed.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close stops the keep-alives, waits for the goroutine that sends them, and
// closes the session on the coordinator, which deletes its ephemeral znodes.
// A session that is already gone on the coordinator closes without error.
// Calls after the first return the first result.
func (s *Session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.cancel(ErrClosed)
		<-s.done
		err := s.c.CloseSession(ctx, s.id)
		if errors.Is(err, ErrSessionExpired) {
			err = nil
		}
		s.closeErr = err
	})
	return s.closeErr
}

// run keeps the session alive until ctx ends or the session is lost.
// lastAck is the send time of the newest acknowledged keep-alive (first: of
// the open): the session is alive until lastAck + TTL at least.
func (s *Session) run(ctx context.Context, lastAck time.Time) {
	defer close(s.done)
	log := s.c.log.With("session", s.id)
	for n := 1; ; {
		ep := s.c.current()
		acked, err := s.keepAlive(ctx, ep, &lastAck)
		switch {
		case ctx.Err() != nil:
			s.err = context.Cause(ctx)
			return
		case status.Code(err) == codes.NotFound:
			s.err = toError(err, hintSession)
			log.Warn("coordinator client: session expired", "endpoint", ep.addr, "err", err)
			return
		case !time.Now().Before(lastAck.Add(s.TTL())):
			s.err = fmt.Errorf("%w: no keep-alive acknowledged within the %v TTL (last error: %w)", ErrSessionExpired, s.TTL(), err)
			log.Warn("coordinator client: session lost", "err", s.err)
			return
		}
		log.Debug("coordinator client: keep-alive stream failed", "endpoint", ep.addr, "err", err)
		s.c.rotate(ep)
		if acked {
			n = 1
		} else {
			n++
		}
		// Do not sleep past the deadline: the next endpoint may still save it.
		if err := sleep(ctx, min(retryDelay(n), time.Until(lastAck.Add(s.TTL()))/4)); err != nil {
			s.err = err
			return
		}
	}
}

// errNoAck: a keep-alive was not acknowledged in time on this stream.
var errNoAck = errors.New("no keep-alive acknowledgement in time")

// keepAlive runs one KeepAliveStream on ep until it fails or ctx ends,
// sending a keep-alive every TTL/3 and recording acknowledgements in lastAck.
// A keep-alive not acknowledged within TTL/3 (or before the session's
// deadline, if sooner) abandons the stream, leaving time to try another
// endpoint. acked reports whether any keep-alive was acknowledged.
func (s *Session) keepAlive(ctx context.Context, ep *endpoint, lastAck *time.Time) (acked bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stream colonyv1.Sessions_KeepAliveStreamClient
	next := time.Now()
	for {
		if err := sleep(ctx, time.Until(next)); err != nil {
			return acked, err
		}
		ttl := s.TTL()
		sent := time.Now()
		wait := min(ttl/3, lastAck.Add(ttl).Sub(sent))
		if wait <= 0 {
			return acked, errNoAck
		}
		var timedOut atomic.Bool
		watchdog := time.AfterFunc(wait, func() {
			timedOut.Store(true)
			cancel()
		})
		resp, err := s.ping(sctx, ep, &stream)
		watchdog.Stop()
		if err != nil {
			if timedOut.Load() {
				err = fmt.Errorf("%w from %s within %v: %w", errNoAck, ep.addr, wait, err)
			}
			return acked, err
		}
		*lastAck, acked = sent, true
		s.lastAck.Store(sent.UnixNano())
		if g := wiretime.Millis(resp.GetTtlMs()); g > 0 {
			s.ttl.Store(int64(g))
		}
		s.c.observe(resp.GetHeader())
		next = sent.Add(s.TTL() / 3)
	}
}

// ping sends one keep-alive on *stream (opening it on ep first if nil) and
// waits for its acknowledgement.
func (s *Session) ping(ctx context.Context, ep *endpoint, stream *colonyv1.Sessions_KeepAliveStreamClient) (*colonyv1.KeepAliveResponse, error) {
	if *stream == nil {
		st, err := ep.sessions.KeepAliveStream(ctx)
		if err != nil {
			return nil, err
		}
		*stream = st
	}
	// On a stream that has ended, Send returns io.EOF and Recv the status.
	if err := (*stream).Send(&colonyv1.KeepAliveRequest{SessionId: s.id}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	resp, err := (*stream).Recv()
	if errors.Is(err, io.EOF) {
		return nil, status.Error(codes.Unavailable, "keep-alive stream ended by the server")
	}
	return resp, err
}

// CloseSession closes the session id on the coordinator, which deletes its
// ephemeral znodes. A session that does not exist is ErrSessionExpired. To
// close a Session this client keeps alive, use Session.Close.
func (c *Client) CloseSession(ctx context.Context, id uint64) error {
	req := &colonyv1.CloseSessionRequest{SessionId: id, RequestId: requestID(ctx)}
	var resp *colonyv1.CloseSessionResponse
	err := c.call(ctx, retrySafe, hintSession, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.sessions.Close(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	c.observe(resp.GetHeader())
	return nil
}

// ListSessions returns the coordinator's open sessions.
func (c *Client) ListSessions(ctx context.Context) ([]*colonyv1.SessionInfo, error) {
	var resp *colonyv1.ListSessionsResponse
	err := c.call(ctx, retrySafe, hintSession, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.sessions.List(ctx, &colonyv1.ListSessionsRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	c.observe(resp.GetHeader())
	return resp.GetSessions(), nil
}
