package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/internal/xdsdial"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/xds"
)

// BenchmarkTripToEnforce measures trip-to-enforce latency: from the leader's
// decision (the record's since, leader time) until each caller's gRPC-Go xDS
// client has ACKed the routes carrying it, with N caller instances, each with
// its own sidecar (in this process) and its own xDS client dialing
// xds:///payments, against a 3-node coordinator cluster of real processes.
// Each iteration flips the pair checkout->payments (a force-open, then a
// clear: two transitions) and waits until every client has enforced both.
//
//	go test -run '^$' -bench BenchmarkTripToEnforce -benchtime 20x ./tests/bench/
//	COLONY_BENCH_ENFORCE_PAIRS=10,100,500 go test ... (default 10,100)
//
// Metrics: p50/p99/max over every (transition, client) pair; all-p50/p99/max
// over transitions of the time until the last client enforced it.
func BenchmarkTripToEnforce(b *testing.B) { benchTripToEnforce(b, false) }

// BenchmarkTripToEnforceTLS is BenchmarkTripToEnforce with mutual TLS
// between the coordinators, and from the sidecars and the benchmark's admin
// client to them (each sidecar with its service's certificate). The xDS
// clients reach their sidecars on loopback in plaintext, as by default.
func BenchmarkTripToEnforceTLS(b *testing.B) { benchTripToEnforce(b, true) }

func benchTripToEnforce(b *testing.B, secure bool) {
	sizes := []int{10, 100}
	if env := os.Getenv("COLONY_BENCH_ENFORCE_PAIRS"); env != "" {
		sizes = nil
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 2000 {
				b.Fatalf("COLONY_BENCH_ENFORCE_PAIRS: %q is not 1..2000", f)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("pairs=%d", n), func(b *testing.B) { benchEnforce(b, n, secure) })
	}
}

type enforceCollector struct {
	mu       sync.Mutex
	got      map[uint64][]time.Duration // generation -> FromLeader per client
	fromSeen []time.Duration            // sidecar saw the record -> client ACK
	cond     *sync.Cond
}

func (c *enforceCollector) add(e xds.Enforcement) {
	if e.Initial || e.Callee != "payments" {
		return
	}
	c.mu.Lock()
	c.got[e.Generation] = append(c.got[e.Generation], e.FromLeader)
	c.fromSeen = append(c.fromSeen, e.FromSeen)
	c.mu.Unlock()
	c.cond.Broadcast()
}

// wait returns the latencies of generation gen once n clients enforced it.
func (c *enforceCollector) wait(gen uint64, n int, timeout time.Duration) ([]time.Duration, error) {
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, c.cond.Broadcast)
	defer stop.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.got[gen]) < n {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("generation %d: %d of %d clients enforced it within %v", gen, len(c.got[gen]), n, timeout)
		}
		c.cond.Wait()
	}
	return c.got[gen], nil
}

func benchEnforce(b *testing.B, n int, secure bool) {
	cluster := startColonyWith(b, 3, secure)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// sidecarTLS is the certificate of a service's sidecars (nil in
	// plaintext).
	sidecarTLS := func(service string) *trust.Material {
		if cluster.pki == nil {
			return nil
		}
		files, err := cluster.pki.Issue(trust.RoleSidecar, service)
		if err != nil {
			b.Fatal(err)
		}
		m, err := trust.Load(files, cluster.pki.CA.TrustDomain, nil)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	checkoutTLS, paymentsTLS := sidecarTLS("checkout"), sidecarTLS("payments")
	admin, err := client.New(client.Config{Endpoints: cluster.grpc, Logger: quiet, TLS: cluster.pki.AdminTLS()})
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments"}}, "bench", false); err != nil {
		b.Fatal(err)
	}

	// The callee: one real gRPC server, registered by its sidecar.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, healthServer{})
	go gs.Serve(lis)
	defer gs.Stop()
	calleeSC, err := sidecar.New(sidecar.Config{Service: "payments", Instance: "p1", Coordinators: cluster.grpc,
		Address: lis.Addr().String(), APIAddr: "127.0.0.1:0", Logger: quiet, TLS: paymentsTLS})
	if err != nil {
		b.Fatal(err)
	}
	defer calleeSC.Close()

	col := &enforceCollector{got: map[uint64][]time.Duration{}}
	col.cond = sync.NewCond(&col.mu)
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	for i := range n {
		x, err := sidecar.NewXDS(xds.Config{Logger: quiet, OnEnforced: col.add})
		if err != nil {
			b.Fatal(err)
		}
		sc, err := sidecar.New(sidecar.Config{
			Service: "checkout", Instance: fmt.Sprintf("c%d", i), Coordinators: cluster.grpc,
			Address: fmt.Sprintf("127.0.0.1:%d", 20000+i), APIAddr: "127.0.0.1:0", Callees: []string{"payments"},
			SessionTTL: 10 * time.Second, Logger: quiet, TLS: checkoutTLS,
		}, x)
		if err != nil {
			b.Fatal(err)
		}
		closers = append(closers, func() { sc.Close(); x.Close() })
		cc, err := xdsdial.Dial(sc.Addr(), fmt.Sprintf("checkout/c%d", i), "checkout", "payments")
		if err != nil {
			b.Fatal(err)
		}
		closers = append(closers, func() { cc.Close() })
		cc.Connect() // leave idle: resolve, subscribe to the xDS resources
	}
	b.Logf("%d sidecars and xDS clients started", n)

	flip := func(set bool) uint64 {
		var rec *breaker.PairRecord
		var err error
		if set {
			rec, err = admin.SetOverride(ctx, "checkout", "payments", breaker.ForceOpen, "bench", "bench", 0)
		} else {
			rec, err = admin.ClearOverride(ctx, "checkout", "payments", "bench", "bench")
		}
		if err != nil {
			b.Fatal(err)
		}
		return rec.Generation
	}
	// Warm up: full flips, which also prove every client is subscribed (the
	// first generation a client sees counts as its initial state, not as a
	// transition).
	for _, set := range []bool{true, false} {
		flip(set)
	}
	time.Sleep(time.Second)
	for _, set := range []bool{true, false} {
		if _, err := col.wait(flip(set), n, 2*time.Minute); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}

	var all, last []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, set := range []bool{true, false} {
			lat, err := col.wait(flip(set), n, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			all = append(all, lat...)
			s := summarize(append([]time.Duration(nil), lat...))
			last = append(last, s.max)
		}
	}
	b.StopTimer()
	s, l := summarize(all), summarize(last)
	col.mu.Lock()
	seen := summarize(col.fromSeen)
	col.mu.Unlock()
	b.ReportMetric(ms(seen.p50), "seen-to-ack-p50-ms")
	b.ReportMetric(ms(seen.p99), "seen-to-ack-p99-ms")
	b.ReportMetric(ms(s.p50), "p50-ms")
	b.ReportMetric(ms(s.p99), "p99-ms")
	b.ReportMetric(ms(s.max), "max-ms")
	b.ReportMetric(ms(l.p50), "all-p50-ms")
	b.ReportMetric(ms(l.p99), "all-p99-ms")
	b.ReportMetric(ms(l.max), "all-max-ms")
	b.Logf("pairs=%d: %d transitions, %d client enforcements; per client p50 %v p99 %v max %v; every client p50 %v p99 %v max %v",
		n, len(last), len(all), s.p50, s.p99, s.max, l.p50, l.p99, l.max)
}

type healthServer struct {
	healthpb.UnimplementedHealthServer
}

func (healthServer) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}
