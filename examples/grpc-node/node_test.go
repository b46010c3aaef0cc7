package grpcnode

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
	"github.com/colonymesh/colony/xds"
)

// installHint is the one command that installs what client.js needs.
const installHint = "npm ci --prefix examples/grpc-node (from the repository root; make node-deps does the same)"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// requireNode fails the test, never skips it, when Node.js or the
// example's npm packages are missing: CI must run this test.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed (apt-get install -y --no-install-recommends nodejs npm), then %s", installHint)
	}
	for _, pkg := range []string{"@grpc/grpc-js", "@grpc/grpc-js-xds"} {
		if _, err := os.Stat(filepath.Join("node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("%s is not installed in examples/grpc-node/node_modules: %s", pkg, installHint)
		}
	}
	return node
}

// callee is payments: the standard health service, failing on demand, that
// records when each call arrived.
type callee struct {
	healthpb.UnimplementedHealthServer
	failing atomic.Bool

	mu    sync.Mutex
	calls []time.Time
}

func (c *callee) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	c.mu.Lock()
	c.calls = append(c.calls, time.Now())
	c.mu.Unlock()
	if c.failing.Load() {
		return nil, status.Error(codes.Unavailable, "payments is down (test)")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// received counts the calls that arrived in [from, to].
func (c *callee) received(from, to time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, at := range c.calls {
		if !at.Before(from) && !at.After(to) {
			n++
		}
	}
	return n
}

func startCallee(t *testing.T) (*callee, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &callee{}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, c)
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return c, lis.Addr().String()
}

// startSidecar starts a sidecar with its xDS server, as `colony sidecar`
// builds it, on a loopback port, closed at cleanup.
func startSidecar(t *testing.T, cfg sidecar.Config) *sidecar.Sidecar {
	t.Helper()
	cfg.APIAddr = "127.0.0.1:0"
	cfg.Logger = quiet()
	x, err := sidecar.NewXDS(xds.Config{EgressAddr: xds.DefaultEgressAddr, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sidecar.New(cfg, x)
	if err != nil {
		x.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		x.Close()
	})
	return s
}

// totals is what client.js prints: `totals ok=N failed=N rejected=N last="..."`.
type totals struct {
	OK, Failed, Rejected int
	Last                 string
}

// nodeClient is a running `node client.js`.
type nodeClient struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex
	totals  totals
	changed chan struct{} // closed and replaced at every totals line
	stderr  strings.Builder
}

// startClient runs client.js with the walkthrough's bootstrap.json, its
// server_uri set to the sidecar at xdsServer (GRPC_XDS_BOOTSTRAP_CONFIG).
func startClient(t *testing.T, node, xdsServer string, args ...string) *nodeClient {
	t.Helper()
	c := &nodeClient{done: make(chan struct{}), changed: make(chan struct{})}
	data, err := os.ReadFile("bootstrap.json")
	if err != nil {
		t.Fatal(err)
	}
	var bootstrap map[string]any
	if err := json.Unmarshal(data, &bootstrap); err != nil {
		t.Fatalf("bootstrap.json: %v", err)
	}
	servers, _ := bootstrap["xds_servers"].([]any)
	if len(servers) != 1 {
		t.Fatalf("bootstrap.json: want one xDS server, the sidecar; got %v", bootstrap["xds_servers"])
	}
	servers[0].(map[string]any)["server_uri"] = xdsServer
	if data, err = json.Marshal(bootstrap); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(node, append([]string{"client.js"}, args...)...)
	c.cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP_CONFIG="+string(data))
	c.cmd.Stderr = &lockedWriter{mu: &c.mu, b: &c.stderr}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var tot totals
			if n, err := fmt.Sscanf(sc.Text(), "totals ok=%d failed=%d rejected=%d last=%q", &tot.OK, &tot.Failed, &tot.Rejected, &tot.Last); err == nil && n == 4 {
				c.mu.Lock()
				c.totals = tot
				close(c.changed)
				c.changed = make(chan struct{})
				c.mu.Unlock()
			}
		}
		io.Copy(io.Discard, out)
		c.cmd.Wait()
	}()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			c.mu.Lock()
			t.Logf("client.js stderr:\n%s", c.stderr.String())
			c.mu.Unlock()
		}
	})
	return c
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b.Len() < 64<<10 {
		w.b.Write(p)
	}
	return len(p), nil
}

// wait waits until the client's totals satisfy ok.
func (c *nodeClient) wait(t *testing.T, ctx context.Context, what string, ok func(totals) bool) totals {
	t.Helper()
	for {
		c.mu.Lock()
		tot, changed := c.totals, c.changed
		c.mu.Unlock()
		if ok(tot) {
			return tot
		}
		select {
		case <-changed:
		case <-c.done:
			t.Fatalf("%s: client.js exited; its last totals: %+v", what, tot)
		case <-ctx.Done():
			t.Fatalf("%s: not within the deadline; client.js's last totals: %+v", what, tot)
		}
	}
}

func (c *nodeClient) current() totals {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.totals
}

// waitBreaker polls the pair until cond holds, for at most within.
func waitBreaker(t *testing.T, ctx context.Context, admin *client.Client, what string, within time.Duration, cond func(*client.BreakerInfo) bool) *client.BreakerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		info, err := admin.GetBreaker(ctx, "checkout", "payments", 50)
		if err == nil && cond(info) {
			return info
		}
		if ctx.Err() != nil {
			if info != nil {
				for _, h := range info.History {
					t.Logf("  %s %s %v->%v gen %d %s probes=%v", h.At.Format("15:04:05.000"), h.Kind, h.From, h.To, h.Generation, h.Cause, h.Probes)
				}
			}
			t.Fatalf("checkout->payments: %s: not within %v (last answer: %v)", what, within, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestNodeClientTripsProbesAndRecovers runs the README's walkthrough: a
// coordinator, the callee payments and its sidecar, and a caller instance
// checkout/n1 whose only client is client.js on Node.js, with its own xDS
// bootstrap naming its sidecar. The callee fails: the pair trips on the
// Node client's load reports alone and the client's calls fail fast; in
// HALF_OPEN its calls go through the sidecar's probe gate and no more than
// the probe budget reach the callee; healed, the pair closes and calls
// flow again.
func TestNodeClientTripsProbesAndRecovers(t *testing.T) {
	node := requireNode(t)
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	data, err := os.ReadFile("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := client.ParsePolicyFile(data)
	if err != nil {
		t.Fatalf("policy.yaml: %v", err)
	}
	if _, err := admin.ApplyPolicies(ctx, specs, "grpc-node test", false); err != nil {
		t.Fatalf("policy.yaml: %v", err)
	}

	payments, addr := startCallee(t)
	startSidecar(t, sidecar.Config{Service: "payments", Instance: "p1", Address: addr, Coordinators: []string{srv.Addr()}})
	sc := startSidecar(t, sidecar.Config{Service: "checkout", Instance: "n1", Address: "127.0.0.1:1", Coordinators: []string{srv.Addr()},
		ReportInterval: 100 * time.Millisecond})
	nc := startClient(t, node, sc.Addr(), "--target", "xds:///payments", "--tag", "checkout/n1", "--max-duration-ms", "200000")

	// Generous: on a loaded machine Node takes many seconds to load
	// @grpc/grpc-js-xds and resolve its first xds:/// name.
	flowCtx, cancelFlow := context.WithTimeout(ctx, 90*time.Second)
	nc.wait(t, flowCtx, "calls flow", func(tot totals) bool { return tot.OK >= 10 })
	cancelFlow()

	// The callee fails: the pair trips on the Node client's reports, and
	// the client's calls fail fast (the fault filter, no call to payments).
	tripStart := time.Now()
	payments.failing.Store(true)
	opened := waitBreaker(t, ctx, admin, "OPEN on the Node client's reports", 30*time.Second, func(info *client.BreakerInfo) bool { return info.Record.State == breaker.Open })
	tripTook := time.Since(tripStart)
	before := nc.current().Rejected
	nc.wait(t, ctx, "OPEN enforced", func(tot totals) bool { return tot.Rejected > before })
	t.Logf("Node client only: callee failing -> OPEN %v, -> the client rejecting %v",
		tripTook.Round(time.Millisecond), time.Since(tripStart).Round(time.Millisecond))

	// Healed: HALF_OPEN lets at most the budget through and the probes'
	// outcomes, reported over LRS, close the pair.
	payments.failing.Store(false)
	closed := waitBreaker(t, ctx, admin, "CLOSED after the callee healed", 60*time.Second, func(info *client.BreakerInfo) bool {
		// The history is written beside the record: wait for both.
		return info.Record.State == breaker.Closed && info.Record.Generation > opened.Record.Generation &&
			slices.ContainsFunc(info.History, func(h breaker.HistoryEntry) bool { return h.Generation == info.Record.Generation })
	})
	var half *breaker.HistoryEntry
	var closedAt time.Time
	for i, h := range closed.History {
		if h.Kind != breaker.HistoryTransition || h.Generation <= opened.Record.Generation {
			continue
		}
		if h.To == breaker.HalfOpen {
			half = &closed.History[i]
		}
		if h.To == breaker.Closed {
			closedAt = h.At
		}
	}
	if half == nil || closedAt.IsZero() {
		t.Fatalf("history %+v: want HALF_OPEN then CLOSED after generation %d", closed.History, opened.Record.Generation)
	}
	budget := 0
	for _, n := range half.Probes {
		budget += n
	}
	reached := payments.received(half.At, closedAt)
	t.Logf("HALF_OPEN gen %d (%v): %d calls reached the callee against a budget of %d", half.Generation, closedAt.Sub(half.At).Round(time.Millisecond), reached, budget)
	if budget != closed.Policy.ProbeBudget {
		t.Errorf("HALF_OPEN permits %v: want the policy's probe budget %d", half.Probes, closed.Policy.ProbeBudget)
	}
	// The sidecar's probe gate admits at most its instance's permits.
	if reached > budget {
		t.Errorf("%d calls from the Node client reached the callee in HALF_OPEN, more than the probe budget %d", reached, budget)
	}
	okBefore := nc.current().OK
	tot := nc.wait(t, ctx, "calls flow again", func(tot totals) bool { return tot.OK >= okBefore+10 })
	t.Logf("client.js: %d ok, %d failed, %d rejected by the breaker", tot.OK, tot.Failed, tot.Rejected)
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}
