package coordinator

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/colonymesh/colony/coordinator/internal/batcher"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// peerPool holds one lazily dialled gRPC connection per peer address, and a
// cache of the member registry.
type peerPool struct {
	maxMsg      int
	creds       credentials.TransportCredentials // node-to-node TLS, or insecure
	dialOptions []grpc.DialOption                // more options for every connection (tracing)

	mu         sync.Mutex
	conns      map[string]*grpc.ClientConn
	proposers  map[string]*batcher.Batcher[*peerv1.Command, forwarded]
	keepAlives map[string]*batcher.Batcher[uint64, time.Duration]
	reporters  map[string]*batcher.Batcher[*peerv1.ReportBatch, struct{}]

	// For batchers: who owns their goroutines, what cancels them, and how
	// long one batch may take.
	goFunc         func(func())
	ctx            context.Context
	forwardTimeout time.Duration

	membersMu  sync.Mutex
	membersGen uint64
	membersMap map[string]*peerv1.RegisterMember
}

func newPeerPool(ctx context.Context, goFunc func(func()), creds credentials.TransportCredentials, maxDataBytes int, forwardTimeout time.Duration) *peerPool {
	return &peerPool{
		maxMsg:         maxMessageBytes(maxDataBytes),
		creds:          creds,
		conns:          map[string]*grpc.ClientConn{},
		proposers:      map[string]*batcher.Batcher[*peerv1.Command, forwarded]{},
		keepAlives:     map[string]*batcher.Batcher[uint64, time.Duration]{},
		reporters:      map[string]*batcher.Batcher[*peerv1.ReportBatch, struct{}]{},
		goFunc:         goFunc,
		ctx:            ctx,
		forwardTimeout: forwardTimeout,
		membersGen:     ^uint64(0),
	}
}

// proposer returns the proposal batcher for the leader at addr.
func (p *peerPool) proposer(addr string) *batcher.Batcher[*peerv1.Command, forwarded] {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.proposers[addr]
	if !ok {
		b = newBatcher(p, sendProposals(peerv1.NewPeerClient(p.connLocked(addr))))
		b.Size, b.MaxBytes = batcher.ProtoSize[*peerv1.Command], batcher.BytesFor(p.maxMsg)
		p.proposers[addr] = b
	}
	return b
}

// keepAliver returns the keep-alive batcher for the leader at addr.
func (p *peerPool) keepAliver(addr string) *batcher.Batcher[uint64, time.Duration] {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.keepAlives[addr]
	if !ok {
		b = newBatcher(p, sendKeepAlives(peerv1.NewPeerClient(p.connLocked(addr))))
		p.keepAlives[addr] = b
	}
	return b
}

// reporter returns the outcome-report batcher for the leader at addr: the
// reports of many Report calls go to the leader in one ForwardReports.
func (p *peerPool) reporter(addr string) *batcher.Batcher[*peerv1.ReportBatch, struct{}] {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.reporters[addr]
	if !ok {
		b = newBatcher(p, sendReports(peerv1.NewPeerClient(p.connLocked(addr))))
		b.Size, b.MaxBytes = batcher.ProtoSize[*peerv1.ReportBatch], batcher.BytesFor(p.maxMsg)
		p.reporters[addr] = b
	}
	return b
}

func newBatcher[Req, Res any](p *peerPool, send func(context.Context, []Req) ([]Res, []error, error)) *batcher.Batcher[Req, Res] {
	return &batcher.Batcher[Req, Res]{Send: send, GoFunc: p.goFunc, Ctx: p.ctx, Timeout: p.forwardTimeout}
}

func (p *peerPool) conn(addr string) *grpc.ClientConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connLocked(addr)
}

func (p *peerPool) connLocked(addr string) *grpc.ClientConn {
	if c, ok := p.conns[addr]; ok {
		return c
	}
	// NewClient does not dial; it fails only on a malformed target, which a
	// registered address never is. A nil conn would panic loudly on use.
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(p.creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.maxMsg), grpc.MaxCallSendMsgSize(p.maxMsg)),
	}, p.dialOptions...)
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		c, _ = grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(p.creds))
	}
	p.conns[addr] = c
	return c
}

func (p *peerPool) peer(addr string) peerv1.PeerClient { return peerv1.NewPeerClient(p.conn(addr)) }

func (p *peerPool) cluster(addr string) colonyv1.ClusterClient {
	return colonyv1.NewClusterClient(p.conn(addr))
}

// members returns the registry by member id, rebuilt only when gen moved.
func (p *peerPool) members(gen uint64, v *ztree.View) map[string]*peerv1.RegisterMember {
	p.membersMu.Lock()
	defer p.membersMu.Unlock()
	if gen != p.membersGen || p.membersMap == nil {
		m := map[string]*peerv1.RegisterMember{}
		for _, r := range v.Members() {
			m[r.Id] = r
		}
		p.membersMap, p.membersGen = m, gen
	}
	return p.membersMap
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		c.Close()
		delete(p.conns, addr)
	}
	clear(p.proposers)
	clear(p.keepAlives)
	clear(p.reporters)
}
