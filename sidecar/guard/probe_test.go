package guard_test

import (
	"context"
	"encoding/hex"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/xdsdial"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/sidecar/guard"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
	"github.com/colonymesh/colony/xds"
)

// TestProbeSecretOnlyForGuards: in HALF_OPEN the sidecar of a permit holder
// draws a random probe secret for the generation, its routes let through
// calls marked with it, and only its guard clients learn it: the guard's
// probes reach the callee, while calls a client marks with the generation
// (or any other value) are ordinary calls, nearly all rejected.
func TestProbeSecretOnlyForGuards(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := admin.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(
		`{"window":"2s","buckets":4,"minimumCalls":10,"failureRateThreshold":0.5,"openDuration":"1s","jitter":0,"minFailingInstances":1,"probeBudget":3,"successesToClose":3,"probeTimeout":"30s"}`)}}, "test", false); err != nil {
		t.Fatal(err)
	}

	// The callee: a health server, registered by its own sidecar.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := grpc.NewServer()
	healthpb.RegisterHealthServer(backend, health.NewServer())
	go backend.Serve(lis)
	defer backend.Stop()
	callee, err := sidecar.New(sidecar.Config{
		Service: "payments", Instance: "p1", Coordinators: []string{srv.Addr()}, Address: lis.Addr().String(),
		APIAddr: "127.0.0.1:0", ReportInterval: 50 * time.Millisecond, SessionTTL: 2 * time.Second, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer callee.Close()

	// The caller: its sidecar serves xDS; a guard client's ordinary calls
	// are all aborted on a probe holder, so a forged mark is told apart
	// from a probe.
	x, err := sidecar.NewXDS(xds.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	sc, err := sidecar.New(sidecar.Config{
		Service: "checkout", Instance: "c1", Coordinators: []string{srv.Addr()}, Address: "127.0.0.1:1000",
		APIAddr: "127.0.0.1:0", ReportInterval: 50 * time.Millisecond, SessionTTL: 2 * time.Second, Logger: quiet,
	}, x)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	g, err := guard.New(guard.Config{Sidecar: sc.Addr(), Instance: "c1", ReportInterval: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	conn, err := xdsdial.DialWith(sc.Addr(), "checkout/c1", "checkout", "payments", []xdsdial.Option{xdsdial.AsGuard()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	check := func(ctx context.Context, cc grpc.ClientConnInterface) error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		_, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{})
		return err
	}
	// sent is the probe header of the last call through the guard.
	var sent []string
	guarded := func() error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		return g.UnaryClientInterceptor("payments")(cctx, "/grpc.health.v1.Health/Check", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}, conn,
			func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
				md, _ := metadata.FromOutgoingContext(ctx)
				sent = md.Get(guard.ProbeHeader)
				return cc.Invoke(ctx, method, req, reply, opts...)
			})
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("%s: not within the test's time", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	eventually("the callee reachable through xDS", func() bool { return check(ctx, conn) == nil })

	// Trip the pair, then wait for HALF_OPEN with this instance's permits.
	<-g.Ready()
	for range 20 {
		p, err := g.Allow("payments")
		if err != nil {
			t.Fatal(err)
		}
		p.Done(true, false)
	}
	var c sidecar.Callee
	eventually("HALF_OPEN with c1's permits and a probe secret", func() bool {
		for _, c = range sc.View().Callees {
			if c.Name == "payments" && c.Record != nil && c.Record.State == breaker.HalfOpen && c.ProbeSecret != "" {
				return true
			}
		}
		return false
	})
	gen := strconv.FormatUint(c.Record.Generation, 10)
	if b, err := hex.DecodeString(c.ProbeSecret); err != nil || len(b) != 16 {
		t.Fatalf("probe secret %q: want 128 bits in hex", c.ProbeSecret)
	}

	// The guard's first probe: retried until the data plane has the route
	// (an aborted probe is refunded).
	eventually("a guard probe reaches the callee", func() bool { return guarded() == nil })
	if len(sent) != 1 || sent[0] != c.ProbeSecret {
		t.Fatalf("the guard marked its probe %s=%v, want the sidecar's secret %q (generation %s)", guard.ProbeHeader, sent, c.ProbeSecret, gen)
	}

	// A client that marks its calls itself gets nothing through.
	for _, forged := range []string{gen, "00000000000000000000000000000000"} {
		passed := 0
		for range 50 {
			if check(metadata.AppendToOutgoingContext(ctx, guard.ProbeHeader, forged), conn) == nil {
				passed++
			}
		}
		if passed > 0 {
			t.Errorf("%d of 50 calls marked %s=%q passed; want none", passed, guard.ProbeHeader, forged)
		}
	}

	// The guard's two other permits pass.
	for i := range 2 {
		if err := guarded(); err != nil {
			t.Fatalf("guard probe %d: %v", i+2, err)
		}
	}
}
