package sidecar_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/outcome"
	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/internal/xdsdial"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
	"github.com/colonymesh/colony/xds"
)

// tripMesh is a coordinator, a payments sidecar, and two checkout sidecars
// (c1, c2), each with an xDS server and one proxyless gRPC client of
// payments; the checkout sidecars trace with tp (nil: not at all).
type tripMesh struct {
	admin     *client.Client
	callers   []*sidecar.Sidecar
	instances []string
}

func startTripMesh(t *testing.T, coordTP, sidecarTP trace.TracerProvider) *tripMesh {
	t.Helper()
	srv := coordinatortest.StartNode(t, func(c *coordinator.Config) { c.TracerProvider = coordTP })
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	apply(t, admin)
	startSidecar(t, srv.Addr(), "payments", "p1", 9001)
	m := &tripMesh{admin: admin}
	for i, inst := range []string{"c1", "c2"} {
		x, err := sidecar.NewXDS(xds.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(x.Close)
		sc, err := sidecar.New(sidecar.Config{Service: "checkout", Instance: inst, Coordinators: []string{srv.Addr()},
			Address: fmt.Sprintf("127.0.0.1:%d", 9100+i), APIAddr: "127.0.0.1:0", ReportInterval: 50 * time.Millisecond,
			TracerProvider: sidecarTP, Logger: quietLog()}, x)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		cc, err := xdsdial.Dial(sc.Addr(), "checkout/"+inst, "checkout", "payments")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		cc.Connect()
		m.callers = append(m.callers, sc)
		m.instances = append(m.instances, inst)
	}
	return m
}

// trip has both checkout instances report failures to payments and waits
// until both sidecars hold the OPEN record, which it returns.
//
// The pair is created first, by an untraced report (the admin client has
// no tracer) that the engine counts but does not refer to. Otherwise the
// first failure report could create it: the engine keeps the reports it
// refers to in the pair's soft state, which the creation's write replaces,
// so a trip decided on the second report referred to that one only.
func (m *tripMesh) trip(t *testing.T) *breaker.PairRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.admin.Report(ctx, &colonyv1.OutcomeReport{Caller: "checkout", Callee: "payments", Instance: "c1",
		Counts: outcome.ToProto(breaker.Counts{Successes: 1})}); err != nil {
		t.Fatal(err)
	}
	for _, sc := range m.callers {
		waitCallee(t, sc, 15*time.Second, "the pair's CLOSED record", func(c sidecar.Callee, _ sidecar.View) bool {
			return c.Record != nil && state(c) == breaker.Closed
		})
	}
	// The quorum (two failing instances) is capped at the caller's
	// registered fleet: with one registration seen, one sick instance
	// would trip the pair alone.
	for {
		names, _, err := m.admin.Children(ctx, contract.ServiceDir("checkout"))
		if err == nil && len(names) == len(m.callers) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("checkout's registrations: %v, %v; want %v", names, err, m.instances)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, sc := range m.callers {
		if err := sc.Report("payments", breaker.Counts{Failures: 30}); err != nil {
			t.Fatal(err)
		}
	}
	var rec *breaker.PairRecord
	for _, sc := range m.callers {
		c := waitCallee(t, sc, 15*time.Second, "OPEN", func(c sidecar.Callee, _ sidecar.View) bool { return state(c) == breaker.Open })
		rec = c.Record
	}
	return rec
}

// spanTree indexes exported spans by span id.
type spanTree map[trace.SpanID]tracetest.SpanStub

func treeOf(spans tracetest.SpanStubs) spanTree {
	tr := spanTree{}
	for _, s := range spans {
		tr[s.SpanContext.SpanID()] = s
	}
	return tr
}

func (tr spanTree) attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// path names the ancestors of s, s first, as "name" or "name(instance)" for
// the sidecar's report span; it ends at a root or at a parent not exported.
func (tr spanTree) path(s tracetest.SpanStub) []string {
	var out []string
	for {
		name := s.Name
		if name == telemetry.SpanSidecarReport {
			name += "(" + tr.attr(s, string(telemetry.AttrInstance)) + ")"
		}
		out = append(out, name)
		p, ok := tr[s.Parent.SpanID()]
		if !s.Parent.IsValid() || !ok {
			return out
		}
		s = p
	}
}

// children returns the spans named name whose parent is id.
func (tr spanTree) children(id trace.SpanID, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range tr {
		if s.Parent.SpanID() == id && s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// TestTripTraceFromReportToACK: with tracing on in the coordinator and the
// sidecars, a trip is one trace from the report of the sidecar that saw the
// failures (through its Report RPC, the coordinator's report, ingest,
// decision and write) to each sidecar's watch delivery, the xDS push to its
// client and that client's ACK; the decision links the other instance's
// report.
func TestTripTraceFromReportToACK(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	m := startTripMesh(t, tp, tp)
	rec := m.trip(t)
	apply := telemetry.SpanContextFromTraceparent(rec.Traceparent)
	if !apply.IsValid() {
		t.Fatalf("the OPEN record has no traceparent: %q", rec.Traceparent)
	}

	// Every sidecar's ACK of the OPEN routes, under its push, under its
	// watch delivery, under the write of the record.
	var tr spanTree
	acks := map[string]tracetest.SpanStub{}
	deadline := time.Now().Add(15 * time.Second)
	for len(acks) < len(m.instances) {
		if time.Now().After(deadline) {
			t.Fatalf("ACK spans under %s of the OPEN record: %v; want one per instance %v", telemetry.SpanApply, acks, m.instances)
		}
		time.Sleep(20 * time.Millisecond)
		tr = treeOf(spans.GetSpans())
		for _, w := range tr.children(apply.SpanID(), telemetry.SpanWatchDeliver) {
			for _, p := range tr.children(w.SpanContext.SpanID(), telemetry.SpanXDSPush) {
				for _, a := range tr.children(p.SpanContext.SpanID(), telemetry.SpanXDSAck) {
					acks[tr.attr(a, string(telemetry.AttrInstance))] = a
				}
			}
		}
	}

	// Up from each ACK: the whole chain, to the report of a sidecar that
	// saw the failures.
	wantUp := []string{
		telemetry.SpanXDSAck, telemetry.SpanXDSPush, telemetry.SpanWatchDeliver, telemetry.SpanApply, telemetry.SpanDecide,
		telemetry.SpanIngest, telemetry.SpanReport, "colony.v1.Breakers/Report", "colony.v1.Breakers/Report",
	}
	var reporter string
	for _, inst := range m.instances {
		a := acks[inst]
		if got := tr.attr(a, string(telemetry.AttrXDSNode)); got != "checkout/"+inst {
			t.Errorf("ACK span of %s: xDS node %q, want checkout/%s", inst, got, inst)
		}
		if a.SpanContext.TraceID() != apply.TraceID() {
			t.Errorf("ACK span of %s is in trace %s, the record's write in %s", inst, a.SpanContext.TraceID(), apply.TraceID())
		}
		path := tr.path(a)
		if len(path) != len(wantUp)+1 || !slices.Equal(path[:len(wantUp)], wantUp) ||
			!strings.HasPrefix(path[len(wantUp)], telemetry.SpanSidecarReport+"(c") {
			t.Fatalf("ACK of %s, up to the root:\n  %s\nwant\n  %s -> %s(c1 or c2)", inst,
				strings.Join(path, " -> "), strings.Join(wantUp, " -> "), telemetry.SpanSidecarReport)
		}
		reporter = path[len(path)-1]
	}

	// The decision is the child of the newest report and links the others
	// since the pair was created: the other instance's, so both reporting
	// sidecars are in the trace's story, and the admin's report that
	// created the pair (a root on the coordinator: its client is untraced).
	decide := tr[tr[apply.SpanID()].Parent.SpanID()]
	if got := tr.attr(decide, string(telemetry.AttrReports)); got != "3" {
		t.Errorf("decision's %s = %q, want 3 (the report that created the pair and one from each instance)", telemetry.AttrReports, got)
	}
	var linked []string
	for _, l := range decide.Links {
		if s, ok := tr[l.SpanContext.SpanID()]; ok && s.Name == telemetry.SpanIngest {
			p := tr.path(s)
			linked = append(linked, p[len(p)-1])
		}
	}
	// The creating report's chain starts at the coordinator: at its
	// Report call's span (unary), or at its colony.breaker.report (a
	// streamed report's own root).
	var creating, other []string
	for _, l := range linked {
		if strings.HasPrefix(l, telemetry.SpanSidecarReport) {
			other = append(other, l)
		} else {
			creating = append(creating, l)
		}
	}
	if len(other) != 1 || other[0] == reporter || len(creating) != 1 ||
		(creating[0] != telemetry.SpanReport && creating[0] != "colony.v1.Breakers/Report") {
		t.Errorf("decision (child of %s) links the reports %v; want the creating report's and the other instance's %s", reporter, linked, telemetry.SpanSidecarReport)
	}
}

// TestTripUntracedSidecars: sidecars without a tracer provider record no
// span and send no trace context; the coordinator's Report spans start
// traces of their own.
func TestTripUntracedSidecars(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	m := startTripMesh(t, tp, nil)
	rec := m.trip(t)
	if !telemetry.SpanContextFromTraceparent(rec.Traceparent).IsValid() {
		t.Fatalf("the OPEN record has no traceparent: %q", rec.Traceparent)
	}
	reports := 0
	for _, s := range spans.GetSpans() {
		switch s.Name {
		case telemetry.SpanSidecarReport, telemetry.SpanWatchDeliver, telemetry.SpanXDSPush, telemetry.SpanXDSAck:
			t.Errorf("untraced sidecar exported %s", s.Name)
		case "colony.v1.Breakers/Report":
			// The coordinator's span of an untraced client's unary call: a
			// root (its colony.breaker.report is the call's child).
			reports++
			if s.Parent.IsValid() {
				t.Errorf("coordinator's Report span has the parent %s: an untraced sidecar sent a trace context", s.Parent.SpanID())
			}
		case telemetry.SpanReport:
			// A streamed report's span is a root of its own (the stream's
			// span ends with the stream, after this test looks).
			if !s.Parent.IsValid() {
				reports++
			}
		}
	}
	if reports == 0 {
		t.Error("the coordinator traced no Report call")
	}
}
