// Package batcher coalesces a follower's requests of one kind to the
// leader into batches: a request goes out at once when fewer than Inflight
// batches are in flight, and whatever arrives meanwhile waits for the next
// batch (at most Max requests and MaxBytes of them). Under load this turns
// many small requests into one RPC (and, for the node's proposals, one
// group commit on the leader); when idle a request goes out at once.
package batcher

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

const (
	// Inflight is how many batches a follower has in flight to the
	// leader per kind of request: one is answered while the next collects.
	Inflight = 2
	// Max bounds one batch (raft's MaxAppendEntries default).
	Max = 256
)

// BytesFor is the most encoded request bytes one batch carries (MaxBytes),
// for a peer connection whose messages may be up to maxMsg bytes: half of
// it, leaving room for the envelope and for the reply. A single request
// larger than that still goes out, alone: the client API already refused
// anything that does not fit one message.
func BytesFor(maxMsg int) int { return maxMsg / 2 }

// ProtoSize is a message's encoded size inside a batch (Size): its own plus
// the tag and length prefix a repeated field adds (at most 1 + 5 bytes).
func ProtoSize[M proto.Message](m M) int { return proto.Size(m) + 6 }

// Batcher sends a follower's requests of one kind to the leader, coalescing
// those that arrive while earlier batches are in flight into one RPC. Set
// its fields before the first Do and leave them.
type Batcher[Req, Res any] struct {
	// Send delivers one batch and returns one result or error per request.
	Send func(ctx context.Context, reqs []Req) ([]Res, []error, error)
	// GoFunc runs a batch's goroutine; its caller owns and waits for it.
	GoFunc func(func())
	// Ctx is the server's: Close cancels batches in flight.
	Ctx context.Context
	// Timeout bounds one batch's round trip.
	Timeout time.Duration
	// Size, when set, is a request's encoded size, and a batch holds at most
	// MaxBytes of them (and always at least one request). Without it only
	// Max bounds a batch.
	Size     func(Req) int
	MaxBytes int

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

// Do sends req with the next batch and waits for its result. When ctx ends
// first the request may still take effect on the leader: proposals are then
// answered from the dedup table on retry, keep-alives are harmless to repeat.
func (b *Batcher[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	c := &batchCall[Req, Res]{req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.inflight < Inflight {
		b.inflight++
		batch := b.takeLocked()
		b.GoFunc(func() { b.run(batch) })
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

func (b *Batcher[Req, Res]) takeLocked() []*batchCall[Req, Res] {
	n := min(len(b.queue), Max)
	if b.Size != nil {
		total := 0
		for i, c := range b.queue[:n] {
			total += b.Size(c.req)
			if i > 0 && total > b.MaxBytes {
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
func (b *Batcher[Req, Res]) run(batch []*batchCall[Req, Res]) {
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

func (b *Batcher[Req, Res]) deliver(batch []*batchCall[Req, Res]) {
	reqs := make([]Req, len(batch))
	for i, c := range batch {
		reqs[i] = c.req
	}
	ctx, cancel := context.WithTimeout(b.Ctx, b.Timeout)
	results, errs, err := b.Send(ctx, reqs) // send checks the leader answered every request
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
