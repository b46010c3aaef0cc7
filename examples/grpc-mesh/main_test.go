package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
	"github.com/colonymesh/colony/xds"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newClient is a coordinator client, closed at cleanup.
func newClient(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// applyWalkthroughPolicies does the walkthrough's `colony policy apply -f
// examples/policies.yaml`, with the open duration of payments cut from 15s
// to open, so that the test does not wait 15 s for the probes.
func applyWalkthroughPolicies(t *testing.T, c *client.Client, open time.Duration) {
	t.Helper()
	const file = "../policies.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := client.ParsePolicyFile(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	found := false
	for _, s := range specs {
		if s.Callee != "payments" {
			continue
		}
		var p map[string]any
		if err := json.Unmarshal(s.Policy, &p); err != nil {
			t.Fatalf("%s: payments: %v", file, err)
		}
		p["openDuration"] = open.String()
		if s.Policy, err = json.Marshal(p); err != nil {
			t.Fatal(err)
		}
		found = true
	}
	if !found {
		t.Fatalf("%s has no policy for payments", file)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.ApplyPolicies(ctx, specs, "grpc-mesh test", false); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// startCallee runs the example's callee on loopback ports, as `grpc-mesh
// callee` does, until cleanup; it returns the gRPC and admin addresses.
func startCallee(t *testing.T) (h *health, svcAddr, adminAddr string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		lis.Close()
		t.Fatal(err)
	}
	h = &health{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runCallee(ctx, h, lis, adm, time.Hour, log.New(io.Discard, "", 0)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("callee: %v", err)
		}
	})
	return h, lis.Addr().String(), adm.Addr().String()
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

// startCaller builds the example's caller, as `grpc-mesh caller` does,
// closed at cleanup.
func startCaller(t *testing.T, cfg callerConfig) *caller {
	t.Helper()
	c, err := newCaller(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// switchCallee is `curl -X POST <admin>/fail` (or /heal).
func switchCallee(t *testing.T, adminAddr, what string) {
	t.Helper()
	resp, err := http.Post("http://"+adminAddr+"/"+what, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /%s: %s", what, resp.Status)
	}
}

func getBreaker(t *testing.T, c *client.Client, caller, callee string) *client.BreakerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.GetBreaker(ctx, caller, callee, 20)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestAllCallersTripTogether runs the README's "Watch all callers trip
// together" for real: a coordinator, the callee "payments" and its sidecar,
// two instances of "checkout", each with its sidecar and the example's
// caller (proxyless gRPC on xds:///payments, the sidecar as its xDS server,
// guard's interceptor), and the walkthrough's policies. When the callee
// fails, both callers' calls become fast rejections by the shared breaker;
// while it is OPEN no call reaches the callee; once healed, after the open
// duration, probes close the breaker and calls get through again.
func TestAllCallersTripTogether(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin := newClient(t, srv.Addr())
	applyWalkthroughPolicies(t, admin, 3*time.Second)

	callee, svcAddr, adminAddr := startCallee(t)
	startSidecar(t, sidecar.Config{Service: "payments", Instance: "p1", Address: svcAddr, Coordinators: []string{srv.Addr()}})
	var callers []*caller
	for i := 1; i <= 2; i++ {
		sc := startSidecar(t, sidecar.Config{Service: "checkout", Instance: fmt.Sprintf("c%d", i), Address: fmt.Sprintf("127.0.0.1:910%d", i),
			Callees: []string{"payments"}, Coordinators: []string{srv.Addr()}})
		callers = append(callers, startCaller(t, callerConfig{Sidecar: sc.Addr(), Service: "checkout", Instance: fmt.Sprintf("c%d", i),
			Target: "payments", Logger: quiet()}))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// phase says what the test waits for, should the deadline pass.
	phase := "the first calls to get through"
	pause := func() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within the test's deadline", phase)
		case <-time.After(20 * time.Millisecond):
		}
	}

	// Healthy: once its channel has payments' routes and endpoints from the
	// sidecar, every caller's calls get through.
	for _, c := range callers {
		select {
		case <-c.Ready():
		case <-ctx.Done():
			t.Fatalf("%s: the guard never got the sidecar's breakers", c.cfg.Instance)
		}
		for {
			o, err := c.call(ctx)
			if o == ok {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: no call got through to the healthy callee: %v %v", c.cfg.Instance, o, err)
			}
			pause()
		}
	}
	for i := range 10 {
		for _, c := range callers {
			if o, err := c.call(ctx); o != ok {
				t.Fatalf("healthy callee, %s call %d: %v %v", c.cfg.Instance, i, o, err)
			}
		}
	}

	// The callee fails: calls fail until the breaker trips (both instances
	// see the failures, as the quorum wants), then every caller rejects
	// them, without a round trip.
	switchCallee(t, adminAddr, "fail")
	phase = "the failing callee: every caller rejecting its calls"
	var failures int
	for {
		all := true
		for _, c := range callers {
			switch o, err := c.call(ctx); o {
			case rejected:
			case failed:
				failures++
				all = false
			default:
				t.Fatalf("failing callee, %s: %v %v", c.cfg.Instance, o, err)
			}
		}
		if all {
			break
		}
		pause()
	}
	opened := getBreaker(t, admin, "checkout", "payments").Record
	t.Logf("tripped after %d failed calls: %s generation %d, cause %s", failures, opened.State, opened.Generation, opened.Cause)
	if opened.State != breaker.Open {
		t.Fatalf("coordinator's record %s, want OPEN", opened.State)
	}

	// Heal the callee at once: the breaker stays OPEN for its open
	// duration, and every call is rejected without reaching the callee;
	// then HALF_OPEN lets the probes through, they succeed and close it.
	// Throughout, the callee gets exactly the calls the breaker let through.
	switchCallee(t, adminAddr, "heal")
	phase = "the healed callee: 10 calls in a row through on every caller"
	reached := callee.calls.Load()
	var admitted int64
	whileOpen := map[*caller]int{}
	consecutiveOK := map[*caller]int{}
	for done := false; !done; {
		done = true
		for _, c := range callers {
			o, err := c.call(ctx)
			switch {
			case o == rejected && strings.Contains(status.Convert(err).Message(), "colony: breaker checkout->payments is OPEN"):
				if consecutiveOK[c] > 0 {
					t.Fatalf("%s: rejected as OPEN after calls got through again: %v", c.cfg.Instance, err)
				}
				whileOpen[c]++
			case o == rejected: // the route's fault abort, or HALF_OPEN beyond this instance's probe permits
				consecutiveOK[c] = 0
			case o == ok:
				admitted++
				consecutiveOK[c]++
			default:
				t.Fatalf("healed callee, %s: %v %v", c.cfg.Instance, o, err)
			}
			if got := callee.calls.Load() - reached; got != admitted {
				t.Fatalf("the callee got %d calls since it healed; the breaker let %d through", got, admitted)
			}
			done = done && consecutiveOK[c] >= 10
		}
		pause()
	}
	for _, c := range callers {
		if whileOpen[c] == 0 {
			t.Fatalf("%s: no call was rejected as OPEN", c.cfg.Instance)
		}
	}

	// The coordinator's history: OPEN, HALF_OPEN when the open duration
	// ended, with probe permits for the instances, CLOSED by the probes.
	info := getBreaker(t, admin, "checkout", "payments")
	if info.Record.State != breaker.Closed {
		t.Fatalf("after recovery the coordinator's record is %s, want CLOSED", info.Record.State)
	}
	var path []string
	for _, h := range info.History {
		if h.Kind != breaker.HistoryTransition || h.Generation <= opened.Generation {
			continue
		}
		path = append(path, fmt.Sprintf("%s(%s)", h.To, h.Cause))
		if h.To == breaker.HalfOpen && len(h.Probes) == 0 {
			t.Errorf("HALF_OPEN generation %d gave no probe permits", h.Generation)
		}
	}
	want := []string{"HALF_OPEN(" + string(breaker.ConditionOpenElapsed) + ")", "CLOSED(" + string(breaker.ConditionProbesSucceeded) + ")"}
	if strings.Join(path, " ") != strings.Join(want, " ") {
		t.Fatalf("transitions after OPEN: %v, want %v", path, want)
	}
	t.Logf("rejected while OPEN: c1 %d, c2 %d calls, none reached the callee; then %v; %d calls got through since the heal",
		whileOpen[callers[0]], whileOpen[callers[1]], path, admitted)
}

// TestClassify: how the caller sorts results, the breaker's rejections (the
// guard's and the route's fault abort) apart from the callee's failures.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want outcome
	}{
		{"ok", nil, ok},
		{"the callee failing", status.Error(codes.Unavailable, "the callee is failing (demo)"), failed},
		{"the guard's rejection", status.Error(codes.Unavailable, "colony: breaker checkout->payments is OPEN (generation 1): call rejected"), rejected},
		{"the route's fault abort", status.Error(codes.Unavailable, "RPC terminated due to fault injection"), rejected},
		{"a timeout", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), failed},
		{"not a status", errors.New("connection refused"), failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
