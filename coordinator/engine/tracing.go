package engine

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/internal/telemetry"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// The engine's part of a breaker transition's trace (the whole chain is
// in internal/telemetry's package doc):
//
//	SpanReport   the node that received Breakers.Report (the coordinator's)
//	SpanIngest   the leader's engine takes the reports in: a child of
//	             SpanReport, across the forwarding hop (peer.v1.ReportBatch
//	             carries the report's traceparent; the batch's own RPC is
//	             linked)
//	SpanDecide   the evaluation that changed the pair's record. Decided on
//	             reports: a child of the pair's newest SpanIngest, linked to
//	             the earlier ones since the last decision (at most
//	             maxReportLinks in all; AttrReports counts them all and
//	             AttrUnlinked those left out) and to the previous record's
//	             trace. Decided on a timer (the open duration elapsed, the
//	             half-open wait ran out, probes reassigned, an override
//	             expired): a root linked to the previous record's trace. An
//	             override is a child of the RPC that set it.
//	SpanApply    the record's write through the log until the leader applied
//	             it: a child of the newest SpanDecide it carries. The record
//	             stores its context (PairRecord.Traceparent) for the
//	             sidecars' spans.

// maxTraceRefs bounds the decisions a pair keeps between writes.
const maxTraceRefs = 8

// maxReportLinks bounds the ingested reports a decision refers to: its
// parent and up to 31 links, the newest. A window of a busy pair holds far
// more (three instances reporting every 250 ms put 120 in a 10 s window);
// the decision counts the others (AttrUnlinked) rather than linking them.
const maxReportLinks = 32

// reportRefs are the ingested reports of a pair since its last decision:
// the newest maxReportLinks span contexts and how many there were in all.
type reportRefs struct {
	spans []trace.SpanContext
	n     int
}

// add records one report ingested in the span sc.
func (r *reportRefs) add(sc trace.SpanContext) {
	if !sc.IsValid() {
		return
	}
	r.n++
	if k := len(r.spans); k > 0 && r.spans[k-1].Equal(sc) {
		return // another report of the same batch: one link says it
	}
	r.spans = append(r.spans, sc)
	if len(r.spans) > maxReportLinks {
		r.spans = append(r.spans[:0], r.spans[len(r.spans)-maxReportLinks:]...)
	}
}

// newest is the newest report's span context, invalid when there is none.
func (r *reportRefs) newest() trace.SpanContext {
	if len(r.spans) == 0 {
		return trace.SpanContext{}
	}
	return r.spans[len(r.spans)-1]
}

func (r *reportRefs) reset() {
	r.spans, r.n = r.spans[:0], 0
}

// timerCause reports whether a decision with this cause was made on the
// leader's clock rather than on reports.
func timerCause(cause string) bool {
	switch cause {
	case string(breaker.ConditionOpenElapsed), string(breaker.ConditionHalfOpenTimeout),
		string(breaker.HistoryProbes), string(breaker.HistoryExpired):
		return true
	}
	return false
}

// viaKey holds, in an ingest context, the span of the RPC that carried a
// forwarded report batch.
type viaKey struct{}

func appendRef(refs []trace.SpanContext, sc trace.SpanContext) []trace.SpanContext {
	if !sc.IsValid() {
		return refs
	}
	refs = append(refs, sc)
	if len(refs) > maxTraceRefs {
		refs = refs[len(refs)-maxTraceRefs:]
	}
	return refs
}

func pairAttrs(k pairKey) []attribute.KeyValue {
	return []attribute.KeyValue{telemetry.AttrCaller.String(k.caller), telemetry.AttrCallee.String(k.callee)}
}

// IngestContext is the context in which the leader takes in a forwarded
// batch: the batch's report span (traceparent) as the parent, the RPC that
// carried it remembered for a link.
func IngestContext(ctx context.Context, traceparent string) context.Context {
	sc := telemetry.SpanContextFromTraceparent(traceparent)
	if !sc.IsValid() {
		return ctx
	}
	if via := trace.SpanContextFromContext(ctx); via.IsValid() {
		ctx = context.WithValue(ctx, viaKey{}, via)
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// traceIngest starts the SpanIngest span of reports reaching the engine.
func (e *Engine) traceIngest(ctx context.Context, reports []*colonyv1.OutcomeReport) trace.Span {
	opts := []trace.SpanStartOption{trace.WithAttributes(telemetry.AttrReports.Int(len(reports)))}
	if via, ok := ctx.Value(viaKey{}).(trace.SpanContext); ok {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: via}))
	}
	_, span := e.tracer.Start(ctx, telemetry.SpanIngest, opts...)
	return span
}

// traceDecision records a decision that just changed p's record (under
// mu): it counts a state change and emits SpanDecide, whose parent is ctx's
// span or else the pair's newest ingested report. The decision is written
// with the pair's next flush (SpanApply).
func (e *Engine) traceDecision(ctx context.Context, p *pair, from, to breaker.State, cause string, shadow bool, ev *breaker.Evidence) {
	e.metrics.countTransition(p.key, from, to, cause, shadow)
	var links []trace.Link
	var attrs []attribute.KeyValue
	opts := []trace.SpanStartOption{}
	switch {
	case trace.SpanContextFromContext(ctx).IsValid():
		// An override: the RPC that set it is the parent.
	case timerCause(cause):
		// No report caused it: reports that arrived since the last
		// decision (while OPEN, say) are no evidence for this one.
		opts = append(opts, trace.WithNewRoot())
	case p.reports.n > 0:
		refs := p.reports.spans
		ctx = trace.ContextWithSpanContext(ctx, refs[len(refs)-1])
		for _, sc := range refs[:len(refs)-1] {
			links = append(links, trace.Link{SpanContext: sc})
		}
		attrs = append(attrs, telemetry.AttrReports.Int(p.reports.n),
			telemetry.AttrUnlinked.Int(p.reports.n-len(refs)))
	}
	if l, ok := telemetry.LinkTraceparent(p.rec.Traceparent); ok {
		links = append(links, l) // the decision before this one
	}
	gen := p.rec.Generation
	if shadow && p.rec.Shadow != nil {
		gen = p.rec.Shadow.Generation
	}
	attrs = append(append(attrs, pairAttrs(p.key)...),
		telemetry.AttrFrom.String(from.String()), telemetry.AttrTo.String(to.String()),
		telemetry.AttrCause.String(cause), telemetry.AttrGeneration.Int64(int64(gen)), telemetry.AttrShadow.Bool(shadow),
	)
	if o := p.rec.Override; o != nil {
		attrs = append(attrs, telemetry.AttrOverride.String(string(o.Mode)))
	}
	if ev != nil {
		attrs = append(attrs, telemetry.AttrCalls.Int64(ev.Calls), telemetry.AttrFailures.Int64(ev.Failures),
			telemetry.AttrFailing.Int(ev.FailingInstances))
	}
	opts = append(opts, trace.WithLinks(links...), trace.WithAttributes(attrs...))
	_, span := e.tracer.Start(ctx, telemetry.SpanDecide, opts...)
	span.End()
	p.reports.reset()
	p.decisions = appendRef(p.decisions, span.SpanContext())
}

// traceApply starts the SpanApply span of a record write carrying
// decisions, and puts its context in the record.
func (e *Engine) traceApply(ctx context.Context, k pairKey, rec *breaker.PairRecord, decisions []trace.SpanContext) (context.Context, trace.Span) {
	var links []trace.Link
	if n := len(decisions); n > 0 {
		ctx = trace.ContextWithSpanContext(ctx, decisions[n-1])
		for _, sc := range decisions[:n-1] {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	attrs := append(pairAttrs(k), telemetry.AttrTo.String(rec.State.String()), telemetry.AttrGeneration.Int64(int64(rec.Generation)))
	ctx, span := e.tracer.Start(ctx, telemetry.SpanApply, trace.WithLinks(links...), trace.WithAttributes(attrs...))
	rec.Traceparent = telemetry.Traceparent(span.SpanContext())
	return ctx, span
}

// endApply ends a write's SpanApply span with its log index or its error.
func endApply(span trace.Span, index int64, err error) {
	if err == nil {
		span.SetAttributes(telemetry.AttrRaftIndex.Int64(index))
	}
	endSpan(span, err, "writing breaker record failed")
}

// endSpan ends span, marking it failed with err.
func endSpan(span trace.Span, err error, what string) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, what)
	}
	span.End()
}
