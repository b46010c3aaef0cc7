package dashboard

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/colonymesh/colony/internal/xdsdial"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/xds"
)

// startEnforcingCaller starts what the pair's detail reports on: a payments
// instance's sidecar (so the callee has an endpoint), and checkout/c1's
// sidecar with its xDS server and a real proxyless gRPC client on
// xds:///payments, whose ACKs are the trip-to-enforce measurements.
func startEnforcingCaller(t *testing.T, coord string) *sidecar.Sidecar {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(service, instance, addr string, enforcers ...sidecar.Enforcer) *sidecar.Sidecar {
		sc, err := sidecar.New(sidecar.Config{Service: service, Instance: instance, Coordinators: []string{coord},
			Address: addr, APIAddr: "127.0.0.1:0", ReportInterval: 100 * time.Millisecond, Logger: quiet}, enforcers...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		return sc
	}
	start("payments", "p1", "127.0.0.1:9001")
	x, err := sidecar.NewXDS(xds.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	sc := start("checkout", "c1", "127.0.0.1:9100", x)
	cc, err := xdsdial.Dial(sc.Addr(), "checkout/c1", "checkout", "payments")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	cc.Connect()
	return sc
}

// waitEnforced waits until the sidecar's client has ACKed callee's
// generation gen.
func waitEnforced(t *testing.T, sc *sidecar.Sidecar, callee string, gen uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		for _, e := range sc.Status().GetEnforcements() {
			if e.GetCallee() == callee && e.GetGeneration() == gen {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no data-plane client enforced %s generation %d; status %v", callee, gen, sc.Status())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
