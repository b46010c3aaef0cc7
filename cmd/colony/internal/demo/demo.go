// Package demo runs a small mesh in one process for `colony dev`: five
// services calling each other, each instance with its own sidecar (xDS
// server and all), each caller with Colony's client library and a
// proxyless gRPC client per callee on xds:///<callee>:
//
//	users -> frontend -> checkout -> payments
//	                           \---> inventory
//	         frontend -> search ---> inventory
//
// frontend sends steady traffic (the users) to checkout and search with a
// short deadline. checkout needs inventory and falls back when payments
// fails ("order taken, payment deferred"). `colony demo fail|heal
// <service>` makes a service fail or recover by writing
// /colony/demo/<service>, which its instances poll: a failing service
// hangs for a while, then fails, as an overloaded one does.
//
// That tells the breakers' story. With the breakers on, checkout->payments
// trips within seconds and checkout's calls to payments fail at once, so
// its fallback answers within frontend's deadline: the failure stays
// contained at checkout->payments. With that breaker disabled (`colony
// breaker disable checkout payments`), every checkout call waits on
// payments until frontend's deadline passes: the failure cascades up and
// frontend->checkout trips too.
package demo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/internal/xdsdial"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/sidecar/guard"
	"github.com/colonymesh/colony/xds"
)

// ControlRoot holds one znode per demo service: "fail" makes it fail.
const ControlRoot = "/colony/demo"

// Entry is the service the users' traffic enters by: it has no server.
const Entry = "frontend"

// Service is one service of the demo mesh.
type Service struct {
	Name      string
	Instances int
	// Calls are the services one request calls, in order.
	Calls []Call
}

// Call is one outgoing call a service makes for each request.
type Call struct {
	Callee string
	// Fallback: a failed call does not fail the request (checkout defers
	// the payment). Otherwise the request fails with it.
	Fallback bool
}

// Topology is the demo mesh: the entry service first, callees after their
// callers.
var Topology = []Service{
	{Name: Entry, Instances: 1, Calls: []Call{{Callee: "checkout"}, {Callee: "search"}}},
	{Name: "checkout", Instances: 1, Calls: []Call{{Callee: "inventory"}, {Callee: "payments", Fallback: true}}},
	{Name: "search", Instances: 1, Calls: []Call{{Callee: "inventory"}}},
	{Name: "payments", Instances: 2},
	{Name: "inventory", Instances: 2},
}

// Config configures the demo mesh.
type Config struct {
	Coordinator string // gRPC address
	// Every is the time between two of the users' calls on each of the
	// entry service's pairs (default 250ms: 4 calls/s per pair, which
	// `colony breaker report` by hand can outweigh, as the README does).
	Every time.Duration
	// Deadline is the users' deadline for a call to frontend's callees
	// (default 500ms).
	Deadline time.Duration
	// CallTimeout bounds each call a service makes down the chain
	// (default 1s). It does not follow the request's own deadline, as in
	// many services: checkout does not learn that frontend gave up, and its
	// calls end by their own timeout (DEADLINE_EXCEEDED, a failure), not by
	// the caller's cancellation (CANCELLED, which counts neither way).
	CallTimeout time.Duration
	// FailAfter is how long a failing service hangs before it fails
	// (default 2s: past Deadline and CallTimeout, as an overloaded
	// service).
	FailAfter time.Duration
	Logger    *slog.Logger
	// Tracing, when set, gives each sidecar its tracer provider (for its
	// service and instance), so a transition's trace includes the
	// reporting sidecar's report, each sidecar's watch delivery and its
	// clients' xDS pushes and ACKs. Nil: no spans.
	Tracing func(service, instance string) trace.TracerProvider
	// Certs, when set, gives the mesh's sidecars and its own client (which
	// applies the demo policy) their certificates, for a secure
	// coordinator. Nil: plaintext.
	Certs Certs
}

// Certs hands out the demo mesh's certificates.
type Certs interface {
	// Sidecar is the certificate of service's sidecars.
	Sidecar(service string) (*trust.Material, error)
	// Admin is the certificate of the mesh's own client: it writes the
	// demo policy and the control nodes.
	Admin() (*trust.Material, error)
}

// Demo policies, applied to a callee that has none. Both trip at 50%
// failures seen by one caller instance (each demo service has one caller
// instance per pair) and open for 10s; calls over 250ms count as slow (the
// slow share shows on the dashboard; no slow-call condition trips).
// Leaf services' breakers trip fast: 20 calls over 10s. Mid-tier services
// (called by frontend) need 60 calls over 20s, so the few seconds of
// timeouts before checkout->payments trips do not trip frontend->checkout:
// a caller's breaker gives its callee's own breakers time to act.
const (
	leafPolicy = `{"window":"10s","buckets":10,"minimumCalls":20,"failureRateThreshold":0.5,"slowCallDuration":"250ms",` +
		`"openDuration":"10s","backoffMultiplier":2,"maxOpenDuration":"1m","jitter":0.1,` +
		`"probeBudget":3,"successesToClose":3,"probeTimeout":"5s","minFailingInstances":1}`
	midTierPolicy = `{"window":"20s","buckets":20,"minimumCalls":60,"failureRateThreshold":0.5,"slowCallDuration":"250ms",` +
		`"openDuration":"10s","backoffMultiplier":2,"maxOpenDuration":"1m","jitter":0.1,` +
		`"probeBudget":3,"successesToClose":3,"probeTimeout":"5s","minFailingInstances":1}`
)

// slowCall is the guards' slow-call threshold: the demo policies'.
const slowCall = 250 * time.Millisecond

// Mesh is a running demo mesh.
type Mesh struct {
	cfg     Config
	c       *client.Client
	closers []func()
	ctx     context.Context // ends with Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // traffic and control loops: end with cancel
	servers sync.WaitGroup // gRPC Serve loops: end with their server's Stop
	failing map[string]*atomic.Bool
	// Callers are the mesh's pairs, one per caller service and callee,
	// with what happened to the caller's calls.
	Callers []*Caller
}

// Caller is one caller service's calls to one callee.
type Caller struct {
	Service, Callee string
	// OK counts calls that succeeded, Failed those that failed (or timed
	// out), Rejected those the caller's breaker turned away at once.
	OK, Failed, Rejected atomic.Int64
}

// Caller returns the counts of caller's calls to callee, nil when the mesh
// has no such pair.
func (m *Mesh) Caller(caller, callee string) *Caller {
	for _, c := range m.Callers {
		if c.Service == caller && c.Callee == callee {
			return c
		}
	}
	return nil
}

// Start starts the mesh; Close stops it.
func Start(cfg Config) (m *Mesh, err error) {
	if cfg.Every <= 0 {
		cfg.Every = 250 * time.Millisecond
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = 500 * time.Millisecond
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = time.Second
	}
	if cfg.FailAfter <= 0 {
		cfg.FailAfter = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	quiet := slog.New(slog.DiscardHandler) // the sidecars' chatter stays out of dev's log
	clientTLS, err := cfg.clientTLS()
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Config{Endpoints: []string{cfg.Coordinator}, TLS: clientTLS, Logger: quiet})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m = &Mesh{cfg: cfg, c: c, ctx: ctx, cancel: cancel, failing: map[string]*atomic.Bool{}}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := m.applyPolicies(sctx); err != nil {
		return nil, err
	}
	if _, _, err := c.Create(sctx, ControlRoot, []byte("ok")); err != nil && !errors.Is(err, client.ErrNodeExists) {
		return nil, fmt.Errorf("demo control node %s: %w", ControlRoot, err)
	}
	for _, s := range Topology {
		m.failing[s.Name] = &atomic.Bool{}
		p := ControlRoot + "/" + s.Name
		if _, _, err := c.Create(sctx, p, []byte("ok")); err != nil && !errors.Is(err, client.ErrNodeExists) {
			return nil, fmt.Errorf("demo control node %s: %w", p, err)
		}
	}
	// Callees first, so that their callers find them registered.
	for i := len(Topology) - 1; i >= 0; i-- {
		s := Topology[i]
		for n := 1; n <= s.Instances; n++ {
			if err := m.startInstance(ctx, s, fmt.Sprintf("%s-%d", s.Name, n), quiet); err != nil {
				return nil, fmt.Errorf("demo %s: %w", s.Name, err)
			}
		}
	}
	m.goFunc(func() { m.followControl(ctx) })
	return m, nil
}

// applyPolicies gives each callee its demo policy, unless it has one.
func (m *Mesh) applyPolicies(ctx context.Context) error {
	var specs []*colonyv1.PolicySpec
	for _, s := range Topology {
		if s.Name == Entry {
			continue
		}
		if _, isDefault, err := m.c.GetPolicy(ctx, s.Name); err != nil {
			return fmt.Errorf("demo policy for %s: %w", s.Name, err)
		} else if !isDefault {
			continue
		}
		pol := leafPolicy
		if calledBy(Entry, s.Name) {
			pol = midTierPolicy
		}
		specs = append(specs, &colonyv1.PolicySpec{Callee: s.Name, Policy: []byte(pol)})
	}
	if len(specs) == 0 {
		return nil
	}
	if _, err := m.c.ApplyPolicies(ctx, specs, "colony dev", false); err != nil {
		return fmt.Errorf("demo policies: %w", err)
	}
	return nil
}

func calledBy(caller, callee string) bool {
	for _, s := range Topology {
		if s.Name != caller {
			continue
		}
		for _, c := range s.Calls {
			if c.Callee == callee {
				return true
			}
		}
	}
	return false
}

// startInstance starts one instance of s: its server (unless s is the
// entry), its sidecar, and for each callee a guarded proxyless gRPC
// client; the entry's instance also starts the users' traffic.
func (m *Mesh) startInstance(ctx context.Context, s Service, instance string, quiet *slog.Logger) error {
	scTLS, err := m.cfg.sidecarTLS(s.Name)
	if err != nil {
		return err
	}
	node := &node{m: m, svc: s, failing: m.failing[s.Name], out: map[string]healthpb.HealthClient{}, counts: map[string]*Caller{}}
	addr := "127.0.0.1:1" // the entry serves nothing: its users are the traffic loops
	var lis net.Listener
	if s.Name != Entry {
		if lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		addr = lis.Addr().String()
	}
	scCfg := sidecar.Config{Service: s.Name, Instance: instance, Coordinators: []string{m.cfg.Coordinator}, TLS: scTLS,
		Address: addr, APIAddr: "127.0.0.1:0", Logger: quiet}
	if m.cfg.Tracing != nil {
		scCfg.TracerProvider = m.cfg.Tracing(s.Name, instance)
	}
	var enforcers []sidecar.Enforcer
	if len(s.Calls) > 0 {
		x, err := sidecar.NewXDS(xds.Config{Logger: quiet})
		if err != nil {
			if lis != nil {
				lis.Close()
			}
			return err
		}
		m.closers = append(m.closers, x.Close)
		enforcers = append(enforcers, x)
		for _, c := range s.Calls {
			scCfg.Callees = append(scCfg.Callees, c.Callee)
		}
	}
	sc, err := sidecar.New(scCfg, enforcers...)
	if err != nil {
		if lis != nil {
			lis.Close()
		}
		return err
	}
	m.closers = append(m.closers, func() { sc.Close() })
	if len(s.Calls) > 0 {
		g, err := guard.New(guard.Config{Sidecar: sc.Addr(), Instance: instance, SlowCall: slowCall, Logger: quiet})
		if err != nil {
			if lis != nil {
				lis.Close()
			}
			return err
		}
		m.closers = append(m.closers, func() { g.Close() })
		for _, c := range s.Calls {
			// One bootstrap per client, as each would have in its own pod.
			cc, err := xdsdial.DialWith(sc.Addr(), s.Name+"/"+instance, s.Name, c.Callee, []xdsdial.Option{xdsdial.AsGuard()}, grpc.WithUnaryInterceptor(g.UnaryClientInterceptor(c.Callee)))
			if err != nil {
				if lis != nil {
					lis.Close()
				}
				return err
			}
			m.closers = append(m.closers, func() { cc.Close() })
			node.out[c.Callee] = healthpb.NewHealthClient(cc)
			counts := m.Caller(s.Name, c.Callee)
			if counts == nil {
				counts = &Caller{Service: s.Name, Callee: c.Callee}
				m.Callers = append(m.Callers, counts)
			}
			node.counts[c.Callee] = counts
		}
	}
	if lis != nil {
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, node)
		m.servers.Go(func() { gs.Serve(lis) })
		m.closers = append(m.closers, gs.Stop)
	}
	if s.Name == Entry {
		for _, c := range s.Calls {
			m.goFunc(func() { m.users(ctx, node, c) })
		}
	}
	return nil
}

// clientTLS is the TLS configuration of the mesh's own client.
func (cfg Config) clientTLS() (*tls.Config, error) {
	if cfg.Certs == nil {
		return nil, nil
	}
	m, err := cfg.Certs.Admin()
	if err != nil {
		return nil, fmt.Errorf("demo client certificate: %w", err)
	}
	return m.ClientConfig(""), nil
}

// sidecarTLS is the certificate of service's sidecars, nil without Certs.
func (cfg Config) sidecarTLS(service string) (*trust.Material, error) {
	if cfg.Certs == nil {
		return nil, nil
	}
	m, err := cfg.Certs.Sidecar(service)
	if err != nil {
		return nil, fmt.Errorf("demo sidecar certificate for %s: %w", service, err)
	}
	return m, nil
}

func (m *Mesh) goFunc(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

// Close stops the traffic, the clients, the sidecars and the servers.
func (m *Mesh) Close() {
	m.cancel()
	m.wg.Wait()
	for i := len(m.closers) - 1; i >= 0; i-- {
		m.closers[i]()
	}
	m.servers.Wait()
	m.c.Close()
}

// followControl polls the services' control nodes: "fail" makes one fail.
func (m *Mesh) followControl(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range Topology {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			data, _, err := m.c.Get(rctx, ControlRoot+"/"+s.Name, client.WithSessionConsistency())
			cancel()
			if err != nil {
				continue
			}
			failing := m.failing[s.Name]
			if f := strings.TrimSpace(string(data)) == "fail"; f != failing.Load() {
				failing.Store(f)
				m.cfg.Logger.Info("demo service "+map[bool]string{true: "failing", false: "healthy"}[f], "service", s.Name)
			}
		}
	}
}

// maxUserCalls bounds each of the entry's pairs' calls in flight: users
// do not wait for each other, so a slow callee does not slow the traffic
// down (which would hide the failure from the breakers).
const maxUserCalls = 16

// users calls c.Callee from the entry service every cfg.Every, each call
// with the users' deadline, until ctx ends.
func (m *Mesh) users(ctx context.Context, n *node, c Call) {
	t := time.NewTicker(m.cfg.Every)
	defer t.Stop()
	var inflight sync.WaitGroup
	defer inflight.Wait()
	slots := make(chan struct{}, maxUserCalls)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // every slot waits on a callee slower than maxUserCalls x Every
		}
		inflight.Go(func() {
			defer func() { <-slots }()
			cctx, cancel := context.WithTimeout(ctx, m.cfg.Deadline)
			defer cancel()
			n.call(cctx, c.Callee)
		})
	}
}

// node is one instance of a demo service: its server, and its clients.
type node struct {
	healthpb.UnimplementedHealthServer
	m       *Mesh
	svc     Service
	failing *atomic.Bool
	out     map[string]healthpb.HealthClient // by callee
	counts  map[string]*Caller               // by callee
}

// call makes one call to callee and counts its outcome.
func (n *node) call(ctx context.Context, callee string) error {
	_, err := n.out[callee].Check(ctx, &healthpb.HealthCheckRequest{})
	if ctx.Err() != nil && n.m.cancelled() {
		return err // the mesh is closing: count nothing
	}
	c := n.counts[callee]
	switch {
	case err == nil:
		c.OK.Add(1)
	case isRejected(err):
		c.Rejected.Add(1)
	default:
		c.Failed.Add(1)
	}
	return err
}

func (m *Mesh) cancelled() bool { return m.ctx.Err() != nil }

// isRejected says whether err is the caller's own breaker turning the call
// away.
func isRejected(err error) bool {
	return strings.Contains(status.Convert(err).Message(), "colony: breaker")
}

// Check serves one request: a failing service hangs for FailAfter (or
// until the caller gives up) and fails; a healthy one makes its calls in
// order, and fails with the first that fails unless it has a fallback.
func (n *node) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if n.failing.Load() {
		select {
		case <-time.After(n.m.cfg.FailAfter):
		case <-ctx.Done():
		}
		return nil, status.Errorf(codes.Unavailable, "demo %s is failing (colony demo fail %s)", n.svc.Name, n.svc.Name)
	}
	// Each call has its own timeout, whatever the caller's deadline (see
	// Config.CallTimeout).
	ctx = context.WithoutCancel(ctx)
	for _, c := range n.svc.Calls {
		cctx, cancel := context.WithTimeout(ctx, n.m.cfg.CallTimeout)
		stop := context.AfterFunc(n.m.ctx, cancel) // but not past the mesh's Close
		err := n.call(cctx, c.Callee)
		stop()
		cancel()
		if err != nil && !c.Fallback {
			return nil, status.Errorf(codes.Unavailable, "demo %s: calling %s: %v", n.svc.Name, c.Callee, status.Convert(err).Message())
		}
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}
