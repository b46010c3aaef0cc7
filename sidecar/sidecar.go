// Package sidecar is the process that runs beside every service instance. It
// holds a session with the coordinator cluster and registers the instance;
// it mirrors the breaker records of its service (as caller) and the
// registry of instances; it sums the outcomes its data plane and apps report
// and sends them to the coordinator every report interval; and it hands
// what to enforce to the local data plane (the xDS server for Envoy and
// proxyless gRPC, and apps following WatchBreakers). When the coordinator is
// unreachable for longer than a grace period it applies a degraded mode.
//
// Each of those parts has its own file (config.go, session.go, appliers.go,
// view.go, degraded.go, reports.go, status.go); DESIGN.md maps them.
package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/xds"
)

// Endpoint is one registered instance of a callee.
type Endpoint = Registration

// Callee is what the sidecar enforces for calls to one service.
type Callee struct {
	Name string
	// Protocol is the callee's ("grpc" or "http"), from its registrations.
	Protocol  string
	Endpoints []Endpoint // sorted by instance
	// Record is the breaker to enforce (nil: no breaker yet, CLOSED).
	Record *breaker.PairRecord
	// Source is ModeCoordinator or the degraded mode that decided Record.
	Source Mode
	// Seen is when the sidecar learned the coordinator's current record.
	Seen time.Time
	// ProbeSecret, while Record is HALF_OPEN and this instance holds probe
	// permits, is the value of the probe header (xds.ProbeHeader) that the
	// data plane lets through: 128 random bits in hex, drawn per callee and
	// generation and handed only to the sidecar's guard clients
	// (WatchBreakers). Empty otherwise.
	ProbeSecret string
}

// View is everything the local data plane must enforce.
type View struct {
	Service, Instance string
	Mode              Mode
	Callees           []Callee // sorted by name
	// ProbeGate is the address of the sidecar's probe gate (gate.go),
	// where clients without Colony's library send a HALF_OPEN probe
	// holder's calls.
	ProbeGate string
}

// Enforcer applies Views to a data plane (the xDS server). Update must not
// block for long: it is called with every change.
type Enforcer interface {
	Update(View) error
}

// Sidecar is one running sidecar. Start it with New; Close stops it.
type Sidecar struct {
	cfg Config
	log *slog.Logger
	c   *client.Client
	// closing is set when Close starts, so the session it closes is not
	// mistaken for a lost one.
	closing atomic.Bool

	grpc *grpc.Server
	lis  net.Listener

	mu          sync.Mutex
	records     map[string]*coordRecord            // callee -> the coordinator's record
	services    map[string]map[string]Registration // service -> instance -> registration
	policies    map[string]breaker.PolicySet       // callee -> policies
	session     *client.Session
	lastReply   time.Time // the coordinator last answered (besides keep-alives)
	degraded    bool
	agg         map[string]*breaker.Counts     // callee -> this period's counts
	local       map[string]*localBreaker       // callee -> Local mode breaker
	classifiers map[string]*breaker.Classifier // callee -> from its policy; cleared when policies change
	enforcers   []Enforcer
	subs        map[chan struct{}]struct{} // WatchBreakers streams to poke
	lastView    View
	secrets     map[string]probeSecret // callee -> the current generation's probe secret
	alsNodes    map[string]int         // node id -> open access log streams
	viewNames   []string               // lastView's callees' names, sorted
	gate        *gate
	metrics     *metrics
	started     time.Time // New: a sidecar that never reached the coordinator is stale from then

	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the sidecar starts (goFunc); Close waits
	// for them. goMu and stopped keep goFunc from adding to wg once Close
	// waits on it (a gRPC handler may still be running then).
	wg      sync.WaitGroup
	goMu    sync.Mutex
	stopped bool
}

type coordRecord struct {
	rec   breaker.PairRecord
	seen  time.Time
	watch trace.SpanContext // its watch delivery span (tracing.go); invalid when untraced
}

// New starts a sidecar: it listens on cfg.APIAddr and connects to the
// coordinators in the background (it serves the last known state, empty at
// first, until it does). Enforcers get every View.
func New(cfg Config, enforcers ...Enforcer) (*Sidecar, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.checkIdentity(cfg.Logger)
	ccfg := client.Config{Endpoints: cfg.Coordinators, Logger: cfg.Logger, TracerProvider: cfg.TracerProvider}
	var srvOpts []grpc.ServerOption
	if cfg.TLS != nil {
		ccfg.TLS = cfg.TLS.ClientConfig("")
		if cfg.ListenTLS {
			srvOpts = append(srvOpts, grpc.Creds(credentials.NewTLS(cfg.TLS.ServerConfig(tls.RequireAndVerifyClientCert, "h2"))))
		}
	}
	c, err := client.New(ccfg)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("sidecar API address: %w", err)
	}
	gateLis, err := net.Listen("tcp", cfg.ProbeGateAddr)
	if err != nil {
		lis.Close()
		c.Close()
		return nil, fmt.Errorf("probe gate address: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sidecar{
		cfg: cfg, log: cfg.Logger.With("service", cfg.Service, "instance", cfg.Instance), c: c,
		lis: lis, grpc: grpc.NewServer(srvOpts...),
		records: map[string]*coordRecord{}, services: map[string]map[string]Registration{},
		policies: map[string]breaker.PolicySet{}, agg: map[string]*breaker.Counts{},
		local: map[string]*localBreaker{}, secrets: map[string]probeSecret{}, alsNodes: map[string]int{}, classifiers: map[string]*breaker.Classifier{}, enforcers: enforcers, subs: map[chan struct{}]struct{}{},
		ctx: ctx, cancel: cancel, started: time.Now(),
	}
	s.gate = newGate(gateConfig{Listener: gateLis, MaxCalls: cfg.ProbeGateMaxCalls,
		Lookup: s.gateTarget, Record: s.gateOutcome, Log: s.log.With("part", "probe gate")})
	s.metrics = newMetrics(s)
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(s.metrics); err != nil {
			cancel()
			s.gate.Close()
			lis.Close()
			c.Close()
			return nil, fmt.Errorf("registering the sidecar's metrics: %w", err)
		}
	}
	colonyv1.RegisterSidecarServer(s.grpc, &api{s: s})
	lk := newLocks(s)
	colonyv1.RegisterLocksServer(s.grpc, lk)
	colonyv1.RegisterElectionsServer(s.grpc, lk)
	accesslogv3.RegisterAccessLogServiceServer(s.grpc, &accessLogs{s: s})
	for _, e := range enforcers {
		if x, ok := e.(*XDS); ok {
			x.observe(func(en xds.Enforcement) {
				s.metrics.observe(en)
				s.traceAck(en)
			}, func(xds.NACK) { s.metrics.nacks.Inc() }, s.onLoad)
		}
		// An enforcer that serves gRPC (xDS, Envoy's access logs) shares the
		// sidecar's port: one address for apps, Envoy and proxyless clients.
		if r, ok := e.(interface{ Register(grpc.ServiceRegistrar) }); ok {
			r.Register(s.grpc)
		}
	}
	s.publish() // enforcers have the initial view before any client connects
	s.goFunc(func() {
		if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("sidecar API server stopped", "err", err)
		}
	})
	mirrors := []*mirror{
		{root: contract.CallerBreakers(cfg.Service), depth: 1, apply: s.applyRecord},
		{root: contract.PoliciesRoot, depth: 1, apply: s.applyPolicy},
	}
	// The registry: all of it, or with Callees only theirs, so a sidecar in
	// a large mesh reads and follows the instances it routes to, not every
	// registration change of every service.
	if len(cfg.Callees) == 0 {
		mirrors = append(mirrors, &mirror{root: contract.ServicesRoot, depth: 2, apply: s.registryApplier("")})
	}
	for _, callee := range cfg.Callees {
		mirrors = append(mirrors, &mirror{root: contract.ServiceDir(callee), depth: 1, apply: s.registryApplier(callee)})
	}
	for _, m := range mirrors {
		m.c, m.log, m.contact = c, s.log, s.contact
		s.goFunc(func() { m.run(ctx) })
	}
	s.goFunc(s.runSession)
	s.goFunc(s.runReports)
	s.goFunc(s.runStaleness)
	return s, nil
}

// GRPCServer returns the server of the sidecar's local API, for enforcers
// that serve on it too (xDS, Envoy's access log service). Register before
// the first client connects.
func (s *Sidecar) GRPCServer() *grpc.Server { return s.grpc }

// Addr returns the address of the local API.
func (s *Sidecar) Addr() string { return s.lis.Addr().String() }

// goFunc runs f on a goroutine that Close waits for. f must return once
// s.ctx is done or the gRPC server has stopped. It reports false, and does
// not run f, when Close has already started waiting.
func (s *Sidecar) goFunc(f func()) bool {
	s.goMu.Lock()
	defer s.goMu.Unlock()
	if s.stopped {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// Close deregisters the instance (closing its session) and stops every
// goroutine of the sidecar.
func (s *Sidecar) Close() error {
	s.closing.Store(true)
	s.mu.Lock()
	sess := s.session
	s.mu.Unlock()
	var err error
	if sess != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = sess.Close(ctx)
		cancel()
	}
	s.cancel()
	s.mu.Lock()
	for ch := range s.subs {
		close(ch)
		delete(s.subs, ch)
	}
	s.mu.Unlock()
	s.grpc.Stop() // ends every stream, so handler goroutines' Recv returns
	s.gate.Close()
	s.goMu.Lock()
	s.stopped = true
	s.goMu.Unlock()
	s.wg.Wait()
	return errors.Join(err, s.c.Close())
}

// View returns what the sidecar enforces now.
func (s *Sidecar) View() View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastView
}

// subscribe returns a channel poked on every change of the view; it is
// closed when the sidecar closes.
func (s *Sidecar) subscribe() (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		close(ch)
		return ch, func() {}
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}
