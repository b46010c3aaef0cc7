// Package coordinatortest starts real coordinator nodes for other packages'
// tests: a single node bootstrapped alone on loopback ports, stopped at
// cleanup.
package coordinatortest

import (
	"context"
	"testing"
	"time"

	"github.com/colonymesh/colony/coordinator"
)

// StartNode starts a single-node coordinator on 127.0.0.1 with its data in a
// temp dir, waits until it leads and its engine has created the well-known
// directories (coordinator.Server.WaitReady), and closes it at cleanup. opts
// adjust the config before start. Under -short the test is skipped.
func StartNode(tb testing.TB, opts ...func(*coordinator.Config)) *coordinator.Server {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts a coordinator node")
	}
	cfg := coordinator.DefaultConfig()
	cfg.NodeID = "n1"
	cfg.DataDir = tb.TempDir()
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.Bootstrap = true
	cfg.MinSessionTTL = 300 * time.Millisecond // short sessions keep expiry tests fast
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := coordinator.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitReady(ctx); err != nil {
		tb.Fatal(err)
	}
	return srv
}
