package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
		// gRPC-Go 1.85's "tls" xDS channel credentials (xdsdial.WithTLS)
		// start a PEM file watcher that outlives the closed channel once it
		// has connected (TestProxylessClientOverTLS): gRPC's, not ours.
		goleak.IgnoreTopFunction("google.golang.org/grpc/credentials/tls/certprovider/pemfile.(*watcher).run"),
	)
}

// recorder is an Enforcer that keeps every View it gets.
type recorder struct{ views chan sidecar.View }

func (r *recorder) Update(v sidecar.View) error {
	select {
	case r.views <- v:
	default: // tests read the latest through Sidecar.View
	}
	return nil
}

func startSidecar(t *testing.T, coord string, service, instance string, port int, opts ...func(*sidecar.Config)) *sidecar.Sidecar {
	t.Helper()
	cfg := sidecar.Config{
		Service: service, Instance: instance, Coordinators: []string{coord},
		Address: fmt.Sprintf("127.0.0.1:%d", port), APIAddr: "127.0.0.1:0",
		ReportInterval: 50 * time.Millisecond, SessionTTL: time.Second, DegradedAfter: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := sidecar.New(cfg, &recorder{views: make(chan sidecar.View, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func waitCallee(t *testing.T, s *sidecar.Sidecar, within time.Duration, what string, cond func(c sidecar.Callee, v sidecar.View) bool) sidecar.Callee {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := s.View()
		for _, c := range v.Callees {
			if c.Name == "payments" && cond(c, v) {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; view %+v", what, within, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func state(c sidecar.Callee) breaker.State {
	if c.Record == nil {
		return breaker.Closed
	}
	return c.Record.State
}

func apply(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(
		`{"window":"2s","buckets":4,"minimumCalls":10,"failureRateThreshold":0.5,"openDuration":"30s","minFailingInstances":2,"probeBudget":2,"successesToClose":2}`)}}, "test", false)
	if err != nil {
		t.Fatal(err)
	}
}

// TestSidecarsTripTogether: three caller sidecars register, their apps
// report outcomes through the sidecar API, and when two of them see
// failures every sidecar enforces OPEN; the registry gives each the callee's
// endpoints.
func TestSidecarsTripTogether(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	apply(t, admin)

	callee := startSidecar(t, srv.Addr(), "payments", "p1", 9001)
	_ = callee
	var callers []*sidecar.Sidecar
	for i := range 3 {
		callers = append(callers, startSidecar(t, srv.Addr(), "checkout", fmt.Sprintf("c%d", i), 9100+i))
	}
	for _, s := range callers {
		c := waitCallee(t, s, 10*time.Second, "callee endpoints", func(c sidecar.Callee, _ sidecar.View) bool { return len(c.Endpoints) == 1 })
		if ep := c.Endpoints[0]; ep.Address != "127.0.0.1" || ep.Port != 9001 || ep.Protocol != "grpc" {
			t.Fatalf("endpoint %+v", ep)
		}
	}

	// Apps report through their sidecar's local API.
	report := func(s *sidecar.Sidecar, ok, failed int64) {
		conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = colonyv1.NewSidecarClient(conn).Report(context.Background(), &colonyv1.SidecarReportRequest{Outcomes: []*colonyv1.CalleeOutcome{{
			Callee: "payments", Counts: &colonyv1.OutcomeCounts{Successes: ok, Failures: failed, TrailingFailures: failed},
		}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	report(callers[0], 0, 30)
	report(callers[2], 5, 0)
	time.Sleep(500 * time.Millisecond)
	for _, s := range callers {
		if c := waitCallee(t, s, time.Second, "record", func(sidecar.Callee, sidecar.View) bool { return true }); state(c) != breaker.Closed {
			t.Fatalf("one failing caller tripped the pair: %+v", c.Record)
		}
	}
	report(callers[1], 0, 30)
	for _, s := range callers {
		c := waitCallee(t, s, 10*time.Second, "OPEN everywhere", func(c sidecar.Callee, _ sidecar.View) bool { return state(c) == breaker.Open })
		if c.Source != sidecar.ModeCoordinator {
			t.Fatalf("source %q", c.Source)
		}
	}

	// WatchBreakers gives an app the same record, then the snapshot marker.
	conn, err := grpc.NewClient(callers[0].Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := colonyv1.NewSidecarClient(conn).WatchBreakers(ctx, &colonyv1.WatchBreakersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sawOpen := false
	for {
		u, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if u.SnapshotDone {
			break
		}
		sawOpen = sawOpen || (len(u.Record) > 0 && contains(string(u.Record), `"state":"OPEN"`))
	}
	if !sawOpen {
		t.Fatal("WatchBreakers snapshot without the OPEN record")
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestSidecarDegradedModes: with the coordinator gone, a last-known sidecar
// keeps enforcing OPEN and says it is stale; a fail-open one lets calls
// through; a fail-closed one rejects them.
func TestSidecarDegradedModes(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	apply(t, admin)
	startSidecar(t, srv.Addr(), "payments", "p1", 9001)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.SetOverride(ctx, "checkout", "payments", breaker.ForceOpen, "drill", "test", 0); err != nil {
		t.Fatal(err)
	}
	modes := map[sidecar.Mode]*sidecar.Sidecar{}
	for i, m := range []sidecar.Mode{sidecar.LastKnown, sidecar.FailOpen, sidecar.FailClosed, sidecar.Local} {
		modes[m] = startSidecar(t, srv.Addr(), "checkout", fmt.Sprintf("c%d", i), 9100+i, func(c *sidecar.Config) { c.DegradedMode = m })
		waitCallee(t, modes[m], 10*time.Second, "OPEN", func(c sidecar.Callee, _ sidecar.View) bool { return state(c) == breaker.Open })
	}

	srv.Close() // every coordinator gone
	// Local starts a fresh gobreaker on this instance's own outcomes.
	want := map[sidecar.Mode]breaker.State{sidecar.LastKnown: breaker.Open, sidecar.FailOpen: breaker.Closed, sidecar.FailClosed: breaker.Open, sidecar.Local: breaker.Closed}
	for m, s := range modes {
		c := waitCallee(t, s, 10*time.Second, string(m), func(c sidecar.Callee, v sidecar.View) bool { return v.Mode == m })
		if state(c) != want[m] {
			t.Fatalf("%s: enforcing %v, want %v", m, state(c), want[m])
		}
		st := s.Status()
		if !st.Degraded || st.StaleMs < time.Second.Milliseconds() || st.Mode != string(m) {
			t.Fatalf("%s: status %+v: want degraded, stale > 1s", m, st)
		}
	}
	// In Local mode this instance's own failures trip its local breaker.
	if err := modes[sidecar.Local].Report("payments", breaker.Counts{Failures: 20, TrailingFailures: 20}); err != nil {
		t.Fatal(err)
	}
	c := waitCallee(t, modes[sidecar.Local], 10*time.Second, "local trip", func(c sidecar.Callee, _ sidecar.View) bool { return state(c) == breaker.Open })
	if c.Source != sidecar.Local {
		t.Fatalf("local trip from source %q", c.Source)
	}
}

// TestSidecarCalleesScope: a sidecar told which services it calls carries
// only those in its view (and its data plane), not every registered service.
func TestSidecarCalleesScope(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	p1 := startSidecar(t, srv.Addr(), "payments", "p1", 9001)
	startSidecar(t, srv.Addr(), "ledger", "l1", 9002)
	all := startSidecar(t, srv.Addr(), "checkout", "c1", 9100)
	scoped := startSidecar(t, srv.Addr(), "checkout", "c2", 9101, func(c *sidecar.Config) { c.Callees = []string{"payments"} })
	names := func(s *sidecar.Sidecar) []string {
		var out []string
		for _, c := range s.View().Callees {
			if len(c.Endpoints) > 0 {
				out = append(out, c.Name)
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for fmt.Sprint(names(all)) != "[ledger payments]" || fmt.Sprint(names(scoped)) != "[payments]" {
		if time.Now().After(deadline) {
			t.Fatalf("callees with endpoints: unscoped %v, scoped %v; want [ledger payments] and [payments]", names(all), names(scoped))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The scoped sidecar follows only its callees' registrations, and
	// follows them: an instance joining and one leaving.
	startSidecar(t, srv.Addr(), "payments", "p2", 9003)
	waitCallee(t, scoped, 10*time.Second, "p2 joining", func(c sidecar.Callee, _ sidecar.View) bool { return len(c.Endpoints) == 2 })
	p1.Close()
	c := waitCallee(t, scoped, 10*time.Second, "p1 leaving", func(c sidecar.Callee, _ sidecar.View) bool { return len(c.Endpoints) == 1 })
	if c.Endpoints[0].Port != 9003 {
		t.Fatalf("payments endpoints after p1 left: %+v, want p2's", c.Endpoints)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestSidecarDegradedModeFromPolicy: a pair's policy can choose its degraded
// mode; it overrides the sidecar's default (here last-known, which would keep
// the OPEN state).
func TestSidecarDegradedModeFromPolicy(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(`{"degradedMode":"fail-open"}`)}}, "test", false); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "ledger", Policy: []byte(`{"degradedMode":"fail-sideways"}`)}}, "test", false); err == nil {
		t.Fatal("an unknown degraded mode was accepted")
	}
	startSidecar(t, srv.Addr(), "payments", "p1", 9001)
	s := startSidecar(t, srv.Addr(), "checkout", "c1", 9100)
	if _, err := admin.SetOverride(ctx, "checkout", "payments", breaker.ForceOpen, "drill", "test", 0); err != nil {
		t.Fatal(err)
	}
	waitCallee(t, s, 10*time.Second, "OPEN", func(c sidecar.Callee, _ sidecar.View) bool { return state(c) == breaker.Open })
	srv.Close()
	c := waitCallee(t, s, 10*time.Second, "degraded", func(c sidecar.Callee, v sidecar.View) bool { return v.Mode != sidecar.ModeCoordinator })
	if state(c) != breaker.Closed || c.Source != sidecar.FailOpen {
		t.Fatalf("degraded: enforcing %v from %q, want CLOSED from the policy's fail-open", state(c), c.Source)
	}
}
