package xds

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
)

func TestResolveName(t *testing.T) {
	served := []string{"Ledger", "billing", "payments", "pay", "PAY"}
	for name, want := range map[string]string{
		"payments":       "payments",
		"payments:50051": "payments",
		"Payments":       "payments",
		"PAYMENTS:443":   "payments",
		"ledger":         "Ledger",
		"pay":            "pay",
		"PAY:1":          "PAY",
		"Pay":            "", // two callees differ only in case: only exact names
		"payments:0":     "",
		"payments:65536": "",
		"payments:+80":   "",
		"payments:":      "",
		"payments:http":  "",
		"orders":         "",
		"":               "",
	} {
		got, ok := resolveName(name, sortedCopy(served))
		if got != want || ok != (want != "") {
			t.Errorf("resolveName(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestNamesUsersWrite dials real gRPC-Go xDS clients with the targets
// people write: with the callee's port and in another case they reach the
// callee and enforce its breaker; an unknown name fails at once (not after
// gRPC's 15 s does-not-exist timer) with an error naming what is served,
// and works once a callee of that name appears.
func TestNamesUsersWrite(t *testing.T) {
	backends := []*backend{startBackend(t)}
	var nacks atomic.Int64
	s, addr := startServer(t, Config{OnNACK: func(NACK) { nacks.Add(1) }})
	if err := s.Update(grpcState(backends, nil)); err != nil {
		t.Fatal(err)
	}
	withPort := dialXDS(t, addr, "checkout-1", "payments:50051")
	upper := dialXDS(t, addr, "checkout-2", "Payments")
	for _, cc := range []*struct {
		name string
		err  func() error
	}{{"payments:50051", func() error { return callOnce(withPort) }}, {"Payments", func() error { return callOnce(upper) }}} {
		var err error
		for range 500 {
			if err = cc.err(); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("xds:///%s: %v", cc.name, err)
		}
	}
	if err := s.Update(grpcState(backends, liveRecord(breaker.Open, 2, nil))); err != nil {
		t.Fatal(err)
	}
	waitCall(t, withPort, 500, "OPEN enforced on xds:///payments:50051", isUnavailable)
	waitCall(t, upper, 500, "OPEN enforced on xds:///Payments", isUnavailable)
	if err := s.Update(grpcState(backends, nil)); err != nil {
		t.Fatal(err)
	}

	// An unknown name: the first call fails, UNAVAILABLE rather than
	// DEADLINE_EXCEEDED (it had 5 s), and the calls say what is served. The
	// first call can meet gRPC's own "produced zero addresses" instead: its
	// xDS client may take an LDS answer that does not hold the name yet for
	// does-not-exist before the listener made for the name arrives; the
	// next calls carry the listener's message.
	unknown := dialXDS(t, addr, "checkout-3", "orders:8080")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := healthpb.NewHealthClient(unknown).Check(ctx, &healthpb.HealthCheckRequest{})
	cancel()
	t.Logf("first call to an unknown name: %v", err)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("first call to xds:///orders:8080: %v; want UNAVAILABLE at once", err)
	}
	waitCall(t, unknown, 500, "calls to xds:///orders:8080 naming the name and the served callees", func(err error) bool {
		return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "xds:///orders:8080;") &&
			strings.Contains(err.Error(), "ledger, payments")
	})
	// The callee appears: the same channel reaches it.
	st := grpcState(backends, nil)
	st.Callees = append(st.Callees, Callee{Name: "orders", Protocol: GRPC, Endpoints: st.Callees[0].Endpoints})
	if err := s.Update(st); err != nil {
		t.Fatal(err)
	}
	waitCall(t, unknown, 500, "xds:///orders:8080 once orders is served", func(err error) bool { return err == nil })
	if n := nacks.Load(); n != 0 {
		t.Errorf("%d NACKs reported; an unknown name's rejected listener is expected, not a NACK", n)
	}
}

// TestAliasesAreBounded: a client asking for many names gets at most
// MaxAliases listeners made for it.
func TestAliasesAreBounded(t *testing.T) {
	s, err := NewServer(Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(grpcState(nil, nil)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range MaxAliases + 50 {
		names = append(names, "payments:"+strconv.Itoa(1000+i))
	}
	s.requestNames(append(names, "payments", strings.Repeat("x", maxNameLen+1)))
	if got := len(s.aliases); got != MaxAliases {
		t.Errorf("%d names materialised, want the limit %d", got, MaxAliases)
	}
	if got, want := len(s.published[cacheProxylessListeners]), MaxAliases+2; got != want {
		t.Errorf("%d proxyless listeners, want %d (2 callees and %d aliases)", got, want, MaxAliases)
	}
}
