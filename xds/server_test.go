package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/internal/xdsdial"
	"github.com/colonymesh/colony/internal/xdsdial/xdsdialtest"
)

// backend is a real gRPC server standing in for one callee instance: it
// counts the health checks it answers.
type backend struct {
	healthpb.UnimplementedHealthServer
	addr  *net.TCPAddr
	calls atomic.Int64
	fail  atomic.Bool // answer INTERNAL
}

func (b *backend) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	b.calls.Add(1)
	if b.fail.Load() {
		return nil, status.Error(codes.Internal, "failing on purpose")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func startBackend(t testing.TB) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: lis.Addr().(*net.TCPAddr)}
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

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// startServer starts a Server on 127.0.0.1 and returns it with its address.
func startServer(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, lis.Addr().String()
}

// dialXDS opens a real gRPC-Go xDS channel to xds:///<target> with its own
// bootstrap naming the server and the caller's node.
func dialXDS(t testing.TB, serverAddr, nodeID, target string, opts ...xdsdial.Option) *grpc.ClientConn {
	t.Helper()
	return xdsdialtest.Dial(t, serverAddr, nodeID, "checkout", target, opts...)
}

func callOnce(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// waitCall calls until ok(err) holds, at most n times, 10 ms apart.
func waitCall(t testing.TB, cc *grpc.ClientConn, n int, what string, ok func(error) bool) {
	t.Helper()
	var err error
	for i := 0; i < n; i++ {
		if err = callOnce(cc); ok(err) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not after %d calls; last error: %v", what, n, err)
}

func isUnavailable(err error) bool { return status.Code(err) == codes.Unavailable }

// waitStatus polls Status until cond holds, at most n times, 10 ms apart.
func waitStatus(t testing.TB, s *Server, n int, what string, cond func(Status) bool) Status {
	t.Helper()
	for i := 0; i < n; i++ {
		st := s.Status()
		if cond(st) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not after %d polls; status: %+v", what, n, s.Status())
	return Status{}
}

func enforcedBy(st Status, callee string, gen uint64, node string) (Enforcement, bool) {
	for _, tr := range st.Transitions {
		if tr.Callee != callee || tr.Generation != gen {
			continue
		}
		for _, e := range tr.Enforced {
			if e.NodeID == node {
				return e, true
			}
		}
	}
	return Enforcement{}, false
}

func clientOf(st Status, node string) (ClientStatus, bool) {
	for _, c := range st.Clients {
		if c.NodeID == node {
			return c, true
		}
	}
	return ClientStatus{}, false
}

func grpcState(backends []*backend, b *breaker.PairRecord) State {
	st := State{Caller: "checkout", Instance: "checkout-1"}
	c := Callee{Name: "payments", Protocol: GRPC, Breaker: b, BreakerSeen: time.Now()}
	if b != nil && b.State == breaker.HalfOpen {
		c.ProbeSecret = liveSecret(b.Generation)
	}
	for i, be := range backends {
		c.Endpoints = append(c.Endpoints, Endpoint{
			Instance: "payments-" + strconv.Itoa(i), Address: be.addr.IP.String(), Port: be.addr.Port, Zone: "z" + strconv.Itoa(i%2),
		})
	}
	st.Callees = []Callee{c, {Name: "ledger", Protocol: HTTP}}
	return st
}

// liveSecret stands in for the sidecar's random probe secret of a
// generation.
func liveSecret(gen uint64) string { return fmt.Sprintf("s3cr3t-of-generation-%d", gen) }

func liveRecord(state breaker.State, gen uint64, probes map[string]int) *breaker.PairRecord {
	return &breaker.PairRecord{
		Caller: "checkout", Callee: "payments",
		Record: breaker.Record{State: state, Generation: gen, Since: time.Now(), Probes: probes},
	}
}

func totalCalls(bs []*backend) int64 {
	var n int64
	for _, b := range bs {
		n += b.calls.Load()
	}
	return n
}

// TestProxylessGRPCClientEnforcesBreaker runs a real gRPC-Go xDS client
// against the server, with two real backends, through CLOSED, OPEN, CLOSED,
// HALF_OPEN on a non-holder and HALF_OPEN on a holder.
func TestProxylessGRPCClientEnforcesBreaker(t *testing.T) {
	backends := []*backend{startBackend(t), startBackend(t)}
	// A gRPC server stands in for the sidecar's probe gate: the test
	// checks where calls are routed, the gate has tests of its own.
	gate := startBackend(t)
	grpcState := func(backends []*backend, b *breaker.PairRecord) State {
		st := grpcState(backends, b)
		st.ProbeGate = gate.addr.String()
		return st
	}
	var enforcedCB atomic.Int64
	s, addr := startServer(t, Config{OnEnforced: func(Enforcement) { enforcedCB.Add(1) }})
	if err := s.Update(grpcState(backends, nil)); err != nil {
		t.Fatal(err)
	}
	const node = "checkout-1"
	cc := dialXDS(t, addr, node, "payments")

	// CLOSED: calls pass and spread over both backends.
	waitCall(t, cc, 500, "first call through xDS", func(err error) bool { return err == nil })
	// Calls spread over both backends once both are connected (a
	// locality whose backend is still connecting gets none meanwhile).
	for i := 0; i < 500 && (backends[0].calls.Load() == 0 || backends[1].calls.Load() == 0); i++ {
		if err := callOnce(cc); err != nil {
			t.Fatalf("CLOSED call %d: %v", i, err)
		}
	}
	for i, b := range backends {
		if b.calls.Load() == 0 {
			t.Errorf("backend %d got no calls while CLOSED", i)
		}
	}
	settled := waitStatus(t, s, 500, "client ACKs every type", func(st Status) bool {
		c, ok := clientOf(st, node)
		if !ok {
			return false
		}
		for _, typ := range []string{"LDS", "RDS", "CDS", "EDS"} {
			ts := c.Types[typ]
			if ts.Sent == 0 || ts.LastAcked != ts.LastSent {
				return false
			}
		}
		return true
	})
	before, _ := clientOf(settled, node)
	if before.Envoy || before.UserAgent == "" {
		t.Errorf("client %+v: want a proxyless client with a user agent", before)
	}
	t.Logf("client after setup: %+v", before)

	// applyFlip publishes a record and waits until the client has ACKed the
	// routes carrying it.
	applyFlip := func(b *breaker.PairRecord) Enforcement {
		t.Helper()
		if err := s.Update(grpcState(backends, b)); err != nil {
			t.Fatal(err)
		}
		st := waitStatus(t, s, 500, fmt.Sprintf("client enforces generation %d", b.Generation), func(st Status) bool {
			_, ok := enforcedBy(st, "payments", b.Generation, node)
			return ok
		})
		e, _ := enforcedBy(st, "payments", b.Generation, node)
		if e.FromSeen < 0 || e.State != b.State {
			t.Errorf("enforcement %+v", e)
		}
		// The sidecar's push span runs from the response to the ACK.
		if e.Sent.IsZero() || e.At.Before(e.Sent) || !strings.HasPrefix(e.Version, s.VersionPrefix()) {
			t.Errorf("enforcement %+v: want the ACKed version (prefix %q), sent before the ACK", e, s.VersionPrefix())
		}
		t.Logf("%v generation %d: ACKed %v after the sidecar saw it, %v after the leader's transition", b.State, b.Generation, e.FromSeen, e.FromLeader)
		return e
	}

	// OPEN: calls fail fast with UNAVAILABLE and reach no backend.
	applyFlip(liveRecord(breaker.Open, 2, nil))
	waitCall(t, cc, 500, "OPEN enforced", isUnavailable)
	n := totalCalls(backends)
	for i := 0; i < 50; i++ {
		err := callOnce(cc)
		if !isUnavailable(err) {
			t.Fatalf("OPEN call %d: %v, want UNAVAILABLE", i, err)
		}
		if i == 0 {
			t.Logf("OPEN call error: %v", err)
		}
	}
	if got := totalCalls(backends); got != n {
		t.Errorf("backends got %d calls while OPEN", got-n)
	}

	// CLOSED again: calls pass.
	applyFlip(liveRecord(breaker.Closed, 3, nil))
	waitCall(t, cc, 500, "CLOSED enforced", func(err error) bool { return err == nil })
	for i := 0; i < 20; i++ {
		if err := callOnce(cc); err != nil {
			t.Fatalf("CLOSED call %d: %v", i, err)
		}
	}

	// HALF_OPEN, permits held by another instance: nothing passes.
	applyFlip(liveRecord(breaker.HalfOpen, 4, map[string]int{"checkout-9": 3}))
	waitCall(t, cc, 500, "HALF_OPEN (non-holder) enforced", isUnavailable)
	n = totalCalls(backends)
	for i := 0; i < 200; i++ {
		if err := callOnce(cc); !isUnavailable(err) {
			t.Fatalf("HALF_OPEN non-holder call %d: %v, want UNAVAILABLE", i, err)
		}
	}
	if got := totalCalls(backends); got != n {
		t.Errorf("backends got %d calls on a non-holder in HALF_OPEN", got-n)
	}

	// HALF_OPEN, this instance holds permits: every call of this client
	// (no guard mark: a stock client) goes to the probe gate, none straight
	// to the callee, none aborted; a probe mark changes nothing for it.
	applyFlip(liveRecord(breaker.HalfOpen, 5, map[string]int{node: 3}))
	waitCall(t, cc, 1000, "HALF_OPEN (holder) routes to the gate", func(err error) bool { return err == nil })
	n, g := totalCalls(backends), gate.calls.Load()
	for i := range 100 {
		md := metadata.AppendToOutgoingContext(context.Background(), ProbeHeader, liveSecret(5))
		if i%2 == 0 {
			md = context.Background()
		}
		ctx, cancel := context.WithTimeout(md, 5*time.Second)
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil {
			t.Fatalf("HALF_OPEN holder call %d: %v, want it answered by the gate", i, err)
		}
	}
	if got := totalCalls(backends) - n; got != 0 {
		t.Errorf("backends got %d calls straight from a stock client of a holder, want 0 (all through the gate)", got)
	}
	if got := gate.calls.Load() - g; got != 100 {
		t.Errorf("the gate got %d of 100 calls", got)
	}

	// A guard client of the same instance gets the guard routes: calls
	// marked with this generation's secret all reach the callee (the
	// client library marks exactly its permits); a call marked with the
	// generation itself or with an earlier generation's secret is an
	// ordinary call, aborted, and nothing goes to the gate.
	gc := dialXDS(t, addr, node, "payments", xdsdial.AsGuard())
	waitCall(t, gc, 1000, "guard client's first probe", func(err error) bool { return err == nil || isUnavailable(err) })
	n, g = totalCalls(backends), gate.calls.Load()
	for i := range 50 {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), ProbeHeader, liveSecret(5)), 5*time.Second)
		_, err := healthpb.NewHealthClient(gc).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil {
			t.Fatalf("marked probe call %d: %v", i, err)
		}
	}
	for _, forged := range []string{"", "5", liveSecret(4)} {
		for i := range 50 {
			ctx := context.Background()
			if forged != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, ProbeHeader, forged)
			}
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := healthpb.NewHealthClient(gc).Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if !isUnavailable(err) {
				t.Fatalf("guard call %d marked %q: %v, want UNAVAILABLE", i, forged, err)
			}
		}
	}
	if got := totalCalls(backends) - n; got != 50 {
		t.Errorf("backends got %d calls from the guard client, want its 50 probes", got)
	}
	if got := gate.calls.Load() - g; got != 0 {
		t.Errorf("the gate got %d calls from a guard client, want 0", got)
	}

	// The flips sent routes only: listeners were not re-sent, nor clusters
	// and endpoints but the gate's (the holder's route named it), and the
	// client ACKed every version it was sent.
	final := waitStatus(t, s, 500, "client ACKs the last routes", func(st Status) bool {
		c, _ := clientOf(st, node)
		return c.Types["RDS"].LastAcked == c.Types["RDS"].LastSent
	})
	after, _ := clientOf(final, node)
	for _, typ := range []string{"LDS"} {
		if b, a := before.Types[typ], after.Types[typ]; a.Sent != b.Sent || a.LastSent != b.LastSent {
			t.Errorf("%s: sent %d responses (last version %q) before the flips, %d (%q) after", typ, b.Sent, b.LastSent, a.Sent, a.LastSent)
		}
	}
	for typ, ts := range after.Types {
		if ts.Nacked != 0 || ts.LastAcked != ts.LastSent {
			t.Errorf("%s: %+v, want every response ACKed", typ, ts)
		}
	}
	if got, want := after.Types["RDS"].Sent-before.Types["RDS"].Sent, 4; got != want {
		t.Errorf("RDS: %d responses for 4 flips, want %d", got, want)
	}
	if after.LastNACK != nil {
		t.Errorf("NACK: %+v", after.LastNACK)
	}
	for _, gen := range []uint64{2, 3, 4, 5} {
		if _, ok := enforcedBy(final, "payments", gen, node); !ok {
			t.Errorf("no enforcement recorded for generation %d", gen)
		}
	}
	// Four flips for the stock client, and generation 5 for the guard one.
	if got := enforcedCB.Load(); got != 5 {
		t.Errorf("OnEnforced called %d times, want 5", got)
	}
}

// TestProxylessGRPCClientNACK makes a real gRPC-Go client reject a
// listener (no router filter) and checks the NACK is recorded with the
// resource and reason.
func TestProxylessGRPCClientNACK(t *testing.T) {
	backends := []*backend{startBackend(t)}
	nacks := make(chan NACK, 16)
	s, addr := startServer(t, Config{OnNACK: func(n NACK) {
		select {
		case nacks <- n:
		default:
		}
	}})
	if err := s.Update(grpcState(backends, nil)); err != nil {
		t.Fatal(err)
	}
	cc := dialXDS(t, addr, "checkout-1", "payments")
	waitCall(t, cc, 500, "first call", func(err error) bool { return err == nil })

	// A listener gRPC must reject, pushed past Translate's checks.
	bad, err := proxylessListener("payments")
	if err != nil {
		t.Fatal(err)
	}
	h := hcmOf(t, bad)
	h.HttpFilters = h.HttpFilters[:1] // the fault filter, no router
	a, err := packValid("bad hcm", h)
	if err != nil {
		t.Fatal(err)
	}
	bad.ApiListener.ApiListener = a
	if err := s.caches[cacheProxylessListeners].UpdateResource("payments", bad); err != nil {
		t.Fatal(err)
	}
	var n NACK
	select {
	case n = <-nacks:
	case <-time.After(10 * time.Second):
		t.Fatal("no NACK within 10 s")
	}
	t.Logf("NACK: %+v", n)
	if n.Type != "LDS" || len(n.Resources) != 1 || n.Resources[0] != "payments" || n.Reason == "" || n.NodeID != "checkout-1" {
		t.Errorf("NACK %+v, want LDS payments from checkout-1 with a reason", n)
	}
	c, _ := clientOf(s.Status(), "checkout-1")
	if c.LastNACK == nil || c.LastNACK.Reason != n.Reason || c.Types["LDS"].Nacked == 0 {
		t.Errorf("status %+v does not show the NACK", c)
	}
	// The client keeps using the last good listener.
	if err := callOnce(cc); err != nil {
		t.Errorf("call after the NACK: %v", err)
	}
}

func TestServerUpdateErrors(t *testing.T) {
	s, err := NewServer(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(State{Caller: "bad/name", Instance: "i"}); !errors.Is(err, ErrInvalidState) {
		t.Errorf("Update(bad state): %v, want ErrInvalidState", err)
	}
	s.Close()
	s.Close()
	if err := s.Update(State{Caller: "checkout", Instance: "i"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(lis); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close: %v, want ErrClosed", err)
	}
	if _, err := NewServer(Config{LoadReportInterval: time.Hour}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewServer(bad config): %v, want ErrInvalidConfig", err)
	}
}
