package client

// Outcome reports on one long-lived Breakers.ReportStream (see DESIGN.md,
// "Reports"): a report period costs one message and its ack instead of a
// call. The stream lives on one endpoint; a Report for another endpoint
// (after failover) ends it and opens one there. A node that answers
// Unimplemented is an older one: the client remembers it and sends that
// node unary Reports.

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// maxReportsInFlight bounds the messages one report stream has sent and not
// had acknowledged; a Report beyond it waits (within its context) for an
// ack. A sidecar sends one message per report period, so more than a few
// in flight means the node is not keeping up.
const maxReportsInFlight = 16

// errNoReportStream: the endpoint does not serve ReportStream (an older
// node); the report was not sent and goes as a unary Report.
var errNoReportStream = errors.New("client: the node does not serve ReportStream")

// reportStream is one open ReportStream on an endpoint. Its receiver, a
// goroutine the client owns, hands each ack to the Reports waiting for it.
type reportStream struct {
	ep     *endpoint
	stream colonyv1.Breakers_ReportStreamClient
	ctx    context.Context // the stream's; canceled when it is to end
	cancel context.CancelFunc
	slots  chan struct{} // one per message in flight (maxReportsInFlight)
	done   chan struct{} // closed when the stream has ended; err is set

	sendMu sync.Mutex // serializes seq and Send

	mu        sync.Mutex
	seq       uint64                // the last seq sent (under sendMu and mu)
	waiting   map[uint64]chan error // seq -> its Report's result
	acked     bool                  // any ack came: the node serves the method
	ackedUpTo uint64                // the highest seq acknowledged
	err       error                 // why the stream ended
}

// reportOnStream sends reports as one message on ep's report stream (opening
// it if need be) and waits for the message's ack. errNoReportStream says the
// node does not serve the method and nothing was counted.
func (c *Client) reportOnStream(ctx context.Context, ep *endpoint, reports []*colonyv1.OutcomeReport) error {
	for try := 1; ; try++ {
		err := c.sendReport(ctx, ep, reports)
		if !errors.Is(err, errStreamGone) {
			return err
		}
		// The stream ended before the message went out (the client ended
		// it after an unacknowledged report, or the node ended it): open
		// another, but not without end.
		if try == 3 {
			return status.Errorf(codes.Unavailable, "report streams on %s ended %d times before the report could be sent", ep.addr, try)
		}
	}
}

// errStreamGone: the report stream had ended before the message was sent.
var errStreamGone = errors.New("client: report stream ended before the message was sent")

// sendReport is one try of reportOnStream.
func (c *Client) sendReport(ctx context.Context, ep *endpoint, reports []*colonyv1.OutcomeReport) error {
	rs, err := c.reportStreamOn(ctx, ep)
	if err != nil {
		return err
	}
	select {
	case rs.slots <- struct{}{}:
	case <-rs.done:
		if err := rs.endErr(); errors.Is(err, errNoReportStream) || errors.Is(err, ErrClosed) {
			return err
		}
		return errStreamGone
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	ch := make(chan error, 1)
	rs.sendMu.Lock()
	rs.mu.Lock()
	if rs.err != nil || rs.ctx.Err() != nil {
		rs.mu.Unlock()
		rs.sendMu.Unlock()
		<-rs.slots
		if err := rs.endErr(); errors.Is(err, errNoReportStream) || errors.Is(err, ErrClosed) {
			return err
		}
		return errStreamGone
	}
	rs.seq++
	seq := rs.seq
	rs.waiting[seq] = ch
	rs.mu.Unlock()
	// Send fails (io.EOF) only when the stream has ended; its status
	// comes from Recv, which the receiver hands to every waiter, ch too.
	_ = rs.stream.Send(&colonyv1.ReportStreamRequest{Seq: seq, Reports: reports})
	rs.sendMu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		// The message may still be counted. A node that has not
		// acknowledged it within the caller's time is not keeping up, or
		// the stream is stuck: end it, and the next Report opens another.
		rs.mu.Lock()
		delete(rs.waiting, seq)
		rs.mu.Unlock()
		rs.cancel()
		return status.FromContextError(ctx.Err()).Err()
	}
}

// reportStreamOn returns the client's report stream on ep, opening one (and
// ending one open on another endpoint) if need be.
func (c *Client) reportStreamOn(ctx context.Context, ep *endpoint) (*reportStream, error) {
	c.rsMu.Lock()
	defer c.rsMu.Unlock()
	if rs := c.rs; rs != nil {
		if rs.ctx.Err() == nil {
			if rs.ep == ep {
				return rs, nil
			}
			rs.cancel() // the client moved to another endpoint
		}
		c.rs = nil
	}
	// The stream outlives this call, but opening it (which waits while
	// the connection is connecting) is bounded by the caller's context.
	sctx, cancel := context.WithCancel(c.ctx)
	stop := context.AfterFunc(ctx, cancel)
	stream, err := ep.breakers.ReportStream(sctx)
	if !stop() {
		cancel()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	rs := &reportStream{
		ep: ep, stream: stream, ctx: sctx, cancel: cancel,
		slots:   make(chan struct{}, maxReportsInFlight),
		done:    make(chan struct{}),
		waiting: map[uint64]chan error{},
	}
	if !c.goFunc(func() { c.receiveAcks(rs) }) {
		cancel()
		return nil, ErrClosed
	}
	c.rs = rs
	return rs, nil
}

// endErr is what a Report gets when the stream ended before its message
// was sent.
func (rs *reportStream) endErr() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.acked && status.Code(rs.err) == codes.Unimplemented {
		return errNoReportStream
	}
	if rs.err == nil {
		return status.Error(codes.Unavailable, "report stream ended")
	}
	return rs.err
}

// receiveAcks reads rs's acks until the stream ends, then fails every
// Report still waiting.
func (c *Client) receiveAcks(rs *reportStream) {
	defer close(rs.done)
	defer rs.cancel()
	for {
		ack, err := rs.stream.Recv()
		if err != nil {
			c.endReportStream(rs, err)
			return
		}
		c.observe(ack.GetHeader())
		if ack.GetAccepted() > 0 { // only such an ack says who leads
			c.noteLeader(rs.ep, ack.GetLeader())
		}
		rejected := make(map[uint64]error, len(ack.GetRejected()))
		for _, r := range ack.GetRejected() {
			rejected[r.GetSeq()] = opStatus(r.GetError()).Err()
		}
		rs.mu.Lock()
		rs.acked = true
		for seq, ch := range rs.waiting {
			if seq <= ack.GetAckedSeq() {
				ch <- rejected[seq]
				delete(rs.waiting, seq)
			}
		}
		rs.mu.Unlock()
		// Free a slot per message acknowledged, waited for or not.
		for range ackedCount(rs, ack.GetAckedSeq()) {
			select {
			case <-rs.slots:
			default:
			}
		}
	}
}

// ackedCount is how many messages an ack up to seq acknowledges that no
// earlier ack did.
func ackedCount(rs *reportStream, seq uint64) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	if seq > rs.ackedUpTo {
		n = int(min(seq-rs.ackedUpTo, maxReportsInFlight))
		rs.ackedUpTo = seq
	}
	return n
}

// endReportStream records why rs ended and fails the Reports waiting on it.
// A message sent but not acknowledged may or may not have been counted:
// its Report fails with a code the client does not retry (a retry could
// count it twice), unless the node never served the method.
func (c *Client) endReportStream(rs *reportStream, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if ctxErr := c.ctx.Err(); ctxErr != nil {
		err = ErrClosed
	}
	rs.err = err
	unimplemented := !rs.acked && status.Code(err) == codes.Unimplemented
	if unimplemented {
		rs.ep.noReportStream.Store(true)
		c.log.Debug("coordinator client: the node does not serve ReportStream; using Report", "endpoint", rs.ep.addr)
	}
	for seq, ch := range rs.waiting {
		switch {
		case unimplemented:
			ch <- errNoReportStream
		case errors.Is(err, ErrClosed):
			ch <- err
		default:
			ch <- status.Errorf(codes.Unknown, "report stream on %s ended before acknowledging the report, which may or may not have been counted: %v", rs.ep.addr, err)
		}
		delete(rs.waiting, seq)
	}
}

// leaderMarkTTL is how long the client takes an endpoint that said it leads
// for the leader without hearing otherwise.
const leaderMarkTTL = 30 * time.Second

// noteLeader records whether ep leads, as its latest ack said. A client
// with other endpoints moves its requests off the leader: reports reach the
// leader from any member in batches, and watches are served by every
// member, so the leader is left with the forwarded batches and raft.
func (c *Client) noteLeader(ep *endpoint, leads bool) {
	if !leads {
		ep.leaderSince.Store(0)
		return
	}
	ep.leaderSince.Store(time.Now().UnixNano())
	if len(c.eps) < 2 || c.cur.Load() != int64(ep.idx) {
		return
	}
	// Move to a follower this client picks at random (clients that all
	// list the leader first spread over the followers rather than all
	// landing on the next one), once its connection is ready: until then
	// the leader keeps serving, and a later ack looks again. Moving before
	// the connection (and its TLS handshake) is up would turn every
	// client's next requests into a wait for a handshake, a storm when a
	// whole fleet learns who leads at once.
	var followers []*endpoint
	for _, o := range c.eps {
		if o != ep && !c.isLeader(o) {
			followers = append(followers, o)
		}
	}
	if len(followers) == 0 {
		return
	}
	to := followers[c.spread%uint64(len(followers))]
	if to.conn.GetState() != connectivity.Ready {
		to.conn.Connect()
		return
	}
	if c.cur.CompareAndSwap(int64(ep.idx), int64(to.idx)) {
		c.log.Debug("coordinator client: moving off the leader", "from", ep.addr, "to", to.addr)
	}
}

// isLeader reports whether ep said it leads within leaderMarkTTL.
func (c *Client) isLeader(ep *endpoint) bool {
	t := ep.leaderSince.Load()
	return t != 0 && time.Since(time.Unix(0, t)) < leaderMarkTTL
}

// leaving reports whether a watch on ep should move: ep is the leader and
// the client has moved its requests to another endpoint (noteLeader).
func (c *Client) leaving(ep *endpoint) bool {
	return len(c.eps) > 1 && c.cur.Load() != int64(ep.idx) && c.isLeader(ep)
}
