package client

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/internal/telemetry"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// DefaultEndpoint is the coordinator address used when Config.Endpoints is empty.
const DefaultEndpoint = "127.0.0.1:7400"

const (
	defaultDialTimeout    = 3 * time.Second
	defaultRequestTimeout = 5 * time.Second

	// Retry backoff between attempts: exponential from retryBase, capped at
	// retryMax, with equal jitter (a random point in the upper half).
	retryBase = 25 * time.Millisecond
	retryMax  = time.Second

	// attemptShare: with other endpoints to try, one attempt (and the wait
	// for its connection) takes at most 1/attemptShare of the time the
	// caller has left.
	attemptShare = 3
)

// Config configures a Client. The zero value talks to DefaultEndpoint with
// the default timeouts and no logging.
type Config struct {
	// Endpoints are the gRPC addresses (host:port) of coordinator nodes. Any
	// node serves any request, so listing several gives failover. Empty:
	// DefaultEndpoint.
	Endpoints []string
	// DialTimeout is the least time a connection attempt to one endpoint is
	// given before gRPC counts it as failed and backs off. Zero: 3s.
	DialTimeout time.Duration
	// RequestTimeout bounds one attempt of a request on one endpoint; when it
	// expires the client tries the next endpoint, within the caller's
	// context. With several endpoints, an attempt of a read or a write with
	// a request id also gets at most a third of the caller's remaining
	// time, and an endpoint that refuses connections is skipped at once. It must be longer than a server holds a request while it knows
	// no leader. It also bounds the wait for a watch to be registered. Zero: 5s.
	RequestTimeout time.Duration
	// Logger receives debug records about failover, reconnects and sessions.
	// Nil: discard.
	Logger *slog.Logger
	// ClientID scopes this client's request ids on the coordinator (1 to 64
	// characters of A-Z a-z 0-9 . _ : -). Set it, with WithRequestID, to
	// retry a write across process restarts. Empty: a random id per Client.
	ClientID string
	// TLS secures the connections to the coordinators: it should present
	// this client's certificate and verify the nodes' (a secure cluster
	// requires both). Nil: plaintext, which only an insecure cluster accepts.
	TLS *tls.Config
	// TracerProvider, when set, traces this client's RPCs (otelgrpc) and
	// sends the calling span's W3C trace context with each, so a
	// coordinator continues the caller's trace: a sidecar's outcome report
	// starts the trace of the transition it causes. Session keep-alives are
	// not traced. Nil: no spans, and no trace context sent.
	TracerProvider trace.TracerProvider
	// UnaryReports sends each Report as its own unary call. By default an
	// untraced client sends them on one Breakers.ReportStream per node
	// (12-28% less coordinator CPU per report, tests/bench TestReportCPU)
	// and moves requests and persistent watches off a node whose acks say
	// it leads (reportstream.go); a traced client always sends unary calls.
	UnaryReports bool
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Endpoints:      []string{DefaultEndpoint},
		DialTimeout:    defaultDialTimeout,
		RequestTimeout: defaultRequestTimeout,
	}
}

// Validate reports whether the configuration can be used (after defaults).
func (cfg Config) Validate() error {
	for i, e := range cfg.Endpoints {
		if e == "" {
			return fmt.Errorf("client: config: endpoint %d is empty", i)
		}
	}
	if cfg.DialTimeout < 0 {
		return fmt.Errorf("client: config: dial timeout %v is negative", cfg.DialTimeout)
	}
	if cfg.RequestTimeout < 0 {
		return fmt.Errorf("client: config: request timeout %v is negative", cfg.RequestTimeout)
	}
	return nil
}

func (cfg Config) withDefaults() Config {
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = []string{DefaultEndpoint}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = defaultRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// Client talks to a coordinator cluster. It is safe for concurrent use. Close
// it when done: that ends its sessions' keep-alives and its watches.
type Client struct {
	cfg Config
	log *slog.Logger
	eps []*endpoint

	clientID string // sent with every request (clientid.go)

	cur  atomic.Int64  // index into eps of the sticky current endpoint
	zxid atomic.Uint64 // highest zxid seen in any response or event

	// ctx is canceled (cause ErrClosed) by Close; background goroutines
	// (session keep-alives, watch streams) derive from it and are counted in wg.
	ctx    context.Context
	cancel context.CancelCauseFunc
	mu     sync.Mutex // guards closed against wg.Add racing wg.Wait
	closed bool
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	rsMu sync.Mutex
	rs   *reportStream // the open report stream (reportstream.go), or nil
	// spread picks, at random per client, which follower a client moves
	// to off the leader (reportstream.go).
	spread uint64
}

// endpoint is one coordinator node and its connection.
type endpoint struct {
	idx      int
	addr     string
	conn     *grpc.ClientConn
	tree     colonyv1.TreeClient
	sessions colonyv1.SessionsClient
	watch    colonyv1.WatchClient
	cluster  colonyv1.ClusterClient
	breakers colonyv1.BreakersClient

	// noReportStream: the node answered ReportStream with Unimplemented;
	// reports to it go as unary Reports.
	noReportStream atomic.Bool
	// leaderSince is when the node last said it leads (UnixNano), zero
	// when it last said it does not (reportstream.go).
	leaderSince atomic.Int64
}

// transportCredentials are TLS with cfg, or plaintext without.
func transportCredentials(cfg *tls.Config) credentials.TransportCredentials {
	if cfg == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(cfg)
}

// New returns a Client for the endpoints in cfg. It does not wait for any
// connection: connections are made on first use and re-made as needed.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	clientID, err := clientIDFor(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.TLS != nil && cfg.TLS.ClientSessionCache == nil {
		// Resume TLS sessions on reconnect: a node that restarts, or drops
		// its connections, then sees abbreviated handshakes, cheaper for
		// both sides, from the clients it served before.
		cfg.TLS = cfg.TLS.Clone()
		cfg.TLS.ClientSessionCache = tls.NewLRUClientSessionCache(2 * len(cfg.Endpoints))
	}
	c := &Client{cfg: cfg, log: cfg.Logger, clientID: clientID, spread: rand.Uint64()}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	for i, addr := range cfg.Endpoints {
		conn, err := grpc.NewClient(addr, append(clientIDDialOptions(clientID),
			grpc.WithTransportCredentials(transportCredentials(cfg.TLS)),
			telemetry.DialOption(cfg.TracerProvider),
			grpc.WithConnectParams(grpc.ConnectParams{
				// Reconnect quickly: a restarted node should be usable again
				// within a second or two, not after gRPC's default 2 minutes.
				Backoff: backoff.Config{
					BaseDelay:  100 * time.Millisecond,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   2 * time.Second,
				},
				MinConnectTimeout: cfg.DialTimeout,
			}),
		)...)
		if err != nil {
			c.cancel(ErrClosed)
			for _, ep := range c.eps {
				_ = ep.conn.Close()
			}
			return nil, fmt.Errorf("client: endpoint %q: %w", addr, err)
		}
		c.eps = append(c.eps, &endpoint{
			idx:      i,
			addr:     addr,
			conn:     conn,
			tree:     colonyv1.NewTreeClient(conn),
			sessions: colonyv1.NewSessionsClient(conn),
			watch:    colonyv1.NewWatchClient(conn),
			cluster:  colonyv1.NewClusterClient(conn),
			breakers: colonyv1.NewBreakersClient(conn),
		})
	}
	return c, nil
}

// Close ends the client's sessions' keep-alives and watches, waits for their
// goroutines and closes the connections. It does not close sessions on the
// server (use Session.Close for that); their ephemerals go when they expire.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancel(ErrClosed)
		c.wg.Wait()
		var errs []error
		for _, ep := range c.eps {
			if err := ep.conn.Close(); err != nil {
				errs = append(errs, fmt.Errorf("client: closing %s: %w", ep.addr, err))
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// LastZxid returns the highest zxid the client has seen in a response or a
// watch event. Reads WithSessionConsistency never return older state.
func (c *Client) LastZxid() uint64 { return c.zxid.Load() }

// Endpoint returns the address requests currently go to.
func (c *Client) Endpoint() string { return c.eps[c.cur.Load()].addr }

// goFunc runs f in a goroutine the client owns: Close cancels c.ctx and waits
// for it. It reports false, without running f, once the client is closed.
func (c *Client) goFunc(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// observe records a response header's zxid.
func (c *Client) observe(h *colonyv1.ResponseHeader) { c.observeZxid(h.GetZxid()) }

func (c *Client) observeZxid(z uint64) {
	for {
		cur := c.zxid.Load()
		if z <= cur || c.zxid.CompareAndSwap(cur, z) {
			return
		}
	}
}

// current returns the sticky endpoint.
func (c *Client) current() *endpoint { return c.eps[c.cur.Load()] }

// rotate moves the sticky endpoint past ep, unless another caller already
// has: to the next endpoint that is not known to lead, if there is one.
func (c *Client) rotate(ep *endpoint) {
	n := len(c.eps)
	next := (ep.idx + 1) % n
	for k := 1; k < n; k++ {
		if i := (ep.idx + k) % n; !c.isLeader(c.eps[i]) {
			next = i
			break
		}
	}
	if c.cur.CompareAndSwap(int64(ep.idx), int64(next)) && len(c.eps) > 1 {
		c.log.Debug("coordinator client: switching endpoint", "from", ep.addr, "to", c.eps[next].addr)
	}
}

// retryPolicy says which failures of one attempt may be retried on another
// endpoint.
type retryPolicy uint8

const (
	// retrySafe: the request is a read or carries a request id, so it can be
	// repeated even if the failed attempt reached the server.
	retrySafe retryPolicy = iota
	// retryUnavailable: the request is not idempotent (cluster operations);
	// retry only when the server said Unavailable, which means it did not act.
	retryUnavailable
)

// retryable reports whether err, from an attempt of a request whose caller
// context is still live, should be retried on the next endpoint.
func retryable(err error, p retryPolicy) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.DeadlineExceeded:
		// The attempt's own timeout fired (the caller's context is live).
		return p == retrySafe
	}
	return false
}

// call runs attempt on the sticky endpoint, failing over and retrying as
// policy allows until it succeeds, fails for good, or ctx ends. Each attempt
// gets ctx bounded by Config.RequestTimeout. The error is mapped with hint.
func (c *Client) call(ctx context.Context, policy retryPolicy, hint errHint, attempt func(ctx context.Context, ep *endpoint) error) error {
	var lastErr error
	var lastEp *endpoint
	// The last Unavailable answer, which says why the request could not be
	// served better than an attempt that ran out of its share of the time:
	// reported when the caller's time runs out.
	var unavailErr error
	var unavailEp *endpoint
	because := func() (error, *endpoint) {
		if unavailErr != nil && status.Code(lastErr) != codes.Unavailable {
			return unavailErr, unavailEp
		}
		return lastErr, lastEp
	}
	for n := 1; ; n++ {
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		ep := c.current()
		actx, cancel := context.WithTimeout(ctx, c.attemptTimeout(ctx, policy))
		err := c.connected(actx, ep)
		if err == nil {
			err = attempt(actx, ep)
		}
		cancel()
		if err == nil {
			return nil
		}
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		mapped := toError(err, hint)
		if ctx.Err() != nil {
			// The caller's time is up. Report what kept the request from
			// succeeding rather than just the context's error.
			switch status.Code(err) {
			case codes.Unavailable:
				return giveUp(ctx, mapped, ep, n)
			case codes.DeadlineExceeded, codes.Canceled:
				if lastErr != nil {
					last, ep := because()
					return giveUp(ctx, last, ep, n)
				}
			}
			return mapped
		}
		if !retryable(err, policy) {
			return mapped
		}
		c.log.Debug("coordinator client: attempt failed", "endpoint", ep.addr, "attempt", n, "err", err)
		lastErr, lastEp = mapped, ep
		if status.Code(err) == codes.Unavailable {
			unavailErr, unavailEp = mapped, ep
		}
		c.rotate(ep)
		if err := sleep(ctx, retryDelay(n)); err != nil {
			last, ep := because()
			return giveUp(ctx, last, ep, n)
		}
	}
}

// attemptTimeout bounds one attempt: Config.RequestTimeout, and, when
// another endpoint could take over a retry-safe request, a share of the
// caller's remaining time (1/attemptShare), so that an endpoint that takes
// the request but does not answer (a paused process) costs a fraction of
// the deadline, not all of it.
func (c *Client) attemptTimeout(ctx context.Context, policy retryPolicy) time.Duration {
	d := c.cfg.RequestTimeout
	if policy != retrySafe || len(c.eps) < 2 {
		return d
	}
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)/attemptShare)
	}
	return d
}

// connected waits until ep's connection is ready, for at most DialTimeout
// and 1/attemptShare of ctx's remaining time, when other endpoints could
// serve. An endpoint that refuses connections (its connection is in
// transient failure) fails at once; one that accepts but never completes
// the handshake fails when the wait ends. Either way the request was not
// sent, so the error is Unavailable and any request may go to the next
// endpoint. A lone endpoint is left to gRPC (fail-fast, within ctx).
func (c *Client) connected(ctx context.Context, ep *endpoint) error {
	state := ep.conn.GetState()
	if state == connectivity.Ready || len(c.eps) < 2 {
		return nil
	}
	wait := c.cfg.DialTimeout
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)/attemptShare)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ep.conn.Connect()
	for {
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return status.Errorf(codes.Unavailable, "%s: cannot connect (%s)", ep.addr, state)
		}
		if !ep.conn.WaitForStateChange(wctx, state) {
			return status.Errorf(codes.Unavailable, "%s: not connected after %v (%s)", ep.addr, wait.Round(time.Millisecond), state)
		}
		state = ep.conn.GetState()
	}
}

// giveUp is the error of a request that ran out of time while failing over:
// it matches both the last attempt's error and the context's.
func giveUp(ctx context.Context, last error, ep *endpoint, attempts int) error {
	return fmt.Errorf("%w (gave up after %d attempts, the last on %s: %w)", last, attempts, ep.addr, context.Cause(ctx))
}

// retryDelay is the wait after the n-th failed attempt (n >= 1).
func retryDelay(n int) time.Duration {
	d := retryMax
	if n <= 10 {
		d = min(retryBase<<(n-1), retryMax)
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

type requestIDKey struct{}

// WithRequestID returns a context that makes the next write made with it
// (Create, Set, Delete, Multi, OpenSession, CloseSession) carry id as its
// request id instead of a fresh random one. Use it, with a fixed
// Config.ClientID, to retry a write across process restarts: the coordinator
// applies a request id once per client id and answers repeats of the same
// write with the first result (a different write with that id is
// ErrInvalidArgument).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// requestID returns the caller's request id from ctx, or a new random one.
func requestID(ctx context.Context) string {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok && id != "" {
		return id
	}
	return newRequestID()
}

// newRequestID returns 128 random bits in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
