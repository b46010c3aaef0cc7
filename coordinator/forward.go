package coordinator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/internal/wiretime"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

const (
	// batchInflight is how many batches a follower has in flight to the
	// leader per kind of request: one is answered while the next collects.
	batchInflight = 2
	// batchMax bounds one batch (raft's MaxAppendEntries default).
	batchMax = 256
)

// batchBytes is the most encoded request bytes one batch carries, for a peer
// connection whose messages may be up to maxMsg bytes: half of it, leaving
// room for the envelope and for the reply. A single request larger than that
// still goes out, alone: the client API already refused anything that does
// not fit one message.
func batchBytes(maxMsg int) int { return maxMsg / 2 }

// batcher sends a follower's requests of one kind to the leader, coalescing
// those that arrive while earlier batches are in flight into one RPC. Under
// load this turns many small requests into one RPC (and, for proposals, one
// group commit on the leader); when idle a request goes out at once.
type batcher[Req, Res any] struct {
	// send delivers one batch and returns one result or error per request.
	send    func(ctx context.Context, reqs []Req) ([]Res, []error, error)
	goFunc  func(func())
	ctx     context.Context // the server's: Close cancels batches in flight
	timeout time.Duration
	// size, when set, is a request's encoded size, and a batch holds at most
	// maxBytes of them (and always at least one request). Without it only
	// batchMax bounds a batch.
	size     func(Req) int
	maxBytes int

	mu       sync.Mutex
	queue    []*batchCall[Req, Res]
	inflight int
}

type batchCall[Req, Res any] struct {
	req  Req
	done chan struct{}
	res  Res
	err  error
}

// do sends req with the next batch and waits for its result. When ctx ends
// first the request may still take effect on the leader: proposals are then
// answered from the dedup table on retry, keep-alives are harmless to repeat.
func (b *batcher[Req, Res]) do(ctx context.Context, req Req) (Res, error) {
	c := &batchCall[Req, Res]{req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.inflight < batchInflight {
		b.inflight++
		batch := b.takeLocked()
		b.goFunc(func() { b.run(batch) })
	}
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		var zero Res
		return zero, ctx.Err()
	}
}

func (b *batcher[Req, Res]) takeLocked() []*batchCall[Req, Res] {
	n := min(len(b.queue), batchMax)
	if b.size != nil {
		total := 0
		for i, c := range b.queue[:n] {
			total += b.size(c.req)
			if i > 0 && total > b.maxBytes {
				n = i
				break
			}
		}
	}
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	return batch
}

// run delivers batch, then keeps delivering whatever queued meanwhile.
func (b *batcher[Req, Res]) run(batch []*batchCall[Req, Res]) {
	for {
		b.deliver(batch)
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		batch = b.takeLocked()
		b.mu.Unlock()
	}
}

func (b *batcher[Req, Res]) deliver(batch []*batchCall[Req, Res]) {
	reqs := make([]Req, len(batch))
	for i, c := range batch {
		reqs[i] = c.req
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	results, errs, err := b.send(ctx, reqs) // send checks the leader answered every request
	cancel()
	for i, c := range batch {
		if err != nil {
			c.err = err
		} else {
			c.res, c.err = results[i], errs[i]
		}
		close(c.done)
	}
}

// forwarded is a proposal's outcome on the leader.
type forwarded struct {
	index uint64
	res   *peerv1.CommandResult
}

// sendProposals is the ProposeBatch round trip of a proposal batcher.
func sendProposals(client peerv1.PeerClient) func(context.Context, []*peerv1.Command) ([]forwarded, []error, error) {
	return func(ctx context.Context, cmds []*peerv1.Command) ([]forwarded, []error, error) {
		resp, err := client.ProposeBatch(ctx, &peerv1.ProposeBatchRequest{Commands: cmds})
		if err != nil {
			return nil, nil, err
		}
		if len(resp.Results) != len(cmds) {
			return nil, nil, status.Errorf(codes.Unavailable, "leader answered %d results for %d commands", len(resp.Results), len(cmds))
		}
		out := make([]forwarded, len(cmds))
		errs := make([]error, len(cmds))
		for i, r := range resp.Results {
			switch {
			case r.Error != nil:
				errs[i] = api.FromOpError(r.Error)
			case r.Result == nil:
				errs[i] = fmt.Errorf("coordinator: leader returned no result for command %d of a batch", i)
			default:
				out[i] = forwarded{index: r.Index, res: r.Result}
			}
		}
		return out, errs, nil
	}
}

// sendKeepAlives is the KeepAliveSessions round trip of a keep-alive
// batcher: the result is the session's TTL, zero when it is unknown.
func sendKeepAlives(client peerv1.PeerClient) func(context.Context, []uint64) ([]time.Duration, []error, error) {
	return func(ctx context.Context, ids []uint64) ([]time.Duration, []error, error) {
		resp, err := client.KeepAliveSessions(ctx, &peerv1.KeepAliveSessionsRequest{SessionIds: ids})
		if err != nil {
			return nil, nil, err
		}
		if len(resp.TtlMs) != len(ids) {
			return nil, nil, status.Errorf(codes.Unavailable, "leader answered %d keep-alives for %d", len(resp.TtlMs), len(ids))
		}
		ttls := make([]time.Duration, len(ids))
		for i, ms := range resp.TtlMs {
			ttls[i] = wiretime.Millis(ms)
		}
		return ttls, make([]error, len(ids)), nil
	}
}
