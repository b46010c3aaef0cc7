package sidecar

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/xds"
)

// gateBackend is a real gRPC health server standing in for the callee.
type gateBackend struct {
	healthpb.UnimplementedHealthServer
	addr    string
	calls   atomic.Int64
	code    atomic.Int32  // the status Check answers
	delay   time.Duration // Check sleeps this long first
	block   chan struct{} // when set, Check waits for it (or its context)
	entered chan struct{} // when set, Check signals here on arrival
}

func (b *gateBackend) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	b.calls.Add(1)
	if b.entered != nil {
		b.entered <- struct{}{}
	}
	if b.block != nil {
		select {
		case <-b.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	time.Sleep(b.delay)
	if c := codes.Code(b.code.Load()); c != codes.OK {
		return nil, status.Error(c, "failing on purpose")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// Watch sends one message, then holds the stream open until the caller
// ends it: a caller that receives the message proves the gate streams.
func (b *gateBackend) Watch(_ *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	if err := stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func startGateBackend(t *testing.T, b *gateBackend) *gateBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = lis.Addr().String()
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

// recorded collects the outcomes a gate records. The gate records a call
// after its caller has the answer: wait for n before looking.
type recorded struct {
	mu    sync.Mutex
	calls []breaker.Call
	added chan struct{} // one send per outcome
}

func (r *recorded) record(callee string, c breaker.Call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	r.added <- struct{}{}
}

// wait returns the outcomes once there are n.
func (r *recorded) wait(t *testing.T, n int) []breaker.Call {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for calls := r.get(); ; calls = r.get() {
		if len(calls) >= n {
			return calls
		}
		select {
		case <-r.added:
		case <-timeout:
			t.Fatalf("%d outcomes recorded, want %d", len(calls), n)
		}
	}
}

func (r *recorded) get() []breaker.Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]breaker.Call(nil), r.calls...)
}

// testGate starts a gate whose lookup answers *target for the authority
// "payments" (any port); the test may change *target between calls.
func testGate(t *testing.T, target *atomic.Pointer[gateTarget], maxCalls int, maxCall time.Duration) (*gate, *recorded) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorded{added: make(chan struct{}, 4096)}
	g := newGate(gateConfig{
		Listener: lis, MaxCalls: maxCalls, MaxCallDuration: maxCall, Record: rec.record,
		Lookup: func(authority string) (gateTarget, bool) {
			if _, ok := xds.ResolveName(authority, []string{"payments"}); !ok {
				return gateTarget{}, false
			}
			return *target.Load(), true
		},
	})
	t.Cleanup(g.Close)
	return g, rec
}

// dialGate is what a stock gRPC client's channel does once its route names
// the gate's cluster: a plaintext HTTP/2 connection to the gate, with the
// callee's name as the authority.
func dialGate(t *testing.T, g *gate, authority string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(g.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func halfOpen(gen uint64, permits int, endpoints ...string) *gateTarget {
	return &gateTarget{caller: "checkout", callee: "payments", grpc: true, state: breaker.HalfOpen,
		generation: gen, permits: permits, endpoints: endpoints}
}

func check(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// TestGateAdmitsExactlyThePermits: of many concurrent calls in one
// HALF_OPEN generation, exactly the instance's permits reach the callee;
// the rest fail at once with UNAVAILABLE naming the pair, its state and the
// spent permits. A new generation brings new permits; permits spent by
// calls the gate did not see (a guard's reports) count too.
func TestGateAdmitsExactlyThePermits(t *testing.T) {
	be := startGateBackend(t, &gateBackend{})
	var target atomic.Pointer[gateTarget]
	target.Store(halfOpen(5, 3, be.addr))
	g, rec := testGate(t, &target, 1024, 0)
	cc := dialGate(t, g, "Payments:50051")

	run := func(n int) (ok int, rejected []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				err := check(cc)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					ok++
				} else {
					rejected = append(rejected, err)
				}
			})
		}
		wg.Wait()
		return ok, rejected
	}
	ok, rejected := run(64)
	if ok != 3 || be.calls.Load() != 3 {
		t.Fatalf("generation 5, 3 permits: %d calls passed, %d reached the callee; want 3", ok, be.calls.Load())
	}
	const want = "colony: checkout->payments is HALF_OPEN (generation 5) and this instance has spent 3 of its 3 probe permits"
	for _, err := range rejected {
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != want {
			t.Fatalf("rejected call: %v, want UNAVAILABLE %q", err, want)
		}
	}
	if got := len(rec.wait(t, 3)); got != 3 {
		t.Errorf("%d outcomes recorded, want the 3 forwarded calls'", got)
	}

	// The next generation: its own permits.
	target.Store(halfOpen(6, 2, be.addr))
	if ok, _ := run(10); ok != 2 {
		t.Errorf("generation 6, 2 permits: %d calls passed", ok)
	}
	// Permits a guard client spent in generation 7 leave fewer.
	target.Store(halfOpen(7, 3, be.addr))
	g.spend("payments", 7, 2)
	if ok, _ := run(10); ok != 1 {
		t.Errorf("generation 7, 3 permits, 2 spent elsewhere: %d calls passed, want 1", ok)
	}
	if got := be.calls.Load(); got != 6 {
		t.Errorf("the callee received %d calls in all, want 3+2+1", got)
	}
}

// TestGateRejectsWithoutPermits: OPEN, HALF_OPEN without this instance's
// permits and an unknown name are answered at once, never forwarded; a
// CLOSED pair's calls are forwarded (a client whose routes lag).
func TestGateRejectsWithoutPermits(t *testing.T) {
	be := startGateBackend(t, &gateBackend{})
	var target atomic.Pointer[gateTarget]
	g, _ := testGate(t, &target, 1024, 0)
	for _, tt := range []struct {
		name      string
		target    *gateTarget
		authority string
		code      codes.Code
		msg       string
	}{
		{"open", &gateTarget{caller: "checkout", callee: "payments", grpc: true, state: breaker.Open, generation: 4, endpoints: []string{be.addr}},
			"payments", codes.Unavailable, "colony: checkout->payments is OPEN (generation 4)"},
		{"half-open, no permits here", halfOpen(5, 0, be.addr),
			"payments", codes.Unavailable, "colony: checkout->payments is HALF_OPEN (generation 5) and this instance holds no probe permits"},
		{"unknown name", halfOpen(5, 3, be.addr),
			"ledger", codes.Unavailable, `colony: probe gate: no callee named "ledger"`},
		{"no instance", halfOpen(5, 3),
			"payments", codes.Unavailable, "colony: probe gate: payments has no registered instance"},
		{"closed", &gateTarget{caller: "checkout", callee: "payments", grpc: true, state: breaker.Closed, endpoints: []string{be.addr}},
			"payments", codes.OK, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			target.Store(tt.target)
			before := be.calls.Load()
			err := check(dialGate(t, g, tt.authority))
			st := status.Convert(err)
			if st.Code() != tt.code || st.Message() != tt.msg {
				t.Fatalf("%v, want %v %q", err, tt.code, tt.msg)
			}
			if forwarded := be.calls.Load() - before; (forwarded == 1) != (tt.code == codes.OK) {
				t.Errorf("%d calls forwarded", forwarded)
			}
		})
	}
}

// TestGateRecordsOutcomes: a forwarded call's outcome is its gRPC status
// (from the trailers, or a trailers-only response) and the time it took;
// a call the gate's time bound (its own, or the probe's from the policy)
// cuts is a timeout, the caller told DEADLINE_EXCEEDED.
func TestGateRecordsOutcomes(t *testing.T) {
	const delay = 20 * time.Millisecond
	be := startGateBackend(t, &gateBackend{delay: delay})
	var target atomic.Pointer[gateTarget]
	target.Store(halfOpen(1, 100, be.addr))
	g, rec := testGate(t, &target, 1024, 0)
	cc := dialGate(t, g, "payments")

	for i, code := range []codes.Code{codes.OK, codes.Internal, codes.Unavailable, codes.NotFound} {
		be.code.Store(int32(code))
		err := check(cc)
		if got := status.Code(err); got != code {
			t.Fatalf("call answered %v by the callee: the caller got %v", code, err)
		}
		calls := rec.wait(t, i+1)
		last := calls[len(calls)-1]
		if last.Kind != breaker.CallGRPC || last.Code != int(code) || last.Duration < delay {
			t.Errorf("recorded %+v for a call answered %v after %v", last, code, delay)
		}
	}

	// The gate's own bound on a call.
	be2 := startGateBackend(t, &gateBackend{block: make(chan struct{})})
	target.Store(halfOpen(2, 1, be2.addr))
	g2, rec2 := testGate(t, &target, 1024, 50*time.Millisecond)
	err := check(dialGate(t, g2, "payments"))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a call past the gate's bound: %v, want DEADLINE_EXCEEDED", err)
	}
	if calls := rec2.wait(t, 1); len(calls) != 1 || calls[0].Kind != breaker.CallTimeout {
		t.Errorf("recorded %+v, want one timeout", calls)
	}

	// A probe's bound from the pair's probe timeout.
	slow := halfOpen(3, 1, be2.addr)
	slow.maxCall = 50 * time.Millisecond
	target.Store(slow)
	g3, rec3 := testGate(t, &target, 1024, 0)
	if err := check(dialGate(t, g3, "payments")); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a probe past its bound: %v, want DEADLINE_EXCEEDED", err)
	}
	if calls := rec3.wait(t, 1); len(calls) != 1 || calls[0].Kind != breaker.CallTimeout {
		t.Errorf("recorded %+v, want one timeout", calls)
	}
}

// TestGateStreams: the gate forwards a server stream's messages as they
// come (a health Watch whose first message arrives while the stream stays
// open), and a call's end by its caller is recorded as CANCELLED.
func TestGateStreams(t *testing.T) {
	be := startGateBackend(t, &gateBackend{})
	var target atomic.Pointer[gateTarget]
	target.Store(halfOpen(1, 1, be.addr))
	g, rec := testGate(t, &target, 1024, 0)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := healthpb.NewHealthClient(dialGate(t, g, "payments")).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("the first message of an open stream: %v", err)
	}
	cancel()
	if calls := rec.wait(t, 1); len(calls) != 1 || calls[0].Kind != breaker.CallGRPC || calls[0].Code != int(codes.Canceled) {
		t.Errorf("recorded %+v, want the caller's cancel", calls)
	}
}

// TestGateBoundsCalls: beyond MaxCalls in the gate at once, a call is
// rejected at once naming the limit; Close ends the calls in the gate.
func TestGateBoundsCalls(t *testing.T) {
	be := startGateBackend(t, &gateBackend{block: make(chan struct{}), entered: make(chan struct{}, 2)})
	var target atomic.Pointer[gateTarget]
	target.Store(halfOpen(1, 10, be.addr))
	g, _ := testGate(t, &target, 2, 0)
	cc := dialGate(t, g, "payments")
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- check(cc) }()
	}
	<-be.entered
	<-be.entered
	err := check(cc)
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "colony: probe gate: 2 calls in flight, its limit" {
		t.Errorf("a third call: %v, want UNAVAILABLE naming the limit", err)
	}
	g.Close() // the two calls end with their connection
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a call in the gate succeeded across Close")
		}
	}
}

// TestGateHTTP: an HTTP/1.1 caller (Envoy forwarding an HTTP callee's
// call) is forwarded over HTTP/1.1, its status recorded; rejected, it gets
// 503 with the breaker header.
func TestGateHTTP(t *testing.T) {
	var got atomic.Value
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Proto + " " + r.Host)
		w.WriteHeader(http.StatusTeapot)
	})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go upstream.Serve(lis)
	t.Cleanup(func() { upstream.Close() })
	var target atomic.Pointer[gateTarget]
	target.Store(&gateTarget{caller: "storefront", callee: "payments", state: breaker.HalfOpen, generation: 3, permits: 1, endpoints: []string{lis.Addr().String()}})
	g, rec := testGate(t, &target, 1024, 0)
	get := func() *http.Response {
		req, _ := http.NewRequest("GET", "http://"+g.Addr()+"/items", nil)
		req.Host = "payments:8080"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.StatusCode != http.StatusTeapot || got.Load() != "HTTP/1.1 payments:8080" {
		t.Errorf("forwarded: %d, upstream saw %v; want 418 over HTTP/1.1 for payments:8080", resp.StatusCode, got.Load())
	}
	if calls := rec.wait(t, 1); len(calls) != 1 || calls[0].Kind != breaker.CallHTTP || calls[0].Code != http.StatusTeapot {
		t.Errorf("recorded %+v", calls)
	}
	resp := get()
	if h := resp.Header.Get(xds.DefaultBreakerHeader); resp.StatusCode != http.StatusServiceUnavailable || h != "storefront->payments; state=HALF_OPEN; generation=3" {
		t.Errorf("rejected: %d, %s=%q", resp.StatusCode, xds.DefaultBreakerHeader, h)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestParseGRPCTimeout(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"100m", 100 * time.Millisecond, true},
		{"1S", time.Second, true},
		{"2H", 2 * time.Hour, true},
		{"99999999H", time.Duration(1<<63 - 1), true}, // saturates
		{"5u", 5 * time.Microsecond, true},
		{"7n", 7, true},
		{"3M", 3 * time.Minute, true},
		{"", 0, false},
		{"m", 0, false},
		{"123456789S", 0, false}, // more than 8 digits
		{"-1S", 0, false},
		{"10x", 0, false},
	} {
		got, ok := parseGRPCTimeout(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestEncodeGRPCMessage(t *testing.T) {
	if got, want := encodeGRPCMessage("50% of \"x\"\né"), "50%25 of \"x\"%0A%C3%A9"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestGateOutcomesFollowThePolicy: the gate's outcomes are classified with
// the pair's policy, as access log entries are: its gRPC code lists and its
// slow-call duration apply to stock clients' probes, and their latencies
// count in the pair's percentiles.
func TestGateOutcomesFollowThePolicy(t *testing.T) {
	s := bareSidecar()
	p := breaker.DefaultPolicy()
	p.SlowCallDuration = 50 * time.Millisecond
	p.Classification = breaker.Classification{GRPCFailures: []string{"INTERNAL"}}
	s.policies["payments"] = breaker.PolicySet{Callee: "payments", Policy: p}
	for _, c := range []breaker.Call{
		{Kind: breaker.CallGRPC, Code: int(codes.Internal), Duration: time.Millisecond},    // failure
		{Kind: breaker.CallGRPC, Code: int(codes.Unavailable), Duration: time.Millisecond}, // not listed: success
		{Kind: breaker.CallGRPC, Code: int(codes.OK), Duration: 80 * time.Millisecond},     // slow success
		{Kind: breaker.CallTimeout, Duration: 2 * time.Second},                             // slow failure
	} {
		s.gateOutcome("payments", c)
	}
	got := *s.agg["payments"]
	if got.Successes != 2 || got.Failures != 2 || got.Slow != 2 {
		t.Errorf("counts %+v, want 2 successes and 2 failures, 2 of them slow", got)
	}
	// Each probe's latency goes into the pair's histogram.
	var want breaker.Latency
	want[breaker.LatencyBucket(time.Millisecond)] = 2
	want[breaker.LatencyBucket(80*time.Millisecond)]++
	want[breaker.LatencyBucket(2*time.Second)]++
	if got.Latency != want {
		t.Errorf("latency %v, want %v", got.Latency, want)
	}
}

// BenchmarkGateUnary measures what the probe gate adds to a unary gRPC
// call on loopback: the same health check straight to the callee and
// through the gate (a CLOSED pair's call, forwarded without a permit).
func BenchmarkGateUnary(b *testing.B) {
	be := &gateBackend{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	be.addr = lis.Addr().String()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, be)
	go gs.Serve(lis)
	defer gs.Stop()
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	target := gateTarget{caller: "checkout", callee: "payments", grpc: true, state: breaker.Closed, endpoints: []string{be.addr}}
	g := newGate(gateConfig{Listener: glis, MaxCalls: 1024, Record: func(string, breaker.Call) {},
		Lookup: func(string) (gateTarget, bool) { return target, true }})
	defer g.Close()
	for _, bc := range []struct{ name, addr string }{{"direct", be.addr}, {"gate", g.Addr()}} {
		b.Run(bc.name, func(b *testing.B) {
			cc, err := grpc.NewClient(bc.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("payments"))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			hc := healthpb.NewHealthClient(cc)
			ctx := context.Background()
			for b.Loop() {
				if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
