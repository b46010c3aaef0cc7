package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/internal/telemetry"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func spanAttr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func decisions(spans tracetest.SpanStubs) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == telemetry.SpanDecide {
			out = append(out, s)
		}
	}
	return out
}

// TestDecisionTraces: a trip decided on 40 reports is the child of the
// newest report's ingest and links the 31 before it, counting the 8 it
// leaves out; the OPEN -> HALF_OPEN decision, made on the leader's timer
// while reports keep arriving, starts a trace of its own linked to the
// OPEN record's write.
func TestDecisionTraces(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("test")
	e, h := startEngine(t, Config{Tracer: tracer})
	now := time.Now()

	report := func(i int, at time.Time) trace.SpanContext {
		ctx, span := tracer.Start(t.Context(), fmt.Sprintf("report %d", i))
		defer span.End()
		inst := fmt.Sprintf("c%d", 1+i%2)
		if err := e.Report(ctx, at, []*colonyv1.OutcomeReport{outcomes("checkout", "payments", inst, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		return span.SpanContext()
	}
	var last trace.SpanContext
	for i := range 40 {
		last = report(i, now)
	}
	e.step(t.Context(), now, false)
	rec := h.record(t, "checkout", "payments")
	if rec == nil || rec.State.String() != "OPEN" {
		t.Fatalf("record after 40 failing reports: %+v, want OPEN", rec)
	}
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans.GetSpans() {
		byID[s.SpanContext.SpanID()] = s
	}
	ds := decisions(spans.GetSpans())
	if len(ds) != 1 {
		t.Fatalf("%d decision spans after the trip, want 1", len(ds))
	}
	trip := ds[0]
	ingest := byID[trip.Parent.SpanID()]
	if ingest.Name != telemetry.SpanIngest || ingest.Parent.SpanID() != last.SpanID() {
		t.Fatalf("trip's parent %q (under %s), want %s of the newest report %s", ingest.Name, ingest.Parent.SpanID(), telemetry.SpanIngest, last.SpanID())
	}
	if len(trip.Links) != maxReportLinks-1 {
		t.Errorf("trip links %d spans, want %d (the bound, less its parent)", len(trip.Links), maxReportLinks-1)
	}
	for _, l := range trip.Links {
		if byID[l.SpanContext.SpanID()].Name != telemetry.SpanIngest {
			t.Errorf("trip links %q, want only %s spans", byID[l.SpanContext.SpanID()].Name, telemetry.SpanIngest)
		}
	}
	if r, u := spanAttr(trip, string(telemetry.AttrReports)), spanAttr(trip, string(telemetry.AttrUnlinked)); r != "40" || u != "8" {
		t.Errorf("trip's reports %q, unlinked %q; want 40 and 8", r, u)
	}

	// OPEN for a minute (no jitter); reports keep coming meanwhile.
	report(40, now.Add(30*time.Second))
	spans.Reset()
	e.step(t.Context(), now.Add(61*time.Second), false)
	ds = decisions(spans.GetSpans())
	if len(ds) != 1 || spanAttr(ds[0], string(telemetry.AttrTo)) != "HALF_OPEN" {
		t.Fatalf("decisions after the open duration: %v, want the one to HALF_OPEN", ds)
	}
	half := ds[0]
	if half.Parent.IsValid() {
		t.Errorf("timer decision has the parent %s, want a root", half.Parent.SpanID())
	}
	openWrite := telemetry.SpanContextFromTraceparent(rec.Traceparent)
	if len(half.Links) != 1 || half.Links[0].SpanContext.SpanID() != openWrite.SpanID() {
		t.Errorf("timer decision links %v, want only the OPEN record's write %s", half.Links, openWrite.SpanID())
	}
}
