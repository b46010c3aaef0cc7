package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/colonymesh/colony/cmd/colony/internal/demo"
)

// startDevDemo starts `colony dev`'s demo mesh and says what to try.
// With dev's certificates (nil when dev runs --insecure or on given
// certificates) its sidecars and client present them.
func startDevDemo(addr string, certs *devCerts, log *slog.Logger) (*demo.Mesh, error) {
	cfg := demo.Config{Coordinator: addr, Logger: log}
	if certs != nil {
		cfg.Certs = certs
	}
	m, err := demo.Start(cfg)
	if err != nil {
		return nil, fmt.Errorf("demo mesh: %w", err)
	}
	var callers []string
	for _, c := range m.Callers {
		callers = append(callers, c.Service)
	}
	fmt.Fprintf(os.Stderr, `Demo mesh: callee "payments" (3 instances) called by %v, each instance with
its own sidecar and each caller with a proxyless gRPC client on xds:///payments.
Try, in another terminal:
  go run ./cmd/colony breaker watch            # every breaker change, as it is committed
  go run ./cmd/colony demo fail payments       # payments fails: its breakers trip, callers reject locally
  go run ./cmd/colony breaker ls
  go run ./cmd/colony breaker get checkout payments
  go run ./cmd/colony demo heal payments       # after the open duration, probes close the breakers
(--demo=false runs the coordinator alone.)

`, callers)
	return m, nil
}
