package api

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/internal/telemetry"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// A breaker transition's trace starts here: SpanReport is the Report call
// on the node that received it; the leader's engine continues it
// (coordinator/engine's tracing.go has the rest of the chain).

func pairAttrs(caller, callee string) []attribute.KeyValue {
	return []attribute.KeyValue{telemetry.AttrCaller.String(caller), telemetry.AttrCallee.String(callee)}
}

// traceReport starts the SpanReport span of one Report call, or of one
// ReportStream message: that one starts a trace of its own (a report
// period's, as a Report call without a trace context does), linked to the
// stream's span.
func (s *Service) traceReport(ctx context.Context, reports []*colonyv1.OutcomeReport, streamed bool) (context.Context, trace.Span) {
	type pairKey struct{ caller, callee string }
	pairs := map[pairKey]bool{}
	instances := map[string]bool{}
	for _, r := range reports {
		pairs[pairKey{r.GetCaller(), r.GetCallee()}] = true
		instances[r.GetInstance()] = true
	}
	attrs := []attribute.KeyValue{
		telemetry.AttrReports.Int(len(reports)), telemetry.AttrPairs.Int(len(pairs)), telemetry.AttrNode.String(s.cfg.NodeID),
	}
	if len(pairs) == 1 {
		for k := range pairs {
			attrs = append(attrs, pairAttrs(k.caller, k.callee)...)
		}
	}
	if len(instances) == 1 {
		for id := range instances {
			attrs = append(attrs, telemetry.AttrInstance.String(id))
		}
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(attrs...)}
	if streamed {
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.LinkFromContext(ctx)))
	}
	return s.cfg.Tracer.Start(ctx, telemetry.SpanReport, opts...)
}

// endReport counts a Report call's reports and ends its span.
func (s *Service) endReport(span trace.Span, n int, err error) {
	result := "accepted"
	if err != nil {
		result = "rejected"
	}
	if s.cfg.ReportsReceived != nil {
		s.cfg.ReportsReceived(result, n)
	}
	endSpan(span, err, "reports rejected")
}

// endSpan ends span, marking it failed with err.
func endSpan(span trace.Span, err error, what string) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, what)
	}
	span.End()
}
