package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/cmd/colony/internal/demo"
	"github.com/colonymesh/colony/coordinator/client"
)

// startDevDemo starts `colony dev`'s demo mesh and says what to try.
func startDevDemo(addr string, log *slog.Logger) (*demo.Mesh, error) {
	m, err := demo.Start(demo.Config{Coordinator: addr, Logger: log})
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

// newDemoCmd drives `colony dev`'s demo mesh.
func newDemoCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Make the demo callee of `colony dev` fail or recover",
	}
	for _, c := range []struct{ use, value, short string }{
		{"fail", "fail", "Make the demo callee fail every call (UNAVAILABLE)"},
		{"heal", "ok", "Make the demo callee healthy again"},
	} {
		sub := &cobra.Command{
			Use:     c.use + " CALLEE",
			Short:   c.short,
			Example: "  colony demo " + c.use + " payments",
			Args:    cobra.ExactArgs(1),
		}
		sub.RunE = f.run(false, func(ctx context.Context, s *cli, args []string) error {
			if err := breaker.ValidateServiceName(args[0]); err != nil {
				return err
			}
			p := path.Join(demo.ControlRoot, args[0])
			if _, err := s.c.Set(ctx, p, []byte(c.value), client.AnyVersion); err != nil {
				if errors.Is(err, client.ErrNoNode) {
					return fmt.Errorf("%s: no demo callee %q (is `colony dev` running with its demo?)", p, args[0])
				}
				return err
			}
			state := map[string]string{"fail": "failing", "ok": "healthy"}[c.value]
			if s.json {
				return writeIndentedJSON(s.out, struct {
					Callee string `json:"callee"`
					State  string `json:"state"`
				}{args[0], state})
			}
			_, err := fmt.Fprintf(s.out, "demo callee %s: %s\n", args[0], state)
			return err
		})
		cmd.AddCommand(sub)
	}
	return cmd
}
