//go:build unix

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/xdsdial"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/sidecar/guard"
	"github.com/colonymesh/colony/tests/framework"
)

// calleeServer is one instance of the callee: a real gRPC server (the health
// service) that fails on demand and records every call it receives.
type calleeServer struct {
	healthpb.UnimplementedHealthServer
	addr    string
	failing atomic.Bool

	mu    sync.Mutex
	calls []calleeCall
}

type calleeCall struct {
	at     time.Time
	caller string // the x-test-caller metadata
	probe  bool   // carried guard.ProbeHeader
}

func (c *calleeServer) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	call := calleeCall{at: time.Now(), probe: len(md.Get(guard.ProbeHeader)) > 0}
	if v := md.Get("x-test-caller"); len(v) > 0 {
		call.caller = v[0]
	}
	c.mu.Lock()
	c.calls = append(c.calls, call)
	c.mu.Unlock()
	if c.failing.Load() {
		return nil, status.Error(codes.Unavailable, "payments is down (test)")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (c *calleeServer) received() []calleeCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]calleeCall(nil), c.calls...)
}

func startCallee(t *testing.T) *calleeServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &calleeServer{addr: lis.Addr().String()}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, c)
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return c
}

// proc is a child process a test owns: in its own process group, its
// output in a log file, stopped at cleanup (SIGTERM, then SIGKILL after
// exitTimeout), the log's last lines shown when the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited and its output is read
}

// startProc starts cmd, its stderr (and its stdout, unless stdout is set)
// going to logPath. stdout, when set, reads the process's stdout until it
// ends.
func startProc(t *testing.T, name, logPath string, tail int, cmd *exec.Cmd, stdout func(io.Reader)) *proc {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = logf
	var out io.Reader
	if stdout == nil {
		cmd.Stdout = logf
	} else if out, err = cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = framework.SysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		if stdout != nil {
			stdout(out)
			io.Copy(io.Discard, out)
		}
		cmd.Wait()
		logf.Close()
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil && len(b) > 0 {
				t.Logf("--- %s log (last %d lines) ---\n%s", name, tail, lastLines(string(b), tail))
			}
		}
	})
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// sidecarProc is a `colony sidecar` process.
type sidecarProc struct {
	*proc
	addr string
}

// startSidecarProc runs `colony sidecar` with args, listening on a free
// loopback port, and waits until its API answers. Cleanup stops it.
func startSidecarProc(t *testing.T, dir, name string, args ...string) *sidecarProc {
	t.Helper()
	ports, err := framework.FreePorts("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	args = append([]string{"sidecar", "--listen", addr, "--egress-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--log-level", "info"}, args...)
	p := &sidecarProc{addr: addr,
		proc: startProc(t, name, filepath.Join(dir, name+".log"), 40, exec.Command(colonyBin, args...), nil)}
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := colonyv1.NewSidecarClient(conn).Status(ctx, &colonyv1.SidecarStatusRequest{})
		cancel()
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar %s not serving on %s: %v", name, p.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *sidecarProc) status(t *testing.T) *colonyv1.SidecarStatusResponse {
	t.Helper()
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := colonyv1.NewSidecarClient(conn).Status(ctx, &colonyv1.SidecarStatusRequest{})
	if err != nil {
		t.Fatalf("status of %s: %v", p.name, err)
	}
	return st
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// meshCaller is one caller instance: its sidecar process, Colony's client
// library (guard) beside the app, and a real gRPC-Go xDS client dialing
// xds:///payments through the sidecar's xDS server.
type meshCaller struct {
	id      string // service/instance
	sidecar *sidecarProc
	guard   *guard.Guard
	cc      *grpc.ClientConn
	broken  atomic.Bool // its own network to the callee refuses connections

	connMu sync.Mutex
	conns  []net.Conn // to the callee, closed when the network breaks

	ok, failed, rejected atomic.Int64
}

func newMeshCaller(t *testing.T, c *Cluster, dir, service, instance, coords string) *meshCaller {
	t.Helper()
	m := &meshCaller{id: service + "/" + instance}
	m.sidecar = startSidecarProc(t, dir, service+"-"+instance, append(c.SidecarArgs(t, service),
		"--service", service, "--instance", instance, "--address", "127.0.0.1:1", "--coordinators", coords,
		"--report-interval", "100ms", "--session-ttl", "3s", "--degraded-after", "2s")...)
	g, err := guard.New(guard.Config{Sidecar: m.sidecar.addr, Instance: instance, ReportInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	m.guard = g
	tag := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, "x-test-caller", m.id), method, req, reply, cc, opts...)
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		if m.broken.Load() {
			return nil, errors.New("this caller's network to the callee is broken (test)")
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			m.connMu.Lock()
			m.conns = append(m.conns, conn)
			m.connMu.Unlock()
		}
		return conn, err
	}
	m.cc, err = xdsdial.DialWith(m.sidecar.addr, m.id, service, "payments", []xdsdial.Option{xdsdial.AsGuard()},
		grpc.WithChainUnaryInterceptor(g.UnaryClientInterceptor("payments"), tag), grpc.WithContextDialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.cc.Close() })
	return m
}

// breakNetwork cuts this caller off from the callee: open connections are
// closed and new ones refused, until repair.
func (m *meshCaller) breakNetwork() {
	m.broken.Store(true)
	m.connMu.Lock()
	for _, c := range m.conns {
		c.Close()
	}
	m.conns = nil
	m.connMu.Unlock()
}

func (m *meshCaller) repairNetwork() { m.broken.Store(false) }

// call makes one call and counts how it ended.
func (m *meshCaller) call() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(m.cc).Check(ctx, &healthpb.HealthCheckRequest{})
	switch {
	case err == nil:
		m.ok.Add(1)
	case rejectedFast(err):
		m.rejected.Add(1)
	default:
		m.failed.Add(1)
	}
	return err
}

// run calls every 20 ms until ctx ends (bounded).
func (m *meshCaller) run(ctx context.Context) {
	for i := 0; i < 20000 && ctx.Err() == nil; i++ {
		m.call()
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// rejectedFast reports whether a call fails locally because of the breaker:
// UNAVAILABLE with a message naming it, without reaching the callee.
func rejectedFast(err error) bool {
	st := status.Convert(err)
	return st.Code() == codes.Unavailable && strings.Contains(st.Message(), "colony: breaker") && strings.Contains(st.Message(), "->payments")
}

// TestMeshAllCallersTripTogether is the mission end to end on 127.0.0.1: a
// 3-node coordinator cluster (processes); a callee service "payments" of two
// real gRPC servers registered by their sidecars; three caller instances
// (checkout/c1, checkout/c2, frontend/f1), each with its own sidecar process,
// Colony's client library and a real gRPC-Go client dialing xds:///payments
// through that sidecar's xDS server; outcomes reported through the sidecars.
func TestMeshAllCallersTripTogether(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 240*time.Second)
	c.WaitLeader(t, ctx)
	dir := t.TempDir()
	var eps []string
	for _, n := range c.Nodes {
		eps = append(eps, n.GRPCAddr)
	}
	coords := strings.Join(eps, ",")
	admin, err := client.New(client.Config{Endpoints: eps, TLS: c.ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const open = 3 * time.Second
	specs, err := client.ParsePolicyFile([]byte(`
policies:
  - callee: payments
    policy:
      window: 2s
      buckets: 4
      minimumCalls: 10
      failureRateThreshold: 0.5
      openDuration: 3s
      backoffMultiplier: 1
      jitter: 0
      probeBudget: 3
      successesToClose: 3
      probeTimeout: 5s
      minFailingInstances: 2
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ApplyPolicies(ctx, specs, "e2e", false); err != nil {
		t.Fatal(err)
	}

	var callees []*calleeServer
	for i := range 2 {
		cs := startCallee(t)
		callees = append(callees, cs)
		startSidecarProc(t, dir, fmt.Sprintf("payments-p%d", i+1), append(c.SidecarArgs(t, "payments"),
			"--service", "payments", "--instance", fmt.Sprintf("p%d", i+1),
			"--address", cs.addr, "--coordinators", coords)...)
	}
	// received returns the calls both callee instances got after since.
	received := func(since time.Time) []calleeCall {
		var all []calleeCall
		for _, cs := range callees {
			for _, c := range cs.received() {
				if c.at.After(since) {
					all = append(all, c)
				}
			}
		}
		return all
	}
	setFailing := func(v bool) {
		for _, cs := range callees {
			cs.failing.Store(v)
		}
	}

	callers := []*meshCaller{
		newMeshCaller(t, c, dir, "checkout", "c1", coords),
		newMeshCaller(t, c, dir, "checkout", "c2", coords),
		newMeshCaller(t, c, dir, "frontend", "f1", coords),
	}

	// Traffic flows through xDS to both callee instances.
	waitAll := func(what string, within time.Duration, ok func(*meshCaller, error) bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for _, m := range callers {
			for {
				err := m.call()
				if ok(m, err) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s: last call: %v", what, m.id, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	waitAll("traffic flows", 30*time.Second, func(_ *meshCaller, err error) bool { return err == nil })
	runCtx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, m := range callers {
		wg.Go(func() { m.run(runCtx) })
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopTraffic()
			wg.Wait()
		}
	}
	defer stop()
	time.Sleep(time.Second)
	for _, cs := range callees {
		if len(cs.received()) == 0 {
			t.Fatalf("callee %s got no calls: the xDS endpoints do not include it", cs.addr)
		}
	}

	// 4. One caller's own network breaks: only its calls fail, and the
	// quorum (2 failing instances of checkout) keeps the pair CLOSED.
	// c1 retries hard while cut off, so that its failures alone push the
	// pair's failure rate over the threshold: only the quorum holds it.
	callers[0].breakNetwork()
	burstEnd := time.Now().Add(2500 * time.Millisecond) // more than the 2s window
	for time.Now().Before(burstEnd) {
		if err := callers[0].call(); err == nil {
			t.Fatal("checkout/c1 reached the callee with its network broken")
		}
		time.Sleep(5 * time.Millisecond)
	}
	info, err := admin.GetBreaker(ctx, "checkout", "payments", 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Record.State != breaker.Closed {
		t.Fatalf("one caller's broken network tripped checkout->payments: %+v", info.Record)
	}
	if info.Live.QuorumBlocked != breaker.ConditionFailureRate || info.Live.FailingInstances != 1 {
		t.Fatalf("live evidence while c1 is cut off: %+v; want the failure rate held back by the quorum, 1 failing instance", info.Live)
	}
	if err := callers[1].call(); err != nil {
		t.Fatalf("checkout/c2 failed while only c1's network was broken: %v", err)
	}
	callers[0].repairNetwork()
	waitAll("c1 recovers", 30*time.Second, func(m *meshCaller, err error) bool { return err == nil })

	// 1. The callee fails: both pairs trip and every caller fails fast.
	tripStart := time.Now()
	setFailing(true)
	waitAll("every caller fails fast", 30*time.Second, func(_ *meshCaller, err error) bool { return rejectedFast(err) })
	t.Logf("callee failing -> every caller rejects locally: %v", time.Since(tripStart).Round(time.Millisecond))
	opened := map[string]*client.BreakerInfo{}
	for _, caller := range []string{"checkout", "frontend"} {
		info, err := admin.GetBreaker(ctx, caller, "payments", 0)
		if err != nil || info.Record.State != breaker.Open {
			t.Fatalf("%s->payments: %+v, %v; want OPEN", caller, info, err)
		}
		opened[caller] = info
	}
	// While OPEN, the callee receives nothing.
	quietFrom := time.Now()
	quiet := min(time.Until(opened["checkout"].Record.OpenUntil), time.Until(opened["frontend"].Record.OpenUntil)) - 300*time.Millisecond
	if quiet < 500*time.Millisecond {
		t.Fatalf("the OPEN period is nearly over (%v left): the machine is too slow for this check", quiet)
	}
	time.Sleep(quiet)
	if got := len(received(quietFrom)); got != 0 {
		t.Fatalf("the callee received %d calls while every pair was OPEN", got)
	}

	// 2. After the open duration, exactly the fleet-wide probe budget of
	// calls per pair reaches the callee; healthy again, the breakers close.
	setFailing(false)
	for _, caller := range []string{"checkout", "frontend"} {
		deadline := time.Now().Add(open + 20*time.Second)
		for {
			info, err := admin.GetBreaker(ctx, caller, "payments", 10)
			if err == nil && info.Record.State == breaker.Closed && info.Record.Generation > opened[caller].Record.Generation {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s->payments did not close: %+v %v", caller, info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitAll("traffic flows again", 30*time.Second, func(_ *meshCaller, err error) bool { return err == nil })
	probes := map[string]int{}
	for _, call := range received(quietFrom) {
		if call.probe {
			probes[strings.SplitN(call.caller, "/", 2)[0]]++
		}
	}
	if probes["checkout"] != 3 || probes["frontend"] != 3 {
		for _, caller := range []string{"checkout", "frontend"} {
			info, _ := admin.GetBreaker(ctx, caller, "payments", 20)
			for _, h := range info.History {
				ev := ""
				if h.Evidence != nil {
					ev = fmt.Sprintf("probe ok=%d failed=%d", h.Evidence.ProbeSuccesses, h.Evidence.ProbeFailures)
				}
				t.Logf("%s history: %s %s %v->%v gen %d %s probes=%v %s", caller, h.At.Format("15:04:05.000"), h.Kind, h.From, h.To, h.Generation, h.Cause, h.Probes, ev)
			}
		}
		for _, call := range received(quietFrom) {
			t.Logf("callee got %s probe=%v at %s", call.caller, call.probe, call.at.Format("15:04:05.000"))
		}
		t.Fatalf("probe calls that reached the callee per caller service: %v; want exactly the budget, 3 each", probes)
	}
	for _, caller := range []string{"checkout", "frontend"} {
		info, _ := admin.GetBreaker(ctx, caller, "payments", 10)
		var half, closed time.Time
		for _, h := range info.History {
			if h.Kind == breaker.HistoryTransition && h.To == breaker.HalfOpen {
				half = h.At
			}
			if h.Kind == breaker.HistoryTransition && h.To == breaker.Closed {
				closed = h.At
			}
		}
		for _, call := range received(quietFrom) {
			if pairCaller := strings.SplitN(call.caller, "/", 2)[0]; pairCaller == caller && !call.probe && call.at.After(half) && call.at.Before(closed) {
				t.Fatalf("%s: a call without a probe permit reached the callee in HALF_OPEN (%v, HALF_OPEN %v..%v)", caller, call.at, half, closed)
			}
		}
	}

	// 3. The leader dies while OPEN: every caller still fails fast.
	setFailing(true)
	waitAll("every caller fails fast again", 30*time.Second, func(_ *meshCaller, err error) bool { return rejectedFast(err) })
	leader := c.WaitLeader(t, ctx)
	leader.Kill(t)
	quietFrom = time.Now()
	time.Sleep(time.Second)
	for _, m := range callers {
		if err := m.call(); !rejectedFast(err) {
			t.Fatalf("%s after the leader's death: %v, want a fast rejection", m.id, err)
		}
	}
	// Every coordinator gone: sidecars keep enforcing the last state and say
	// they are stale.
	for _, n := range c.Running() {
		n.Kill(t)
	}
	time.Sleep(2500 * time.Millisecond) // past --degraded-after
	for _, m := range callers {
		if err := m.call(); !rejectedFast(err) {
			t.Fatalf("%s with no coordinator: %v, want the last state (OPEN) enforced", m.id, err)
		}
		st := m.sidecar.status(t)
		if !st.Degraded || st.Mode != "last-known" || st.StaleMs < 2000 {
			t.Fatalf("%s status with no coordinator: degraded=%v mode=%q stale=%dms; want degraded last-known, stale > 2s", m.id, st.Degraded, st.Mode, st.StaleMs)
		}
	}
	stop()
	if got := len(received(quietFrom)); got != 0 {
		t.Fatalf("the callee received %d calls while the pairs were OPEN across the coordinators' loss", got)
	}
	var ok, failed, rejected int64
	for _, m := range callers {
		ok, failed, rejected = ok+m.ok.Load(), failed+m.failed.Load(), rejected+m.rejected.Load()
	}
	t.Logf("calls: %d ok, %d failed at the callee or network, %d rejected by the breaker", ok, failed, rejected)
}
