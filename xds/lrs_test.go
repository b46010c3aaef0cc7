package xds

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/internal/xdsdial"
)

// loads sums the Loads a server hands to OnLoad, by node and cluster.
type loads struct {
	mu  sync.Mutex
	sum map[[2]string]Load
	ch  chan struct{}
}

func newLoads() *loads { return &loads{sum: map[[2]string]Load{}, ch: make(chan struct{}, 1)} }

func (l *loads) add(ld Load) {
	l.mu.Lock()
	k := [2]string{ld.NodeID, ld.Cluster}
	s := l.sum[k]
	s.NodeID, s.Cluster, s.Guard, s.Envoy, s.UserAgent = ld.NodeID, ld.Cluster, ld.Guard, ld.Envoy, ld.UserAgent
	s.Succeeded += ld.Succeeded
	s.Errored += ld.Errored
	s.Issued += ld.Issued
	s.Dropped += ld.Dropped
	l.sum[k] = s
	l.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	default:
	}
}

func (l *loads) get(node, cluster string) Load {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sum[[2]string{node, cluster}]
}

// waitFor waits until cond holds of node's load on cluster, up to 10 s.
func (l *loads) waitFor(t testing.TB, node, cluster, what string, cond func(Load) bool) Load {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if ld := l.get(node, cluster); cond(ld) {
			return ld
		}
		select {
		case <-l.ch:
		case <-deadline:
			t.Fatalf("%s: not within 10 s; load of %s on %s: %+v", what, node, cluster, l.get(node, cluster))
		}
	}
}

// TestLoadReportsFromStockClient has a real gRPC-Go xDS client, with no
// Colony code in its calls, report its load on the callee's cluster to the
// server: successes and errors arrive as they happened, the breaker's own
// aborts do not count, and a guard-marked node's reports are flagged.
func TestLoadReportsFromStockClient(t *testing.T) {
	backends := []*backend{startBackend(t)}
	l := newLoads()
	s, addr := startServer(t, Config{OnLoad: l.add, LoadReportInterval: 100 * time.Millisecond})
	if err := s.Update(grpcState(backends, nil)); err != nil {
		t.Fatal(err)
	}
	cc := dialXDS(t, addr, "checkout-1", "payments")
	waitCall(t, cc, 500, "first call", func(err error) bool { return err == nil })
	for i := range 29 {
		if err := callOnce(cc); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	backends[0].fail.Store(true)
	for i := range 10 {
		if err := callOnce(cc); status.Code(err) != codes.Internal {
			t.Fatalf("failing call %d: %v, want INTERNAL", i, err)
		}
	}
	backends[0].fail.Store(false)
	ld := l.waitFor(t, "checkout-1", "payments", "30 successes and 10 errors reported", func(ld Load) bool {
		return ld.Succeeded >= 30 && ld.Errored >= 10
	})
	if ld.Succeeded != 30 || ld.Errored != 10 || ld.Issued != 40 || ld.Guard || ld.Envoy {
		t.Errorf("load %+v, want 30 succeeded, 10 errored, 40 issued, not guard, not Envoy", ld)
	}

	// OPEN: the route aborts every call; none of them is in the load.
	if err := s.Update(grpcState(backends, liveRecord(breaker.Open, 2, nil))); err != nil {
		t.Fatal(err)
	}
	waitCall(t, cc, 500, "OPEN enforced", isUnavailable)
	for range 50 {
		if err := callOnce(cc); !isUnavailable(err) {
			t.Fatalf("OPEN call: %v", err)
		}
	}
	if err := s.Update(grpcState(backends, liveRecord(breaker.Closed, 3, nil))); err != nil {
		t.Fatal(err)
	}
	waitCall(t, cc, 500, "CLOSED enforced", func(err error) bool { return err == nil })
	// Reports on a stream arrive in order: once the success after the
	// aborts is in, so would be the aborts.
	ld = l.waitFor(t, "checkout-1", "payments", "the success after OPEN reported", func(ld Load) bool { return ld.Succeeded >= 31 })
	if ld.Errored != 10 || ld.Issued != ld.Succeeded+ld.Errored {
		t.Errorf("load after OPEN %+v: the breaker's aborts were counted", ld)
	}

	// A guard-marked node reports too, flagged.
	gcc, err := xdsdial.DialWith(addr, "checkout-2", "checkout", "payments", []xdsdial.Option{xdsdial.AsGuard()})
	if err != nil {
		t.Fatal(err)
	}
	defer gcc.Close()
	waitCall(t, gcc, 500, "guard client's first call", func(err error) bool { return err == nil })
	if ld := l.waitFor(t, "checkout-2", "payments", "guard client's load", func(ld Load) bool { return ld.Succeeded >= 1 }); !ld.Guard {
		t.Errorf("guard-marked node's load %+v is not flagged Guard", ld)
	}
}
