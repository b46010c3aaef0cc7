package sidecar

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/xds"
)

// Tracing and metrics of the sidecar's part of a transition's path: the
// record arriving by watch (a child of the record's traceparent, the
// coordinator's write of it) and each xDS client ACKing the routes that carry
// it. Metrics are read from the sidecar's state at scrape time, except the
// trip-to-enforce histogram, which the xDS server's ACK hook feeds.

// traceRecord records the watch delivery of a changed record: a child of
// the coordinator's write of it (the record's traceparent). It returns the
// span's context, the parent of the xDS pushes that carry the record.
func (s *Sidecar) traceRecord(rec *breaker.PairRecord, seen time.Time) trace.SpanContext {
	if s.cfg.TracerProvider == nil {
		return trace.SpanContext{}
	}
	ctx := telemetry.ContextWithTraceparent(context.Background(), rec.Traceparent)
	_, span := telemetry.Tracer(s.cfg.TracerProvider).Start(ctx, telemetry.SpanWatchDeliver,
		trace.WithTimestamp(seen), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			telemetry.AttrCaller.String(rec.Caller), telemetry.AttrCallee.String(rec.Callee),
			telemetry.AttrTo.String(rec.State.String()), telemetry.AttrGeneration.Int64(int64(rec.Generation)),
			telemetry.AttrInstance.String(s.cfg.Instance), telemetry.AttrCause.String(rec.Cause),
		))
	span.End(trace.WithTimestamp(seen))
	return span.SpanContext()
}

// traceAck records one xDS client enforcing a transition: SpanXDSPush, from
// the response carrying it to the client's answer, under the record's watch
// delivery (or, for a record the sidecar read whole, under the record's
// traceparent), and SpanXDSAck under the push.
func (s *Sidecar) traceAck(e xds.Enforcement) {
	if s.cfg.TracerProvider == nil {
		return
	}
	s.mu.Lock()
	cr := s.records[e.Callee]
	ctx := context.Background()
	if cr != nil && cr.rec.Generation == e.Generation {
		if cr.watch.IsValid() {
			ctx = trace.ContextWithSpanContext(ctx, cr.watch)
		} else {
			ctx = telemetry.ContextWithTraceparent(ctx, cr.rec.Traceparent)
		}
	}
	s.mu.Unlock()
	sent := e.Sent
	if sent.IsZero() {
		sent = e.At.Add(-e.FromSeen)
	}
	attrs := []attribute.KeyValue{
		telemetry.AttrCaller.String(e.Caller), telemetry.AttrCallee.String(e.Callee),
		telemetry.AttrTo.String(e.State.String()), telemetry.AttrGeneration.Int64(int64(e.Generation)),
		telemetry.AttrXDSNode.String(e.NodeID), telemetry.AttrXDSVersion.String(e.Version),
		telemetry.AttrInstance.String(s.cfg.Instance),
	}
	tr := telemetry.Tracer(s.cfg.TracerProvider)
	ctx, push := tr.Start(ctx, telemetry.SpanXDSPush,
		trace.WithTimestamp(sent), trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	_, ack := tr.Start(ctx, telemetry.SpanXDSAck,
		trace.WithTimestamp(e.At), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	ack.End(trace.WithTimestamp(e.At))
	push.End(trace.WithTimestamp(e.At))
}

// metrics is the sidecar's Prometheus collector.
type metrics struct {
	s             *Sidecar
	tripToEnforce *prometheus.HistogramVec
	nacks         prometheus.Counter
	reportsSent   prometheus.Counter
	reportsLost   prometheus.Counter

	state, stale, degraded, endpoints *prometheus.Desc
	xdsClients                        *prometheus.Desc
}

func newMetrics(s *Sidecar) *metrics {
	ns := telemetry.Namespace
	return &metrics{
		s: s,
		tripToEnforce: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: "sidecar", Name: "trip_to_enforce_seconds",
			Help:    "Time from the leader's decision of a breaker transition to an xDS client of this sidecar ACKing the routes that carry it (leader and sidecar clocks).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"callee", "state"}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "sidecar", Name: "xds_nacks_total",
			Help: "xDS responses the sidecar's clients rejected."}),
		reportsSent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "sidecar", Name: "reports_sent_total",
			Help: "Outcome reports (one per callee and period) the coordinator accepted."}),
		reportsLost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "sidecar", Name: "reports_dropped_total",
			Help: "Outcome reports dropped because the coordinator did not accept them (soft state: the next period brings fresh counts)."}),
		state: prometheus.NewDesc(ns+"_sidecar_breaker_state", "State this sidecar enforces per callee: 0 CLOSED, 1 OPEN, 2 HALF_OPEN.",
			[]string{"callee", "source"}, nil),
		stale: prometheus.NewDesc(ns+"_sidecar_stale_seconds", "How long ago the coordinator last answered this sidecar.", nil, nil),
		degraded: prometheus.NewDesc(ns+"_sidecar_degraded", "1 while the sidecar applies its degraded mode (the coordinator is unreachable).",
			[]string{"mode"}, nil),
		endpoints:  prometheus.NewDesc(ns+"_sidecar_callee_endpoints", "Registered instances of each callee.", []string{"callee"}, nil),
		xdsClients: prometheus.NewDesc(ns+"_sidecar_xds_clients", "xDS clients (Envoy or proxyless gRPC) connected to this sidecar.", nil, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.tripToEnforce.Describe(ch)
	m.nacks.Describe(ch)
	m.reportsSent.Describe(ch)
	m.reportsLost.Describe(ch)
	for _, d := range []*prometheus.Desc{m.state, m.stale, m.degraded, m.endpoints, m.xdsClients} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.tripToEnforce.Collect(ch)
	m.nacks.Collect(ch)
	m.reportsSent.Collect(ch)
	m.reportsLost.Collect(ch)
	st := m.s.Status()
	for _, p := range st.Pairs {
		var v breaker.State
		_ = v.UnmarshalText([]byte(p.State))
		ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, float64(v), p.Callee, p.Source)
		ch <- prometheus.MustNewConstMetric(m.endpoints, prometheus.GaugeValue, float64(p.Endpoints), p.Callee)
	}
	if st.StaleMs >= 0 {
		ch <- prometheus.MustNewConstMetric(m.stale, prometheus.GaugeValue, float64(st.StaleMs)/1000)
	}
	deg := 0.0
	if st.Degraded {
		deg = 1
	}
	ch <- prometheus.MustNewConstMetric(m.degraded, prometheus.GaugeValue, deg, st.Mode)
	clients := 0
	for _, e := range m.s.enforcers {
		if x, ok := e.(*XDS); ok {
			clients += len(x.srv.Status().Clients)
		}
	}
	ch <- prometheus.MustNewConstMetric(m.xdsClients, prometheus.GaugeValue, float64(clients))
}

// observe is the XDS enforcer's hook for one client enforcing a transition.
func (m *metrics) observe(e xds.Enforcement) {
	if e.Initial {
		return // the state the client started with, not a transition
	}
	m.tripToEnforce.WithLabelValues(e.Callee, e.State.String()).Observe(e.FromLeader.Seconds())
}
