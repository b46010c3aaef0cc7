package main

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/sidecar/guard"
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

// applyPolicyFile does what `colony policy apply -f file` does.
func applyPolicyFile(t *testing.T, c *client.Client, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := client.ParsePolicyFile(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.ApplyPolicies(ctx, specs, "http-envoy test", false); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// startCallee runs the example's callee on loopback ports, as `http-envoy
// callee` does, until cleanup; it returns the service and admin addresses.
func startCallee(t *testing.T) (c *callee, svcAddr, adminAddr string) {
	t.Helper()
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		svc.Close()
		t.Fatal(err)
	}
	c = &callee{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runCallee(ctx, c, svc, adm, time.Hour, log.New(io.Discard, "", 0)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("callee: %v", err)
		}
	})
	return c, svc.Addr().String(), adm.Addr().String()
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

func breakerRecord(t *testing.T, c *client.Client, caller, callee string) breaker.PairRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.GetBreaker(ctx, caller, callee, 0)
	if err != nil {
		t.Fatal(err)
	}
	return info.Record
}

// TestCallerTripsAndRecovers runs the walkthrough's in-process path for
// real: a coordinator, the callee and its sidecar, a caller instance with its
// sidecar, and the caller's calls through guard.RoundTripper. When the
// callee fails, the caller's calls start failing fast with the breaker's
// error and, while the breaker is OPEN, no request reaches the callee; once
// healed, after the open duration, probes close the breaker and calls get
// through again.
func TestCallerTripsAndRecovers(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin := newClient(t, srv.Addr())
	applyPolicyFile(t, admin, "policy.yaml")

	cal, svcAddr, adminAddr := startCallee(t)
	startSidecar(t, sidecar.Config{Service: "catalog", Instance: "k1", Protocol: "http", Address: svcAddr, Coordinators: []string{srv.Addr()}})
	sc := startSidecar(t, sidecar.Config{Service: "storefront", Instance: "s1", Address: "127.0.0.1:9301",
		Callees: []string{"catalog"}, Coordinators: []string{srv.Addr()}})
	c, err := newCaller(callerConfig{Target: "catalog", Addr: svcAddr, Sidecar: sc.Addr(), Instance: "s1", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	select {
	case <-c.Ready():
	case <-ctx.Done():
		t.Fatal("the guard never got the sidecar's breakers")
	}
	pause := func() {
		select {
		case <-ctx.Done():
			t.Fatalf("not within the test's deadline")
		case <-time.After(20 * time.Millisecond):
		}
	}

	// Healthy: calls get through.
	for i := range 20 {
		if o, err := c.call(ctx); o != ok {
			t.Fatalf("healthy callee, call %d: %v %v", i, o, err)
		}
	}

	// The callee fails: calls fail until the breaker trips, then the guard
	// rejects them in the process, with the breaker's error.
	switchCallee(t, adminAddr, "fail")
	var failures int
	for {
		o, err := c.call(ctx)
		if o == rejected {
			var re *guard.RejectedError
			if !errors.As(err, &re) || re.Caller != "storefront" || re.Callee != "catalog" || re.State != breaker.Open {
				t.Fatalf("rejection %v: want the guard's error for storefront->catalog, OPEN", err)
			}
			t.Logf("first rejection: %v", err)
			break
		}
		if o != failed {
			t.Fatalf("failing callee: %v %v", o, err)
		}
		failures++
		pause()
	}
	rec := breakerRecord(t, admin, "storefront", "catalog")
	t.Logf("tripped after %d failed calls: %s generation %d, cause %s", failures, rec.State, rec.Generation, rec.Cause)
	if rec.State != breaker.Open {
		t.Fatalf("coordinator's record %s, want OPEN", rec.State)
	}

	// Heal the callee at once: the breaker stays OPEN for its open
	// duration, and no call reaches the callee until it ends.
	switchCallee(t, adminAddr, "heal")
	reached := cal.requests.Load()
	var whileOpen, probesOrLater int
	for consecutiveOK := 0; consecutiveOK < 10; {
		o, err := c.call(ctx)
		var re *guard.RejectedError
		switch {
		case o == rejected && errors.As(err, &re) && re.State == breaker.Open:
			if probesOrLater > 0 {
				t.Fatalf("rejected as OPEN after calls got through again: %v", err)
			}
			whileOpen++
			if n := cal.requests.Load(); n != reached {
				t.Fatalf("%d requests reached the callee while the breaker was OPEN", n-reached)
			}
		case o == rejected: // HALF_OPEN, beyond this instance's probe permits
			probesOrLater++
			consecutiveOK = 0
		case o == ok:
			probesOrLater++
			consecutiveOK++
		default:
			t.Fatalf("healed callee: %v %v", o, err)
		}
		pause()
	}
	if whileOpen == 0 {
		t.Fatal("no call was made while the breaker was OPEN")
	}
	rec = breakerRecord(t, admin, "storefront", "catalog")
	if rec.State != breaker.Closed {
		t.Fatalf("after recovery the coordinator's record is %s, want CLOSED", rec.State)
	}
	t.Logf("%d calls rejected while OPEN, none reached the callee; then %s generation %d, cause %s",
		whileOpen, rec.State, rec.Generation, rec.Cause)
}

// TestClassify: how the caller sorts results, the guard's rejections and
// Envoy's apart.
func TestClassify(t *testing.T) {
	resp := func(code int, header string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}}
		if header != "" {
			r.Header.Set(guard.BreakerHeader, header)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		resp *http.Response
		err  error
		want outcome
	}{
		{"200", resp(200, ""), nil, ok},
		{"404 is the caller's mistake", resp(404, ""), nil, ok},
		{"503 from the callee", resp(503, ""), nil, failed},
		{"503 from Envoy's breaker route", resp(503, "storefront->catalog; state=OPEN; generation=3"), nil, rejected},
		{"the guard's rejection", nil, &guard.RejectedError{Caller: "storefront", Callee: "catalog", State: breaker.Open}, rejected},
		{"connection refused", nil, errors.New("dial tcp 127.0.0.1:9201: connect: connection refused"), failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.resp, tc.err); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
