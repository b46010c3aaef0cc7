package sidecar

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/internal/telemetry"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// A breaker transition's trace starts in the sidecar that saw the failures:
// SpanSidecarReport is one batch of its outcome counts, sent with the
// Breakers.Report call (traced by the coordinator client, which carries the
// span's context to the coordinator). The sidecar's other spans, the watch
// delivery, the xDS push and the client's ACK, are in telemetry.go.

// traceReport starts the SpanSidecarReport span of one batch of reports.
// Without a tracer provider it returns ctx and a span that records nothing.
func (s *Sidecar) traceReport(ctx context.Context, reports []*colonyv1.OutcomeReport) (context.Context, trace.Span) {
	if s.cfg.TracerProvider == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	var failures, calls int64
	for _, r := range reports {
		c := r.GetCounts()
		failures += c.GetFailures()
		calls += c.GetFailures() + c.GetSuccesses()
	}
	attrs := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		telemetry.AttrCaller.String(s.cfg.Service), telemetry.AttrInstance.String(s.cfg.Instance),
		telemetry.AttrReports.Int(len(reports)),
		telemetry.AttrCalls.Int64(calls), telemetry.AttrFailures.Int64(failures),
	)}
	if len(reports) == 1 {
		attrs = append(attrs, trace.WithAttributes(telemetry.AttrCallee.String(reports[0].GetCallee())))
	}
	return telemetry.Tracer(s.cfg.TracerProvider).Start(ctx, telemetry.SpanSidecarReport, attrs...)
}

// endReportSpan ends a SpanSidecarReport span, marking it failed with err.
func endReportSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "report not accepted")
	}
	span.End()
}
