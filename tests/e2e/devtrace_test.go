//go:build unix

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/tests/support/telemetrytest"
)

// spanIndex indexes received spans by span id.
type spanIndex map[string]telemetrytest.Span

func indexSpans(spans []telemetrytest.Span) spanIndex {
	ix := spanIndex{}
	for _, s := range spans {
		ix[s.SpanID()] = s
	}
	return ix
}

// children returns the spans named name whose parent is id.
func (ix spanIndex) children(id, name string) []telemetrytest.Span {
	var out []telemetrytest.Span
	for _, s := range ix {
		if s.ParentSpanID() == id && s.GetName() == name {
			out = append(out, s)
		}
	}
	return out
}

// path names s and its ancestors, s first, as "name[service]"; it ends at
// a root or at a parent that was not received.
func (ix spanIndex) path(s telemetrytest.Span) []string {
	var out []string
	for {
		out = append(out, s.GetName()+"["+s.Resource["service.name"]+"]")
		p, ok := ix[s.ParentSpanID()]
		if !ok {
			return out
		}
		s = p
	}
}

// decisions returns the decide spans of checkout->payments to state to.
func (ix spanIndex) decisions(to string) []telemetrytest.Span {
	var out []telemetrytest.Span
	for _, s := range ix {
		if s.GetName() == telemetry.SpanDecide && s.Attr(string(telemetry.AttrCaller)) == "checkout" &&
			s.Attr(string(telemetry.AttrCallee)) == "payments" && s.Attr(string(telemetry.AttrTo)) == to {
			out = append(out, s)
		}
	}
	return out
}

// TestDevTripExportsTheWholeTrace runs `colony dev` as a user does, with
// OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP receiver, fails the demo's
// payments (`colony demo fail payments`) and reads the trip's trace from
// what the process exported: from the checkout sidecar's report (service
// colony-sidecar) through its Report RPC, the coordinator's report, ingest,
// decision and write (service colony-coordinator), to the checkout
// sidecar's watch delivery, its xDS push to its proxyless client of
// payments and that client's ACK. The decision on the leader's timer that
// half-opens the pair starts a trace of its own, linked to the OPEN
// record's write.
func TestDevTripExportsTheWholeTrace(t *testing.T) {
	ctx := testContext(t, 150*time.Second)
	recv := telemetrytest.StartReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.Endpoint())
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100") // ms: export within the test's patience, not the default 5 s

	dataDir := filepath.Join(t.TempDir(), "dev")
	grpcAddr, p := startDev(t, dataDir)
	cli := []string{"--endpoints", grpcAddr, "--certs-dir", filepath.Join(dataDir, "tls"), "--timeout", "10s"}

	// The demo mesh is up once its control node for payments can be set.
	for {
		r := runCLI(ctx, append([]string{"demo", "fail", "payments"}, cli...)...)
		if r.err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("colony demo fail payments: %v\n%s", r.err, r.stderr)
		case <-p.Done():
			t.Fatalf("colony dev exited: %s", p.Describe())
		case <-time.After(200 * time.Millisecond):
		}
	}

	// The trip: an OPEN decision whose write reached the checkout
	// sidecar's xDS client as an ACK.
	var ix spanIndex
	var acks []telemetrytest.Span
	_, err := recv.Wait(ctx, func(spans []telemetrytest.Span) bool {
		ix = indexSpans(spans)
		acks = nil
		for _, d := range ix.decisions("OPEN") {
			for _, a := range ix.children(d.SpanID(), telemetry.SpanApply) {
				for _, w := range ix.children(a.SpanID(), telemetry.SpanWatchDeliver) {
					for _, push := range ix.children(w.SpanID(), telemetry.SpanXDSPush) {
						acks = append(acks, ix.children(push.SpanID(), telemetry.SpanXDSAck)...)
					}
				}
			}
		}
		return len(acks) > 0
	})
	if err != nil {
		t.Fatalf("no %s under an OPEN decision of checkout->payments: %v (%d spans received)", telemetry.SpanXDSAck, err, len(ix))
	}

	const sc, co = "[" + telemetry.ServiceSidecar + "]", "[" + telemetry.ServiceCoordinator + "]"
	wantUp := []string{
		telemetry.SpanXDSAck + sc, telemetry.SpanXDSPush + sc, telemetry.SpanWatchDeliver + sc,
		telemetry.SpanApply + co, telemetry.SpanDecide + co, telemetry.SpanIngest + co, telemetry.SpanReport + co,
		"colony.v1.Breakers/Report" + co, "colony.v1.Breakers/Report" + sc, telemetry.SpanSidecarReport + sc,
	}
	ack := acks[0]
	if got := ix.path(ack); !slices.Equal(got, wantUp) {
		t.Fatalf("the trip's trace, from an ACK up to its root:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(wantUp, "\n  "))
	}
	t.Logf("the trip's trace, from an ACK up:\n  %s", strings.Join(ix.path(ack), "\n  "))
	// Each end of the trace names the process role and instance it ran in.
	root := ack
	for p, ok := ix[root.ParentSpanID()]; ok; p, ok = ix[root.ParentSpanID()] {
		root = p
	}
	for _, s := range []telemetrytest.Span{root, ack} {
		if got := s.Resource["service.instance.id"]; !strings.HasPrefix(got, "checkout/") {
			t.Errorf("%s: service.instance.id %q, want the checkout sidecar's (checkout/...)", s.GetName(), got)
		}
	}
	if got := ack.Attr(string(telemetry.AttrXDSNode)); !strings.HasPrefix(got, "checkout/") {
		t.Errorf("%s: xDS node %q, want the checkout instance's client", telemetry.SpanXDSAck, got)
	}
	// The leader's timer half-opens the pair: a root of its own trace,
	// linked to the write of the OPEN record it follows.
	var half, open telemetrytest.Span
	_, err = recv.Wait(ctx, func(spans []telemetrytest.Span) bool {
		ix = indexSpans(spans)
		for _, d := range ix.decisions("HALF_OPEN") {
			for _, l := range d.GetLinks() {
				w, ok := ix[fmt.Sprintf("%x", l.GetSpanId())]
				if ok && w.GetName() == telemetry.SpanApply && w.Attr(string(telemetry.AttrTo)) == "OPEN" &&
					w.Attr(string(telemetry.AttrCaller)) == "checkout" && w.Attr(string(telemetry.AttrCallee)) == "payments" {
					half, open = d, w
					return true
				}
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("no %s to HALF_OPEN linked to the write (%s) of an OPEN record of checkout->payments: %v", telemetry.SpanDecide, telemetry.SpanApply, err)
	}
	if half.ParentSpanID() != "" || half.TraceID() == open.TraceID() {
		t.Errorf("the timer's decision has parent %q in trace %s (the trip's: %s); want a root of a trace of its own",
			half.ParentSpanID(), half.TraceID(), open.TraceID())
	}
	t.Logf("the timer's decision (%s -> %s, cause %s) is a root linked to the OPEN record's write", half.Attr(string(telemetry.AttrFrom)),
		half.Attr(string(telemetry.AttrTo)), half.Attr(string(telemetry.AttrCause)))
	if got := half.Resource["service.name"]; got != telemetry.ServiceCoordinator {
		t.Errorf("the timer's decision comes from service %q, want %s", got, telemetry.ServiceCoordinator)
	}
	if log, err := os.ReadFile(dataDir + ".log"); err == nil && !strings.Contains(string(log), "exporting traces over OTLP") {
		t.Errorf("colony dev did not say it exports traces")
	}
}
