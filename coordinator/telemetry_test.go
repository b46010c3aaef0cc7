package coordinator

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/tests/support/telemetrytest"
)

// tripPair applies a policy for callee (open for a minute, so the pair stays
// OPEN) and reports failures from two caller instances, c1 through first and
// c2 through second: the second report trips the pair (quorum of 2). It
// returns the OPEN record as first sees it.
func tripPair(t *testing.T, first, second *testNode, caller, callee string) *breaker.PairRecord {
	t.Helper()
	applyTestPolicy(t, first, callee, testPolicy(time.Minute))
	report(t, first, caller, callee, "c1", 0, 40)
	report(t, second, caller, callee, "c2", 0, 40)
	return waitState(t, first, caller, callee, breaker.Open, 10*time.Second)
}

func spanAttr(attrs []attribute.KeyValue, key attribute.Key) string {
	for _, kv := range attrs {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// waitSpans polls the exporter until find returns true, for at most 10s.
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, find func(tracetest.SpanStubs) bool) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := exp.GetSpans()
		if find(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range spans {
				names = append(names, s.Name)
			}
			t.Fatalf("spans not found within 10s; have %v", names)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func spanByID(spans tracetest.SpanStubs, id trace.SpanID) (tracetest.SpanStub, bool) {
	for _, s := range spans {
		if s.SpanContext.SpanID() == id {
			return s, true
		}
	}
	return tracetest.SpanStub{}, false
}

// TestTraceOfATrip: one trip, reported through two followers, is one trace
// on the in-memory exporter: the report that tipped it (on a follower) ->
// its ingestion by the leader's engine (across the forwarding hop, which is
// linked) -> the decision (linked to the earlier report) -> the log apply,
// whose context the record carries for the sidecars.
func TestTraceOfATrip(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	c := newTestCluster(t, 3, func(cfg *Config) {
		res, err := telemetry.Resource(context.Background(), telemetry.ServiceCoordinator, cfg.NodeID)
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
		t.Cleanup(func() { tp.Shutdown(context.Background()) })
		cfg.TracerProvider = tp
	})
	fs := c.followers()
	a, b := fs[0], fs[1]
	leaderID := c.leader().cfg.NodeID
	rec := tripPair(t, a, b, "checkout", "payments")

	sc := telemetry.SpanContextFromTraceparent(rec.Traceparent)
	if !sc.IsValid() {
		t.Fatalf("OPEN record carries no valid traceparent: %q", rec.Traceparent)
	}
	spans := waitSpans(t, exp, func(s tracetest.SpanStubs) bool { _, ok := spanByID(s, sc.SpanID()); return ok })
	hop := func(s tracetest.SpanStub, wantName, node string) tracetest.SpanStub {
		t.Helper()
		if s.Name != wantName {
			t.Fatalf("span %s: name %q, want %q", s.SpanContext.SpanID(), s.Name, wantName)
		}
		if s.SpanContext.TraceID() != sc.TraceID() {
			t.Errorf("%s: trace %s, want the record's %s", s.Name, s.SpanContext.TraceID(), sc.TraceID())
		}
		if got := resAttr(s, "service.instance.id"); got != node {
			t.Errorf("%s: service.instance.id %q, want %q", s.Name, got, node)
		}
		if got := resAttr(s, "service.name"); got != telemetry.ServiceCoordinator {
			t.Errorf("%s: service.name %q", s.Name, got)
		}
		if s.EndTime.IsZero() {
			t.Errorf("%s: not ended", s.Name)
		}
		return s
	}
	parentOf := func(s tracetest.SpanStub) tracetest.SpanStub {
		t.Helper()
		p, ok := spanByID(spans, s.Parent.SpanID())
		if !ok {
			t.Fatalf("%s: parent %s not exported", s.Name, s.Parent.SpanID())
		}
		return p
	}

	apply, _ := spanByID(spans, sc.SpanID())
	hop(apply, telemetry.SpanApply, leaderID)
	decide := hop(parentOf(apply), telemetry.SpanDecide, leaderID)
	ingest := hop(parentOf(decide), telemetry.SpanIngest, leaderID)
	rep := hop(parentOf(ingest), telemetry.SpanReport, b.cfg.NodeID)

	for _, w := range []struct {
		span tracetest.SpanStub
		key  attribute.Key
		want string
	}{
		{decide, telemetry.AttrCaller, "checkout"},
		{decide, telemetry.AttrCallee, "payments"},
		{decide, telemetry.AttrFrom, "CLOSED"},
		{decide, telemetry.AttrTo, "OPEN"},
		{decide, telemetry.AttrCause, string(breaker.ConditionFailureRate)},
		{decide, telemetry.AttrGeneration, fmt.Sprint(rec.Generation)},
		{decide, telemetry.AttrFailing, "2"},
		{decide, telemetry.AttrFailures, "80"},
		{apply, telemetry.AttrTo, "OPEN"},
		{apply, telemetry.AttrRaftIndex, fmt.Sprint(recordZxid(t, c.leader(), "checkout", "payments"))},
		{rep, telemetry.AttrInstance, "c2"},
		{rep, telemetry.AttrCallee, "payments"},
		{rep, telemetry.AttrForwarded, "true"},
		{ingest, telemetry.AttrReports, "1"},
	} {
		if got := spanAttr(w.span.Attributes, w.key); got != w.want {
			t.Errorf("%s: %s = %q, want %q", w.span.Name, w.key, got, w.want)
		}
	}

	// The forwarding RPC that carried the report is linked from the
	// ingestion; the first instance's report is linked from the decision.
	linked := func(s tracetest.SpanStub, match func(tracetest.SpanStub) bool) bool {
		for _, l := range s.Links {
			if ls, ok := spanByID(spans, l.SpanContext.SpanID()); ok && match(ls) {
				return true
			}
		}
		return false
	}
	if !linked(ingest, func(s tracetest.SpanStub) bool { return s.Name == "colony.peer.v1.Peer/ForwardReports" }) {
		t.Errorf("ingest span has no link to the ForwardReports RPC: %v", ingest.Links)
	}
	if !linked(decide, func(s tracetest.SpanStub) bool {
		if s.Name != telemetry.SpanIngest {
			return false
		}
		first, ok := spanByID(spans, s.Parent.SpanID())
		return ok && spanAttr(first.Attributes, telemetry.AttrInstance) == "c1"
	}) {
		t.Errorf("decision has no link to the first instance's report: %v", decide.Links)
	}
}

func resAttr(s tracetest.SpanStub, key attribute.Key) string {
	if s.Resource == nil {
		return ""
	}
	v, _ := s.Resource.Set().Value(key)
	return v.String()
}

// recordZxid is the zxid of the last write of a pair's record on n.
func recordZxid(t *testing.T, n *testNode, caller, callee string) uint64 {
	t.Helper()
	_, st, err := n.srv.fsm.tree.View().Get("/colony/breakers/" + caller + "/" + callee)
	if err != nil {
		t.Fatal(err)
	}
	return st.GetMzxid()
}

// TestTraceExportedOverOTLP runs a node with tracing configured the way a
// user does (OTEL_EXPORTER_OTLP_ENDPOINT) against an OTLP/gRPC receiver in
// the test: a trip's spans arrive intact, with their resource, attributes
// and parent links.
func TestTraceExportedOverOTLP(t *testing.T) {
	recv := telemetrytest.StartReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.Endpoint())
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	tracing, err := telemetry.TracingFromEnv(context.Background(), telemetry.ServiceCoordinator, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if !tracing.Exporting {
		t.Fatal("TracingFromEnv: not exporting with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	flushed := false
	t.Cleanup(func() {
		if !flushed {
			tracing.Shutdown(context.Background())
		}
	})
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.TracerProvider = tracing.Provider })
	n := c.leader()
	rec := tripPair(t, n, n, "checkout", "payments")
	sc := telemetry.SpanContextFromTraceparent(rec.Traceparent)

	// The batch processor exports every 50ms (OTEL_BSP_SCHEDULE_DELAY):
	// wait for the whole chain to arrive.
	ctx := ctxT(t)
	spans, err := recv.Wait(ctx, func(s []telemetrytest.Span) bool {
		apply := findOTLP(s, sc.SpanID().String())
		return apply != nil && findOTLP(s, apply.ParentSpanID()) != nil && len(s) >= 5
	})
	if err != nil {
		t.Fatalf("the record's apply span %s and its parent never arrived: %v (got %d spans)", sc.SpanID(), err, len(spans))
	}
	// Everything else ended by now arrives with the flush at shutdown.
	if err := tracing.Shutdown(ctx); err != nil {
		t.Fatalf("flushing spans: %v", err)
	}
	flushed = true
	spans = recv.Spans()
	byID := map[string]telemetrytest.Span{}
	for _, s := range spans {
		byID[s.SpanID()] = s
		if s.Resource["service.name"] != telemetry.ServiceCoordinator || s.Resource["service.instance.id"] != "n1" {
			t.Errorf("span %s: resource %v", s.Name, s.Resource)
		}
		if s.Scope == "" {
			t.Errorf("span %s: no instrumentation scope", s.Name)
		}
	}
	chain := []struct {
		name  string
		attrs map[string]string
	}{
		{telemetry.SpanApply, map[string]string{"colony.breaker.to": "OPEN", "colony.raft.index": fmt.Sprint(recordZxid(t, n, "checkout", "payments"))}},
		{telemetry.SpanDecide, map[string]string{"colony.breaker.from": "CLOSED", "colony.breaker.to": "OPEN", "colony.breaker.cause": "failureRate", "colony.breaker.caller": "checkout", "colony.breaker.callee": "payments"}},
		{telemetry.SpanIngest, map[string]string{"colony.breaker.reports": "1"}},
		{telemetry.SpanReport, map[string]string{"colony.breaker.instance": "c2", "colony.node": "n1"}},
		{"colony.v1.Breakers/Report", nil}, // otelgrpc's server span
	}
	s := byID[sc.SpanID().String()]
	for i, hop := range chain {
		if s.Span == nil {
			t.Fatalf("hop %d (%s) missing", i, hop.name)
		}
		if s.Name != hop.name {
			t.Fatalf("hop %d: span %q, want %q", i, s.Name, hop.name)
		}
		if s.TraceID() != sc.TraceID().String() {
			t.Errorf("%s: trace %s, want %s", s.Name, s.TraceID(), sc.TraceID())
		}
		for k, v := range hop.attrs {
			if got := s.Attr(k); got != v {
				t.Errorf("%s: %s = %q, want %q", s.Name, k, got, v)
			}
		}
		if i < len(chain)-1 {
			s = byID[s.ParentSpanID()]
		}
	}
}

func findOTLP(spans []telemetrytest.Span, id string) *telemetrytest.Span {
	for i := range spans {
		if spans[i].SpanID() == id {
			return &spans[i]
		}
	}
	return nil
}

// scrape fetches and parses a /metrics page with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return mfs
}

// sample returns the value of the series of name with labels (a subset
// match), and whether it exists.
func sample(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsScrape scrapes a node's /metrics over HTTP as Prometheus does
// and parses it: the pair's state gauge and the transition counter follow
// the breaker as it trips; report, raft, session and watch series are there.
func TestMetricsScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.Metrics = reg })
	ms, err := telemetry.ListenMetrics("127.0.0.1:0", telemetry.Handler(reg, telemetry.HandlerOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close(context.Background()) })
	url := "http://" + ms.Addr() + "/metrics"
	n := c.leader()
	pair := map[string]string{"caller": "checkout", "callee": "payments"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}

	applyTestPolicy(t, n, "payments", testPolicy(time.Minute))
	report(t, n, "checkout", "payments", "c1", 0, 40)
	waitState(t, n, "checkout", "payments", breaker.Closed, 5*time.Second)
	before := scrape(t, url)
	if v, ok := sample(before, "colony_breaker_state", with(pair, "state", "closed")); !ok || v != 1 {
		t.Errorf("before the trip: colony_breaker_state{state=closed} = %v (present %v), want 1", v, ok)
	}
	if v, _ := sample(before, "colony_breaker_state", with(pair, "state", "open")); v != 0 {
		t.Errorf("before the trip: colony_breaker_state{state=open} = %v, want 0", v)
	}
	if _, ok := sample(before, "colony_breaker_transitions_total", pair); ok {
		t.Errorf("before the trip: a transition was counted")
	}

	report(t, n, "checkout", "payments", "c2", 0, 40)
	waitState(t, n, "checkout", "payments", breaker.Open, 5*time.Second)
	after := scrape(t, url)
	for _, w := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"colony_breaker_state", with(pair, "state", "open"), 1},
		{"colony_breaker_state", with(pair, "state", "closed"), 0},
		{"colony_breaker_state", with(pair, "state", "half_open"), 0},
		{"colony_breaker_transitions_total", with(pair, "from", "closed", "to", "open", "cause", "failureRate"), 1},
		{"colony_breaker_pairs", nil, 1},
		{"colony_breaker_reports_received_total", map[string]string{"result": "accepted"}, 2},
		{"colony_breaker_reported_calls_total", with(pair, "outcome", "failure"), 80},
		{"colony_raft_state", map[string]string{"state": "leader"}, 1},
		{"colony_raft_state", map[string]string{"state": "follower"}, 0},
		{"colony_raft_members", map[string]string{"suffrage": "voter"}, 1},
		{"colony_sessions", nil, 0},
		{"colony_watches", nil, 0},
	} {
		if got, ok := sample(after, w.name, w.labels); !ok || got != w.want {
			t.Errorf("after the trip: %s%v = %v (present %v), want %v", w.name, w.labels, got, ok, w.want)
		}
	}
	for _, h := range []string{"colony_raft_commit_duration_seconds", "colony_raft_fsm_apply_duration_seconds", "colony_breaker_record_write_duration_seconds"} {
		if n, ok := sample(after, h, nil); !ok || n == 0 {
			t.Errorf("%s: %v observations (present %v), want some", h, n, ok)
		}
		if mf := after[h]; mf != nil && mf.GetType() != dto.MetricType_HISTOGRAM {
			t.Errorf("%s: type %v, want histogram", h, mf.GetType())
		}
	}
	for name, mf := range after {
		if !strings.HasPrefix(name, "colony_") {
			t.Errorf("unexpected family %s in the node's registry", name)
		}
		if mf.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
}
