// Package demo runs a small mesh in one process for `colony dev`: a callee
// service with a few instances and three caller services, each instance with
// its own sidecar (xDS server and all), each caller with Colony's client
// library and a proxyless gRPC client on xds:///<callee> sending steady
// traffic. `colony demo fail|heal <callee>` makes the callee fail or recover
// by writing /colony/demo/<callee>, which its instances poll.
package demo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// ControlRoot holds one znode per demo callee: "fail" makes it fail.
const ControlRoot = "/colony/demo"

// Config configures the demo mesh.
type Config struct {
	Coordinator string // gRPC address
	Callee      string // default "payments"
	Instances   int    // callee instances, default 3
	Callers     []string
	// Every is the time between one caller's calls (default 50ms).
	Every  time.Duration
	Logger *slog.Logger
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

// demoPolicy trips fast enough to watch: 50% failures over 10s seen by one
// caller instance (each demo caller service has one), open 10s.
const demoPolicy = `{"window":"10s","buckets":10,"minimumCalls":20,"failureRateThreshold":0.5,` +
	`"openDuration":"10s","backoffMultiplier":2,"maxOpenDuration":"1m","jitter":0.1,` +
	`"probeBudget":3,"successesToClose":3,"probeTimeout":"5s","minFailingInstances":1}`

// Mesh is a running demo mesh.
type Mesh struct {
	cfg     Config
	c       *client.Client
	closers []func()
	cancel  context.CancelFunc
	wg      sync.WaitGroup // traffic and control loops: end with cancel
	servers sync.WaitGroup // gRPC Serve loops: end with their server's Stop
	Callers []*Caller
}

// Caller is one demo caller instance and what happened to its calls.
type Caller struct {
	Service              string
	OK, Failed, Rejected atomic.Int64
}

// Start starts the mesh; Close stops it.
func Start(cfg Config) (m *Mesh, err error) {
	if cfg.Callee == "" {
		cfg.Callee = "payments"
	}
	if cfg.Instances <= 0 {
		cfg.Instances = 3
	}
	if len(cfg.Callers) == 0 {
		cfg.Callers = []string{"checkout", "frontend", "batch"}
	}
	if cfg.Every <= 0 {
		cfg.Every = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil)) // the sidecars' chatter stays out of dev's log
	clientTLS, err := cfg.clientTLS()
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Config{Endpoints: []string{cfg.Coordinator}, TLS: clientTLS, Logger: quiet})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m = &Mesh{cfg: cfg, c: c, cancel: cancel}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if _, isDefault, err := c.GetPolicy(sctx, cfg.Callee); err == nil && isDefault {
		if _, err := c.ApplyPolicies(sctx, []*colonyv1.PolicySpec{{Callee: cfg.Callee, Policy: []byte(demoPolicy)}}, "colony dev", false); err != nil {
			return nil, fmt.Errorf("demo policy: %w", err)
		}
	}
	for _, p := range []string{ControlRoot, ControlRoot + "/" + cfg.Callee} {
		if _, _, err := c.Create(sctx, p, []byte("ok")); err != nil && !errors.Is(err, client.ErrNodeExists) {
			return nil, fmt.Errorf("demo control node %s: %w", p, err)
		}
	}

	// The callee's instances, each registered by its own sidecar.
	failing := &atomic.Bool{}
	for i := 1; i <= cfg.Instances; i++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, &calleeServer{failing: failing})
		m.servers.Go(func() { gs.Serve(lis) })
		m.closers = append(m.closers, gs.Stop)
		calleeTLS, err := cfg.sidecarTLS(cfg.Callee)
		if err != nil {
			return nil, err
		}
		sc, err := sidecar.New(sidecar.Config{Service: cfg.Callee, Instance: fmt.Sprintf("%s-%d", cfg.Callee, i),
			Coordinators: []string{cfg.Coordinator}, TLS: calleeTLS, Address: lis.Addr().String(), APIAddr: "127.0.0.1:0", Logger: quiet})
		if err != nil {
			return nil, err
		}
		m.closers = append(m.closers, func() { sc.Close() })
	}
	m.goFunc(func() { m.followControl(ctx, failing) })

	// The callers: sidecar, client library, proxyless gRPC client, traffic.
	for _, svc := range cfg.Callers {
		instance := svc + "-1"
		x, err := sidecar.NewXDS(xdsConfig(quiet))
		if err != nil {
			return nil, err
		}
		m.closers = append(m.closers, x.Close)
		callerTLS, err := cfg.sidecarTLS(svc)
		if err != nil {
			return nil, err
		}
		sc, err := sidecar.New(sidecar.Config{Service: svc, Instance: instance, Coordinators: []string{cfg.Coordinator}, TLS: callerTLS,
			Address: "127.0.0.1:1", APIAddr: "127.0.0.1:0", Callees: []string{cfg.Callee}, Logger: quiet}, x)
		if err != nil {
			return nil, err
		}
		m.closers = append(m.closers, func() { sc.Close() })
		g, err := guard.New(guard.Config{Sidecar: sc.Addr(), Instance: instance, Logger: quiet})
		if err != nil {
			return nil, err
		}
		m.closers = append(m.closers, func() { g.Close() })
		// One bootstrap per client, as each would have in its own pod.
		cc, err := xdsdial.DialWith(sc.Addr(), svc+"/"+instance, svc, cfg.Callee, []xdsdial.Option{xdsdial.AsGuard()}, grpc.WithUnaryInterceptor(g.UnaryClientInterceptor(cfg.Callee)))
		if err != nil {
			return nil, err
		}
		m.closers = append(m.closers, func() { cc.Close() })
		caller := &Caller{Service: svc}
		m.Callers = append(m.Callers, caller)
		m.goFunc(func() { m.traffic(ctx, cc, caller) })
	}
	return m, nil
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

// followControl polls the callee's control node: "fail" makes it fail.
func (m *Mesh) followControl(ctx context.Context, failing *atomic.Bool) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		data, _, err := m.c.Get(rctx, ControlRoot+"/"+m.cfg.Callee, client.WithSessionConsistency())
		cancel()
		if err == nil {
			if f := strings.TrimSpace(string(data)) == "fail"; f != failing.Load() {
				failing.Store(f)
				m.cfg.Logger.Info("demo callee "+map[bool]string{true: "failing", false: "healthy"}[f], "callee", m.cfg.Callee)
			}
		}
	}
}

// traffic calls the callee every cfg.Every until ctx ends.
func (m *Mesh) traffic(ctx context.Context, cc *grpc.ClientConn, c *Caller) {
	hc := healthpb.NewHealthClient(cc)
	t := time.NewTicker(m.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		switch {
		case err == nil:
			c.OK.Add(1)
		case strings.Contains(status.Convert(err).Message(), "colony: breaker"):
			c.Rejected.Add(1)
		default:
			c.Failed.Add(1)
		}
	}
}

type calleeServer struct {
	healthpb.UnimplementedHealthServer
	failing *atomic.Bool
}

func (s *calleeServer) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if s.failing.Load() {
		return nil, status.Error(codes.Unavailable, "demo callee is failing (colony demo fail)")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func xdsConfig(log *slog.Logger) xds.Config { return xds.Config{Logger: log} }
