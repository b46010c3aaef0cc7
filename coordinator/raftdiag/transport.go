package raftdiag

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Hooks are what the node adds to the replication calls raft makes through
// the Transport. A nil hook does nothing.
type Hooks struct {
	// Refuse is asked before every AppendEntries, new pipeline and
	// pipelined append; an error fails the call unsent (a node whose disk
	// hangs must stop asserting its leadership).
	Refuse func() error
	// Retry is given a failed AppendEntries that is not a heartbeat, as
	// leader of term, with call to send it again; raft gets what it
	// returns (holding the call while the follower is away keeps raft from
	// backing off).
	Retry func(id raft.ServerID, target raft.ServerAddress, term uint64, first error, call func() error) error
	// SnapshotFailed is called after an InstallSnapshot that started at
	// start failed, before raft gets the error.
	SnapshotFailed func(id raft.ServerID, target raft.ServerAddress, term uint64, start time.Time)
	// Replied sees every reply to an AppendEntries after the diagnostics
	// recorded it and before raft reads it, and may change what raft reads
	// (the node's faster walk back over a follower's conflicting entries).
	Replied func(id raft.ServerID, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse)
}

// Transport is the raft transport with the calls the diagnostics need to
// see. Embedding keeps every other method (and the optional WithClose and
// WithPreVote interfaces) of the network transport.
type Transport struct {
	*raft.NetworkTransport
	d     *Diagnostics
	hooks Hooks
	// pipes are the open pipelines, closed when the node shuts down.
	pipes pipelines
	// push is the newest commit for the followers to hear of.
	push commitPush
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
)

// WrapTransport returns nt as raft should use it: observed by d, with the
// node's hooks.
func (d *Diagnostics) WrapTransport(nt *raft.NetworkTransport, hooks Hooks) *Transport {
	return &Transport{NetworkTransport: nt, d: d, hooks: hooks, push: commitPush{wake: make(chan struct{}, 1)}}
}

func (t *Transport) refuse() error {
	if t.hooks.Refuse == nil {
		return nil
	}
	return t.hooks.Refuse()
}

// AppendEntries is the network transport's behind the Refuse hook, with a
// failed append (not a heartbeat) handed to the Retry hook; every reply is
// recorded in the leader's view of the follower.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if err := t.refuse(); err != nil {
		return err
	}
	start := time.Now()
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err != nil && !IsHeartbeat(args) && t.hooks.Retry != nil {
		err = t.hooks.Retry(id, target, args.Term, err, func() error {
			start = time.Now()
			return t.NetworkTransport.AppendEntries(id, target, args, resp)
		})
	}
	if err == nil {
		t.d.sawReply(id, args.Term, IsHeartbeat(args), start, time.Now(), resp.LastLog)
		if t.hooks.Replied != nil {
			t.hooks.Replied(id, args, resp)
		}
	}
	return err
}

// InstallSnapshot is the network transport's, with the SnapshotFailed hook
// run before raft sees a failure.
func (t *Transport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	start := time.Now()
	err := t.NetworkTransport.InstallSnapshot(id, target, args, resp, data)
	if err != nil && t.hooks.SnapshotFailed != nil {
		t.hooks.SnapshotFailed(id, target, args.Term, start)
	}
	return err
}

// AppendEntriesPipeline is the network transport's pipeline behind the
// Refuse hook: raft's replication goroutines also send the commit index
// every CommitTimeout through it, which would keep the followers' leader
// alive as surely as heartbeats.
func (t *Transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if err := t.refuse(); err != nil {
		return nil, err
	}
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	g := &guardedPipeline{AppendPipeline: p, t: t, out: make(chan raft.AppendFuture), closed: make(chan struct{})}
	if err := t.pipes.add(g); err != nil {
		p.Close()
		return nil, err
	}
	go g.forward() // ends when g is closed
	return g, nil
}

// RequestVote is the network transport's, noting that this node takes part
// in the term's election (and whether as a leadership transfer).
func (t *Transport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	t.d.sawVote(args.Term, args.LeadershipTransfer)
	return t.NetworkTransport.RequestVote(id, target, args, resp)
}

// ClosePipelines closes raft's open replication pipelines and refuses new
// ones. Call it just before raft.Shutdown (see pipelines).
func (t *Transport) ClosePipelines() {
	if t != nil {
		t.pipes.closeAll()
	}
}

// IsHeartbeat matches raft's own test (net_transport.go): a heartbeat
// carries nothing but the term and the leader.
func IsHeartbeat(a *raft.AppendEntriesRequest) bool {
	return a.PrevLogEntry == 0 && a.PrevLogTerm == 0 && len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}

// pipelines tracks a node's open replication pipelines so that Close can
// end them before raft's Shutdown. hashicorp/raft's pipelineReplicate can
// sit forever in a pipeline's AppendEntries once its decoder has returned
// (both of the pipeline's queues full, nobody reading them), and
// raft.Shutdown then waits for it forever: CI caught a node's Close hanging
// there after a leadership transfer. Closing the pipeline releases that
// send; raft then stops replicating as it would on any pipeline error.
type pipelines struct {
	mu   sync.Mutex
	open map[*guardedPipeline]struct{}
	shut bool
}

var errPipelinesShut = errors.New("raftdiag: shutting down, no new replication pipelines")

func (ps *pipelines) add(g *guardedPipeline) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.shut {
		return errPipelinesShut
	}
	if ps.open == nil {
		ps.open = map[*guardedPipeline]struct{}{}
	}
	ps.open[g] = struct{}{}
	return nil
}

func (ps *pipelines) remove(g *guardedPipeline) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.open, g)
}

// closeAll closes every open pipeline and refuses new ones.
func (ps *pipelines) closeAll() {
	ps.mu.Lock()
	ps.shut = true
	open := ps.open
	ps.open = nil
	ps.mu.Unlock()
	for g := range open {
		g.shut() // the network pipeline tolerates a second Close
	}
}

// guardedPipeline is a network pipeline behind the Refuse hook, known to
// the transport's pipelines while open. For the commit notices
// (commitpush.go) it remembers what raft last sent on it, serializes the
// notices with raft's sends (the network pipeline is not safe for concurrent
// use, and its replies come back in the order of the requests), and sees
// every reply on its way to raft (forward), to send a notice only while
// nothing is in flight and nothing has failed.
type guardedPipeline struct {
	raft.AppendPipeline
	t *Transport

	out       chan raft.AppendFuture // the replies, as raft consumes them
	closed    chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex // held across a send: raft's, or a notice's
	header raft.RPCHeader
	term   uint64 // of raft's last request; 0 before the first

	// Read without mu by forward, which must never wait for a sender: a
	// sender holding mu can be waiting for forward to take a reply.
	lastSent   atomic.Uint64 // the highest entry index raft sent on this pipeline
	commitSent atomic.Uint64 // the highest commit index sent on it
	sent       atomic.Uint64 // requests sent, raft's and notices
	answered   atomic.Uint64 // replies taken from the network pipeline
	failed     atomic.Bool   // a reply refused or failed: raft abandons the pipeline
}

// Consumer is where raft reads the replies: forward's channel.
func (p *guardedPipeline) Consumer() <-chan raft.AppendFuture { return p.out }

func (p *guardedPipeline) Close() error {
	p.t.pipes.remove(p)
	return p.shut()
}

// shut closes the network pipeline and ends forward.
func (p *guardedPipeline) shut() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return p.AppendPipeline.Close()
}

// forward hands raft each reply of the network pipeline, noting it first.
// A reply that makes the pipeline idle may let a pending notice go.
func (p *guardedPipeline) forward() {
	in := p.AppendPipeline.Consumer()
	for {
		var f raft.AppendFuture
		select {
		case f = <-in:
		case <-p.closed:
			return
		}
		if resp := f.Response(); f.Error() != nil || resp == nil || !resp.Success || resp.Term > f.Request().Term {
			p.failed.Store(true)
		}
		p.answered.Add(1)
		p.wakeIfPushable()
		select {
		case p.out <- f:
		case <-p.closed:
			return
		}
	}
}

func (p *guardedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if err := p.t.refuse(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := p.AppendPipeline.AppendEntries(args, resp)
	if err == nil {
		p.sent.Add(1)
		p.header, p.term = args.RPCHeader, args.Term
		if args.LeaderCommitIndex > p.commitSent.Load() {
			p.commitSent.Store(args.LeaderCommitIndex)
		}
		if n := len(args.Entries); n > 0 && args.Entries[n-1].Index > p.lastSent.Load() {
			p.lastSent.Store(args.Entries[n-1].Index)
		}
	}
	return f, err
}
