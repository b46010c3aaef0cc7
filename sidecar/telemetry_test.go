package sidecar_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/internal/xdsdial"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
	"github.com/colonymesh/colony/xds"
)

// TestSidecarTelemetry: a transition committed by the coordinator reaches a
// sidecar and its proxyless gRPC client, and (1) the sidecar's spans for the
// watch delivery and the client's ACK are in the same trace as the
// coordinator's write of the record; (2) its metrics show the state it
// enforces and the trip-to-enforce latency.
func TestSidecarTelemetry(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	srv := coordinatortest.StartNode(t, func(c *coordinator.Config) { c.TracerProvider = tp })
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	apply(t, admin)
	startSidecar(t, srv.Addr(), "payments", "p1", 9001)

	reg := prometheus.NewRegistry()
	x, err := sidecar.NewXDS(xds.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	sc, err := sidecar.New(sidecar.Config{Service: "checkout", Instance: "c1", Coordinators: []string{srv.Addr()},
		Address: "127.0.0.1:9100", APIAddr: "127.0.0.1:0", ReportInterval: 50 * time.Millisecond,
		TracerProvider: tp, Metrics: reg, Logger: quietLog()}, x)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	cc, err := xdsdial.Dial(sc.Addr(), "checkout/c1", "checkout", "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The pair's first record is the client's initial state; flip it twice
	// so that the second flip is a transition the client enforces.
	if _, err := admin.SetOverride(ctx, "checkout", "payments", breaker.ForceClosed, "setup", "test", 0); err != nil {
		t.Fatal(err)
	}
	waitCallee(t, sc, 10*time.Second, "record", func(c sidecar.Callee, _ sidecar.View) bool { return c.Record != nil })
	time.Sleep(300 * time.Millisecond)
	rec, err := admin.SetOverride(ctx, "checkout", "payments", breaker.ForceOpen, "drill", "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Traceparent == "" {
		t.Fatal("the record has no traceparent with the coordinator tracing")
	}
	want := telemetry.SpanContextFromTraceparent(rec.Traceparent).TraceID()

	deadline := time.Now().Add(15 * time.Second)
	for {
		got := map[string]bool{}
		for _, s := range spans.GetSpans() {
			if s.SpanContext.TraceID() == want {
				got[s.Name] = true
			}
		}
		if got[telemetry.SpanApply] && got[telemetry.SpanWatchDeliver] && got[telemetry.SpanXDSAck] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans in the transition's trace: %v; want %s, %s and %s", got, telemetry.SpanApply, telemetry.SpanWatchDeliver, telemetry.SpanXDSAck)
		}
		time.Sleep(20 * time.Millisecond)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var state, enforced float64 = -1, 0
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "colony_sidecar_breaker_state":
				for _, l := range m.GetLabel() {
					if l.GetName() == "callee" && l.GetValue() == "payments" {
						state = m.GetGauge().GetValue()
					}
				}
			case "colony_sidecar_trip_to_enforce_seconds":
				enforced += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	if state != float64(breaker.Open) || enforced < 1 {
		t.Fatalf("metrics: breaker state %v (want %d, OPEN), trip-to-enforce samples %v (want >= 1)", state, breaker.Open, enforced)
	}

	// Status reports the same measurement per client, which is what the
	// dashboard shows for the pair.
	var found *colonyv1.Enforcement
	for _, e := range sc.Status().GetEnforcements() {
		if e.GetCallee() == "payments" && e.GetGeneration() == rec.Generation {
			found = e
		}
	}
	if found == nil || found.GetClient() != "checkout/c1" || found.GetState() != breaker.Open.String() ||
		found.GetInitial() || found.GetFromLeaderUs() <= 0 || found.GetFromSeenUs() < 0 {
		t.Fatalf("status enforcement of generation %d: %v; want checkout/c1 enforcing OPEN, measured from the leader's decision", rec.Generation, found)
	}
}
