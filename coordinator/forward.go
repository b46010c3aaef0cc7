package coordinator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

const (
	// forwardInflight is how many batches a follower has in flight to the
	// leader at once: one commits while the next collects proposals.
	forwardInflight = 2
	// forwardMaxBatch bounds one batch (raft's MaxAppendEntries default).
	forwardMaxBatch = 256
)

// forwarder sends a follower's proposals to one leader, coalescing the ones
// that arrive while earlier batches are in flight into one ProposeBatch RPC.
// Under load this turns many small forwarded writes into one RPC and one
// group commit on the leader; when idle a proposal goes out at once.
type forwarder struct {
	client  peerv1.PeerClient
	goFunc  func(func())
	ctx     context.Context // the server's: Close cancels batches in flight
	timeout time.Duration

	mu       sync.Mutex
	queue    []*forwardCall
	inflight int
}

type forwardCall struct {
	cmd   *peerv1.Command
	done  chan struct{}
	index uint64
	res   *peerv1.CommandResult
	err   error
}

// propose forwards cmd and waits for its result. When ctx ends first the
// command may still be applied; the caller's retry with the same request id
// is then answered from the leader's dedup table.
func (f *forwarder) propose(ctx context.Context, cmd *peerv1.Command) (uint64, *peerv1.CommandResult, error) {
	c := &forwardCall{cmd: cmd, done: make(chan struct{})}
	f.mu.Lock()
	f.queue = append(f.queue, c)
	if f.inflight < forwardInflight {
		f.inflight++
		batch := f.takeLocked()
		f.goFunc(func() { f.send(batch) })
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.index, c.res, c.err
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

func (f *forwarder) takeLocked() []*forwardCall {
	n := min(len(f.queue), forwardMaxBatch)
	batch := f.queue[:n:n]
	f.queue = f.queue[n:]
	return batch
}

// send delivers batch, then keeps sending whatever queued meanwhile.
func (f *forwarder) send(batch []*forwardCall) {
	for {
		f.deliver(batch)
		f.mu.Lock()
		if len(f.queue) == 0 {
			f.inflight--
			f.mu.Unlock()
			return
		}
		batch = f.takeLocked()
		f.mu.Unlock()
	}
}

func (f *forwarder) deliver(batch []*forwardCall) {
	req := &peerv1.ProposeBatchRequest{Commands: make([]*peerv1.Command, len(batch))}
	for i, c := range batch {
		req.Commands[i] = c.cmd
	}
	ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
	resp, err := f.client.ProposeBatch(ctx, req)
	cancel()
	if err == nil && len(resp.Results) != len(batch) {
		err = status.Errorf(codes.Unavailable, "leader answered %d results for %d commands", len(resp.Results), len(batch))
	}
	for i, c := range batch {
		switch {
		case err != nil:
			c.err = err
		case resp.Results[i].Error != nil:
			e := resp.Results[i].Error
			c.err = status.Error(codes.Code(e.Code), e.Message)
		case resp.Results[i].Result == nil:
			c.err = fmt.Errorf("coordinator: leader returned no result for command %d of a batch", i)
		default:
			c.index, c.res = resp.Results[i].Index, resp.Results[i].Result
		}
		close(c.done)
	}
}
