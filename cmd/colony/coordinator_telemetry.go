package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/internal/trust"
)

// coordinatorTelemetry is what `colony coordinator` runs beside the node:
// tracing configured from the OTEL_* environment, and the /metrics listener.
type coordinatorTelemetry struct {
	tracing *telemetry.Tracing
	metrics *telemetry.MetricsServer // nil without --metrics-addr
	log     *slog.Logger
}

// startCoordinatorTelemetry sets cfg's tracer provider (when OTLP export is
// configured) and metrics registry (when metricsAddr is set, served there).
func startCoordinatorTelemetry(ctx context.Context, cfg *coordinator.Config, metricsAddr string, pprof bool, log *slog.Logger) (*coordinatorTelemetry, error) {
	if pprof && metricsAddr == "" {
		return nil, errors.New("--pprof is served on --metrics-addr: set both")
	}
	tr, err := telemetry.TracingFromEnv(ctx, telemetry.ServiceCoordinator, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	t := &coordinatorTelemetry{tracing: tr, log: log}
	if tr.Exporting {
		cfg.TracerProvider = tr.Provider
		log.Info("exporting traces over OTLP (OTEL_EXPORTER_OTLP_*)")
	}
	if metricsAddr != "" {
		reg := telemetry.NewRegistry()
		cfg.Metrics = reg
		ms, err := telemetry.ListenMetricsTLS(metricsAddr, telemetry.Handler(reg, telemetry.HandlerOptions{Pprof: pprof}), metricsTLS(cfg.TLS))
		if err != nil {
			tr.Shutdown(ctx)
			return nil, err
		}
		t.metrics = ms
		log.Info("serving metrics", "url", metricsURL(cfg.TLS, ms.Addr()), "pprof", pprof)
	}
	return t, nil
}

// sidecarTracing gives the demo mesh's sidecars, which colony dev runs in
// this process, tracer providers of their own: their spans carry the
// sidecar's service name and instance, as a colony sidecar process's do,
// and leave through the coordinator's exporter. Nil when nothing is
// exported.
func (t *coordinatorTelemetry) sidecarTracing(ctx context.Context) func(service, instance string) trace.TracerProvider {
	if !t.tracing.Exporting {
		return nil
	}
	return func(service, instance string) trace.TracerProvider {
		tp, err := t.tracing.ForService(ctx, telemetry.ServiceSidecar, service+"/"+instance)
		if err != nil {
			t.log.Warn("no traces from a demo sidecar", "service", service, "instance", instance, "err", err)
			return nil
		}
		return tp
	}
}

// close stops the metrics listener and exports the spans still buffered,
// giving both at most 5s. Call it after the node has stopped.
func (t *coordinatorTelemetry) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if t.metrics != nil {
		t.metrics.Close(ctx)
	}
	if err := t.tracing.Shutdown(ctx); err != nil {
		t.log.Warn("exporting the last spans failed", "err", err)
	}
}

// metricsTLS is the /metrics listener's TLS: with the process's
// certificate, a scraper must present any certificate of the cluster's CA
// (`colony cert client --name prometheus`), since the metrics name every
// service pair and node. Nil material: plain HTTP.
func metricsTLS(m *trust.Material) *tls.Config {
	if m == nil {
		return nil
	}
	return m.ServerConfig(tls.RequireAndVerifyClientCert, "http/1.1")
}

func metricsURL(m *trust.Material, addr string) string {
	if m == nil {
		return "http://" + addr + "/metrics"
	}
	return "https://" + addr + "/metrics"
}
