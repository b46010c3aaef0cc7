package sidecar_test

import (
	"context"
	"net"

	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/xdsdial"
	"github.com/colonymesh/colony/internal/xdsdial/xdsdialtest"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
	"github.com/colonymesh/colony/xds"
)

// healthBackend is a real gRPC server standing in for the callee: it
// answers health checks (successes, or INTERNAL errors when told to fail),
// and counts the calls that reach it.
type healthBackend struct {
	healthpb.UnimplementedHealthServer
	addr  *net.TCPAddr
	calls atomic.Int64
	fail  atomic.Bool // answer INTERNAL
}

func (b *healthBackend) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	b.calls.Add(1)
	if b.fail.Load() {
		return nil, status.Error(codes.Internal, "failing on purpose")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func startHealthBackend(t *testing.T) *healthBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &healthBackend{addr: lis.Addr().(*net.TCPAddr)}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return b
}

func check(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// loadSeen records the nodes whose load reports the sidecar has handled.
type loadSeen struct {
	mu    sync.Mutex
	calls map[string]uint64 // node -> calls reported
}

func (l *loadSeen) add(ld xds.Load) {
	l.mu.Lock()
	l.calls[ld.NodeID] += ld.Succeeded + ld.Errored
	l.mu.Unlock()
}

func (l *loadSeen) get(node string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[node]
}

// callerWithXDS starts a checkout sidecar serving xDS (with LRS) on its
// API address.
func callerWithXDS(t *testing.T, coord, instance string, cfg xds.Config) *sidecar.Sidecar {
	t.Helper()
	x, err := sidecar.NewXDS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	sc, err := sidecar.New(sidecar.Config{Service: "checkout", Instance: instance, Coordinators: []string{coord},
		Address: "127.0.0.1:9100", APIAddr: "127.0.0.1:0", ReportInterval: 50 * time.Millisecond,
		SessionTTL: time.Second, DegradedAfter: 5 * time.Second, Logger: quietLog()}, x)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

func applyPolicy(t *testing.T, c *client.Client, policy string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(policy)}}, "test", false); err != nil {
		t.Fatal(err)
	}
}

// TestStockClientLoadReportsBecomeOutcomes: a stock gRPC-Go xDS client's
// load reports reach the coordinator as this instance's outcomes for the
// callee (successes and errors), while a client marked as linking the
// guard library is not counted a second time.
func TestStockClientLoadReportsBecomeOutcomes(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// A long window, so nothing counted expires while the test runs.
	applyPolicy(t, admin, `{"window":"60s","buckets":6,"minimumCalls":1000,"failureRateThreshold":0.5,"openDuration":"30s","minFailingInstances":1,"probeBudget":2,"successesToClose":2}`)
	be := startHealthBackend(t)
	startSidecar(t, srv.Addr(), "payments", "p1", be.addr.Port)

	seen := &loadSeen{calls: map[string]uint64{}}
	sc := callerWithXDS(t, srv.Addr(), "c1", xds.Config{LoadReportInterval: 100 * time.Millisecond, OnLoad: seen.add})
	waitCallee(t, sc, 10*time.Second, "callee endpoints", func(c sidecar.Callee, _ sidecar.View) bool { return len(c.Endpoints) == 1 })

	// A guard-marked client calls first; its load is handled (and must be
	// ignored) before the stock client starts.
	guarded := dialXDSClient(t, sc.Addr(), "checkout/c1-guarded", true)
	for i := range 7 {
		if err := waitOK(guarded, i == 0); err != nil {
			t.Fatalf("guarded call %d: %v", i, err)
		}
	}
	waitUntil(t, 10*time.Second, "the guarded client's load report", func() bool { return seen.get("checkout/c1-guarded") >= 7 })

	stock := dialXDSClient(t, sc.Addr(), "checkout/c1", false)
	for i := range 20 {
		if err := waitOK(stock, i == 0); err != nil {
			t.Fatalf("stock call %d: %v", i, err)
		}
	}
	be.fail.Store(true)
	for i := range 5 {
		if err := check(stock); status.Code(err) != codes.Internal {
			t.Fatalf("failing stock call %d: %v", i, err)
		}
	}
	be.fail.Store(false)
	var live breaker.Evidence
	waitUntil(t, 10*time.Second, "the stock client's outcomes at the coordinator", func() bool {
		info, err := admin.GetBreaker(context.Background(), "checkout", "payments", 0)
		if err != nil {
			return false
		}
		live = info.Live
		return live.Calls >= 25
	})
	if live.Successes != 20 || live.Failures != 5 || live.Slow != 0 {
		t.Errorf("live window %+v: want exactly the stock client's 20 successes and 5 failures (the guarded client's 7 calls not counted)", live)
	}
}

func dialXDSClient(t *testing.T, sidecarAddr, node string, guard bool) *grpc.ClientConn {
	t.Helper()
	var opts []xdsdial.Option
	if guard {
		opts = append(opts, xdsdial.AsGuard())
	}
	return xdsdialtest.Dial(t, sidecarAddr, node, "checkout", "payments", opts...)
}

// waitOK makes one call; the first call of a client may wait for its xDS
// configuration (up to 10 s).
func waitOK(cc *grpc.ClientConn, first bool) error {
	if !first {
		return check(cc)
	}
	var err error
	for range 1000 {
		if err = check(cc); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
