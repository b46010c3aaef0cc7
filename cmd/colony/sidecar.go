package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/certcmd"
	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/xds"
)

// newSidecarCmd runs a sidecar beside one service instance.
func newSidecarCmd() *cobra.Command {
	var (
		cfg          sidecar.Config
		coordinators string
		mode         string
		modesFor     []string
		egress       string
		logLevel     string
		metricsAddr  string
		tlsFlags     certcmd.ServerFlags
	)
	cmd := &cobra.Command{
		Use:   "sidecar --service NAME --instance ID --address HOST:PORT",
		Short: "Run the sidecar beside one service instance",
		Long: `Run the sidecar beside one service instance until SIGINT or SIGTERM.

It registers the instance (an ephemeral node under /colony/services/<service>,
gone when the sidecar stops or dies), follows its service's shared breakers and
the registry, and serves on --listen:
  - xDS (ADS) for the local Envoy and for proxyless gRPC clients (target
    xds:///<callee>, bootstrap server_uri = --listen);
  - Envoy's access log service: outcomes of the calls Envoy proxies;
  - the sidecar API (colony.v1.Sidecar, Locks, Elections) for apps and Colony's
    client library (package sidecar/guard).
It sums outcomes per callee and reports them to the coordinator every
--report-interval. When the coordinator is unreachable for --degraded-after it
applies --degraded-mode (last-known keeps enforcing the last state).

It presents its service's sidecar certificate to the coordinators (--certs-dir
DIR with ca.crt and sidecar-<service>.crt/.key, made by ` + "`colony cert sidecar`" + `,
or --cacert, --cert and --key); --insecure talks plaintext to an insecure
cluster. With neither it refuses to start.`,
		Example: `  colony sidecar --service checkout --instance checkout-1 --address 10.0.0.5:8080 \
      --coordinators 10.0.0.1:7400,10.0.0.2:7400,10.0.0.3:7400 --certs-dir /etc/colony/certs`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			list := coordinators
			if !cmd.Flags().Changed("coordinators") {
				if env := os.Getenv(cli.EndpointsEnv); env != "" {
					list = env
				}
			}
			for _, ep := range strings.Split(list, ",") {
				if ep = strings.TrimSpace(ep); ep != "" {
					cfg.Coordinators = append(cfg.Coordinators, ep)
				}
			}
			if cfg.Instance == "" {
				host, err := os.Hostname()
				if err != nil {
					return fmt.Errorf("--instance: not given and no hostname: %w", err)
				}
				cfg.Instance = host
			}
			m, err := sidecar.ParseMode(mode)
			if err != nil {
				return fmt.Errorf("--degraded-mode: %w", err)
			}
			cfg.DegradedMode = m
			for _, kv := range modesFor {
				callee, name, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--degraded-mode-for: want CALLEE=MODE, got %q", kv)
				}
				m, err := sidecar.ParseMode(name)
				if err != nil {
					return fmt.Errorf("--degraded-mode-for %s: %w", callee, err)
				}
				if cfg.DegradedModes == nil {
					cfg.DegradedModes = map[string]sidecar.Mode{}
				}
				cfg.DegradedModes[callee] = m
			}
			cfg.Logger = log
			if cfg.TLS, err = tlsFlags.Material(trust.RoleSidecar, cfg.Service, "sidecar", log); err != nil {
				return err
			}
			if cfg.TLS == nil {
				fmt.Fprint(os.Stderr, insecureBanner)
			}
			// --insecure is also what lets the sidecar serve plaintext on
			// a non-loopback --listen (sidecar.Config.Validate).
			cfg.Insecure = tlsFlags.Insecure
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Tracing from OTEL_EXPORTER_OTLP_* (nothing is exported without
			// it), metrics on --metrics-addr: the same as the coordinator's.
			tr, err := telemetry.TracingFromEnv(ctx, telemetry.ServiceSidecar, cfg.Service+"/"+cfg.Instance)
			if err != nil {
				return err
			}
			defer func() {
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				tr.Shutdown(sctx)
			}()
			if tr.Exporting {
				cfg.TracerProvider = tr.Provider
			}
			if metricsAddr != "" {
				reg := telemetry.NewRegistry()
				cfg.Metrics = reg
				ms, err := telemetry.ListenMetricsTLS(metricsAddr, telemetry.Handler(reg, telemetry.HandlerOptions{}), metricsTLS(cfg.TLS))
				if err != nil {
					return err
				}
				defer ms.Close(context.Background())
				log.Info("serving metrics", "url", metricsURL(cfg.TLS, ms.Addr()))
			}
			x, err := sidecar.NewXDS(xds.Config{EgressAddr: egress, Logger: log})
			if err != nil {
				return err
			}
			defer x.Close()
			s, err := sidecar.New(cfg, x)
			if err != nil {
				return err
			}
			log.Info("sidecar serving", "service", cfg.Service, "instance", cfg.Instance, "listen", s.Addr(), "probe_gate", s.View().ProbeGate,
				"coordinators", strings.Join(cfg.Coordinators, ","), "degraded_mode", cfg.DegradedMode)
			<-ctx.Done()
			log.Info("sidecar stopping: deregistering")
			return s.Close()
		},
	}
	def := sidecar.DefaultConfig() // the flags' defaults are the library's
	fl := cmd.Flags()
	fl.StringVar(&cfg.Service, "service", "", "the service this instance belongs to (required)")
	fl.StringVar(&cfg.Instance, "instance", "", "this instance's id, unique in the service (default: the hostname)")
	fl.StringVar(&cfg.Address, "address", "", "host:port where this instance serves its callers (required; an IP for Envoy's EDS)")
	fl.StringVar(&cfg.Zone, "zone", "", "the instance's zone (locality for callers' load balancing)")
	fl.StringVar(&cfg.Protocol, "protocol", def.Protocol, "what callers speak to this instance: grpc or http")
	fl.StringVar(&coordinators, "coordinators", client.DefaultEndpoint, "coordinator gRPC addresses, comma-separated; $"+cli.EndpointsEnv+" replaces the default")
	fl.StringVar(&cfg.APIAddr, "listen", def.APIAddr, "address of the sidecar's gRPC server: xDS, Envoy access logs, the sidecar API (plaintext only on loopback, unless --listen-tls or --insecure)")
	fl.BoolVar(&cfg.ListenTLS, "listen-tls", false, "serve --listen over TLS with this sidecar's certificate, requiring clients (Envoy, apps, proxyless gRPC) to present a certificate of the same CA")
	fl.StringVar(&egress, "egress-addr", xds.DefaultEgressAddr, "address Envoy's egress listener binds (apps send outbound calls there)")
	fl.StringVar(&cfg.ProbeGateAddr, "probe-gate", def.ProbeGateAddr, "IP:port of the probe gate, which admits exactly this instance's HALF_OPEN probe permits for clients without Colony's library (plaintext: loopback unless --insecure; port 0 picks one)")
	fl.IntVar(&cfg.ProbeGateMaxCalls, "probe-gate-max-calls", def.ProbeGateMaxCalls, "calls the probe gate holds at once; more are rejected")
	fl.DurationVar(&cfg.ReportInterval, "report-interval", def.ReportInterval, "how often summed outcomes go to the coordinator")
	fl.DurationVar(&cfg.SessionTTL, "session-ttl", def.SessionTTL, "coordinator session TTL: the registration outlives a dead sidecar this long")
	fl.DurationVar(&cfg.DegradedAfter, "degraded-after", def.DegradedAfter, "how long the coordinator may be unreachable before the degraded mode applies")
	fl.StringVar(&mode, "degraded-mode", string(def.DegradedMode), "last-known, local (gobreaker on this instance's outcomes), fail-open or fail-closed")
	fl.StringArrayVar(&modesFor, "degraded-mode-for", nil, "CALLEE=MODE: a degraded mode for one callee (repeatable)")
	fl.StringSliceVar(&cfg.Callees, "callees", nil, "the services this instance calls (comma-separated); default: every registered service")
	fl.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (default: off)")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	tlsFlags.Register(fl, "sidecar-<service>")
	_ = cmd.MarkFlagRequired("service")
	_ = cmd.MarkFlagRequired("address")
	return cmd
}
