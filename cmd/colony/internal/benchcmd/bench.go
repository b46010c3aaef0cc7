package benchcmd

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
)

// NewBenchCmd returns the bench command group on the shared client flags.
func NewBenchCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure what a cluster can carry",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newFleetCmd(f))
	return cmd
}

func newFleetCmd(f *cli.Flags) *cobra.Command {
	var (
		cfg     FleetConfig
		pids    []int
		urls    []string
		goal    time.Duration
		noCheck bool
	)
	cmd := &cobra.Command{
		Use:   "fleet [--sidecars N] [--pid PID ... | --metrics-url URL ...]",
		Short: "Simulate a fleet of sidecars against the cluster and measure what it costs",
		Long: `Simulate N sidecars against the cluster, each doing what a real sidecar does:
its own client and connection (the endpoints rotated per sidecar, so the fleet
spreads over the members), a session with keep-alives, its instance's
registration under it, persistent watches on its service's breakers, on the
policies and on the registrations of the services it calls (read node by node
as the sidecar's mirror does), and an outcome report every --report-interval
for each callee.

Once every sidecar is up (or --ready-timeout has passed: a fleet that does
not all come up is measured all the same), it measures it for --measure, then
trips a breaker in every service at once: every sidecar reports failures to
one shared callee, and it times each pair from the first failure report to the
leader's decision, and from the decision to each sidecar's watch delivering
OPEN. The shared callee gets a policy (the default one) for the run, as a
callee outside the mesh needs one to get breakers. Then it stops the fleet
(closing every session) and deletes the breaker pairs, service directories
and policy it created (--keep leaves them).

Coordinator CPU and memory come from /proc for members on this machine (--pid,
once per member) or from their Prometheus endpoints (--metrics-url, the
coordinator's --metrics-addr with /metrics); the per-sidecar figures divide
the steady CPU and the memory added by the sidecars, and project to 50,000.

The certificate must let one identity register and report for every
simulated service: an admin certificate (a sidecar certificate speaks for
its own service only). Each simulated sidecar holds an open file; the
command raises its soft limit as far as the hard one (ulimit -Hn) allows.

It exits non-zero when a sidecar did not come up or see the trip, the
decision-to-watch p99 is above --goal, or any call failed.`,
		Example: `  colony bench fleet --sidecars 500 --pid 4101 --pid 4102 --pid 4103
  colony bench fleet --sidecars 2000 --metrics-url https://10.0.0.5:7402/metrics -o json`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		eps, err := cli.EndpointsOf(cmd)
		if err != nil {
			return err
		}
		if goal <= 0 {
			return fmt.Errorf("--goal: must be positive, got %v", goal)
		}
		check := cfg
		check.Endpoints = eps
		check.withDefaults()
		if err := check.Validate(); err != nil {
			return fmt.Errorf("--%w", err)
		}
		return f.Run(true, func(ctx context.Context, s *cli.Env, _ []string) error {
			cfg.Endpoints, cfg.TLS = eps, s.TLS
			cfg.Resources = nil
			for _, pid := range pids {
				cfg.Resources = append(cfg.Resources, PIDSampler(pid))
			}
			for _, u := range urls {
				cfg.Resources = append(cfg.Resources, MetricsSampler(u, s.TLS))
			}
			line := cli.NewStatusLine(s.ErrOut, false)
			cfg.Progress = func(msg string) { line.Show(msg, true) }
			if !noCheck {
				sctx, cancel := context.WithTimeout(ctx, s.Flags.Timeout)
				_, err := s.Client.Status(sctx)
				cancel()
				if err != nil {
					return fmt.Errorf("the cluster does not answer: %w", err)
				}
			}
			res, runErr := RunFleet(ctx, cfg)
			line.Clear()
			if res == nil {
				return runErr
			}
			if s.JSON {
				if err := cli.WriteIndentedJSON(s.Out, res); err != nil {
					return err
				}
			} else if err := res.WriteTable(s.Out, goal); err != nil {
				return err
			}
			if runErr != nil {
				return runErr
			}
			if fails := res.Failures(goal); len(fails) > 0 {
				return &cli.ExitStatus{Code: 1}
			}
			return nil
		})(cmd, args)
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Sidecars, "sidecars", 100, "simulated sidecars, each with its own connection")
	fl.IntVar(&cfg.PerService, "per-service", 20, "instances (sidecars) per simulated service")
	fl.IntVar(&cfg.Callees, "callees", 3, "other simulated services each sidecar calls, reports on and mirrors")
	fl.DurationVar(&cfg.ReportInterval, "report-interval", 250*time.Millisecond, "how often each sidecar reports outcomes")
	fl.DurationVar(&cfg.SessionTTL, "session-ttl", 6*time.Second, "each sidecar's session TTL")
	fl.IntVar(&cfg.StartRate, "start-rate", 200, "sidecars started per second")
	fl.DurationVar(&cfg.ReadyTimeout, "ready-timeout", time.Minute, "how long the fleet may take to come up after the last sidecar started")
	fl.DurationVar(&cfg.Measure, "measure", 10*time.Second, "how long the steady fleet is measured before the trip")
	fl.DurationVar(&cfg.TripTimeout, "trip-timeout", 30*time.Second, "how long every sidecar has to see the trip")
	fl.StringVar(&cfg.Prefix, "prefix", "fleetsim", "name prefix of the simulated services")
	fl.IntSliceVar(&pids, "pid", nil, "a coordinator process on this machine to measure (repeat per member)")
	fl.StringSliceVar(&urls, "metrics-url", nil, "a coordinator's Prometheus endpoint to measure, e.g. https://127.0.0.1:7402/metrics (repeat per member)")
	fl.DurationVar(&goal, "goal", time.Second, "the decision-to-watch p99 the fleet must meet")
	fl.BoolVar(&cfg.Keep, "keep", false, "leave the breaker pairs, service directories and policy the run created in the cluster")
	fl.BoolVar(&noCheck, "no-check", false, "skip the check that the cluster answers before starting")
	return cmd
}
