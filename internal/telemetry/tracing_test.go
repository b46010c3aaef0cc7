package telemetry_test

import (
	"context"
	"testing"

	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/tests/support/telemetrytest"
)

// TestForServiceExportsAsItsOwnService: a provider for another role in the
// process (colony dev's sidecars beside its coordinator) exports through
// the same OTLP exporter with its own service.name and instance, and
// Shutdown flushes its spans as well as the process's own.
func TestForServiceExportsAsItsOwnService(t *testing.T) {
	recv := telemetrytest.StartReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.Endpoint())
	ctx := context.Background()
	tr, err := telemetry.TracingFromEnv(ctx, telemetry.ServiceCoordinator, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Exporting {
		t.Fatal("OTEL_EXPORTER_OTLP_ENDPOINT set, and not exporting")
	}
	sidecar, err := tr.ForService(ctx, telemetry.ServiceSidecar, "checkout/checkout-1")
	if err != nil {
		t.Fatal(err)
	}
	_, s := telemetry.Tracer(tr.Provider).Start(ctx, "coordinator span")
	s.End()
	_, s = telemetry.Tracer(sidecar).Start(ctx, "sidecar span")
	s.End()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string][2]string{}
	for _, sp := range recv.Spans() {
		got[sp.GetName()] = [2]string{sp.Resource["service.name"], sp.Resource["service.instance.id"]}
	}
	want := map[string][2]string{
		"coordinator span": {telemetry.ServiceCoordinator, "dev"},
		"sidecar span":     {telemetry.ServiceSidecar, "checkout/checkout-1"},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: exported with service %q, instance %q; want %q, %q", name, got[name][0], got[name][1], w[0], w[1])
		}
	}
}

// TestForServiceWithoutExportIsNoop: with nothing exported, the other
// roles' providers record nothing either.
func TestForServiceWithoutExportIsNoop(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	tr, err := telemetry.TracingFromEnv(context.Background(), telemetry.ServiceCoordinator, "dev")
	if err != nil {
		t.Fatal(err)
	}
	tp, err := tr.ForService(context.Background(), telemetry.ServiceSidecar, "checkout/checkout-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, s := telemetry.Tracer(tp).Start(context.Background(), "x"); s.IsRecording() {
		t.Error("a sidecar span records while nothing is exported")
	}
}
