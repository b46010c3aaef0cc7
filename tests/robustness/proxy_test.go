//go:build unix

package robustness

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// proxyMode says what a Proxy does with connections.
type proxyMode int

const (
	// modePass forwards connections, after the configured latency.
	modePass proxyMode = iota
	// modeBlackhole accepts new connections and never forwards a byte of
	// them (nor reads them: the sender's buffers fill as on a dead link),
	// and cuts the connections it was forwarding.
	modeBlackhole
	// modeRefuse resets new connections at once and cuts the connections it
	// was forwarding.
	modeRefuse
)

func (m proxyMode) String() string {
	switch m {
	case modePass:
		return "pass"
	case modeBlackhole:
		return "blackhole"
	case modeRefuse:
		return "refuse"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Proxy is a TCP proxy from a loopback port of its own to one target, with
// faults at connection granularity only: it forwards every byte of a
// connection in order (after a delay, if one is set) or cuts the whole
// connection, never drops or reorders bytes inside a connection that goes on
// (that would corrupt raft's and gRPC's framing, which no real network
// does).
type Proxy struct {
	name   string
	target string
	lis    net.Listener

	mu     sync.Mutex
	mode   proxyMode
	delay  time.Duration // added to every chunk of bytes
	jitter time.Duration // plus up to this much, uniformly
	rng    *rand.Rand
	conns  map[*proxyConn]struct{}
	closed bool
	stats  proxyStats

	wg sync.WaitGroup // the accept loop and every connection's goroutines
}

// proxyStats counts what a proxy did, for the report.
type proxyStats struct {
	Forwarded, Blackholed, Refused, DialFailed, Cut int
}

// proxyConn is one accepted connection and, once dialled, its upstream.
type proxyConn struct {
	down, up  net.Conn // up is nil for a blackholed connection
	closeOnce sync.Once
}

func (c *proxyConn) close() {
	c.closeOnce.Do(func() {
		c.down.Close()
		if c.up != nil {
			c.up.Close()
		}
	})
}

// newProxy starts a proxy to target on a free port of 127.0.0.1. seed makes
// its latency jitter reproducible (as far as scheduling allows).
func newProxy(name, target string, seed uint64) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", name, err)
	}
	p := &Proxy{
		name:   name,
		target: target,
		lis:    lis,
		rng:    rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		conns:  map[*proxyConn]struct{}{},
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Name is the proxy's name in logs and reports ("n1->n2").
func (p *Proxy) Name() string { return p.name }

// SetMode sets what happens to connections. Leaving modePass cuts every
// connection, forwarded or held; entering it closes the held (blackholed)
// ones, whose senders redial.
func (p *Proxy) SetMode(m proxyMode) {
	p.mu.Lock()
	if p.mode == m {
		p.mu.Unlock()
		return
	}
	p.mode = m
	cut := p.takeConnsLocked()
	p.mu.Unlock()
	for _, c := range cut {
		c.close()
	}
}

// SetLatency delays every chunk forwarded from now on, in both directions,
// by d plus a uniform jitter in [0, jitter). Order is kept: a chunk is never
// written before one read earlier.
func (p *Proxy) SetLatency(d, jitter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay, p.jitter = d, jitter
}

// CutAll closes every connection the proxy holds; new ones are handled by
// the current mode.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	cut := p.takeConnsLocked()
	p.mu.Unlock()
	for _, c := range cut {
		c.close()
	}
}

// Stats returns what the proxy did so far.
func (p *Proxy) Stats() proxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

func (p *Proxy) takeConnsLocked() []*proxyConn {
	out := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		out = append(out, c)
		delete(p.conns, c)
	}
	p.stats.Cut += len(out)
	return out
}

// Close stops accepting, cuts every connection and waits for every
// goroutine of the proxy.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.lis.Close()
	p.CutAll()
	p.wg.Wait()
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		down, err := p.lis.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			down.Close()
			return
		}
		switch p.mode {
		case modeRefuse:
			p.stats.Refused++
			p.mu.Unlock()
			if tc, ok := down.(*net.TCPConn); ok {
				tc.SetLinger(0) // a reset, like a closed port
			}
			down.Close()
			continue
		case modeBlackhole:
			p.stats.Blackholed++
			p.conns[&proxyConn{down: down}] = struct{}{}
			p.mu.Unlock()
			continue
		}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.forward(down)
	}
}

// forward dials the target for down and copies both ways until either side
// ends or the connection is cut.
func (p *Proxy) forward(down net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, time.Second)
	p.mu.Lock()
	if err != nil || p.closed || p.mode != modePass {
		// The target is down (a killed node), or a fault began while we
		// dialled: the connection ends before any byte went through.
		if err != nil {
			p.stats.DialFailed++
		}
		p.mu.Unlock()
		down.Close()
		if up != nil {
			up.Close()
		}
		return
	}
	c := &proxyConn{down: down, up: up}
	p.conns[c] = struct{}{}
	p.stats.Forwarded++
	p.mu.Unlock()

	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { defer pipes.Done(); p.pipe(c, up, down) }()
	go func() { defer pipes.Done(); p.pipe(c, down, up) }()
	pipes.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// chunk is bytes read from one side, due to be written to the other.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst in order, each chunk after its delay, and closes
// the whole connection when either side fails or ends: a connection is
// forwarded whole or cut whole.
func (p *Proxy) pipe(c *proxyConn, dst, src net.Conn) {
	defer c.close()
	ch := make(chan chunk, 64) // backpressure: the reader blocks when the writer lags
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ck := range ch {
			if d := time.Until(ck.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(ck.b); err != nil {
				c.close() // the reader then fails too and closes ch
				for range ch {
				}
				return
			}
		}
	}()
	var last time.Time
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			due := time.Now().Add(p.sampleDelay())
			if due.Before(last) {
				due = last // never overtake an earlier chunk
			}
			last = due
			ch <- chunk{b: append([]byte(nil), buf[:n]...), due: due}
		}
		if err != nil { // EOF, a reset or a cut: the connection ends either way
			break
		}
	}
	close(ch)
	<-done
}

func (p *Proxy) sampleDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.delay
	if p.jitter > 0 {
		d += time.Duration(p.rng.Int64N(int64(p.jitter)))
	}
	return d
}
