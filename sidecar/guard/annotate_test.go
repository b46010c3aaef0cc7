package guard

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
)

// TestRejectedCallLinksToDecision: a call the breaker rejects fails with
// UNAVAILABLE naming the breaker and its generation, never reaches the
// network, and the caller's span carries the generation and a link to the
// coordinator's trace of the decision.
func TestRejectedCallLinksToDecision(t *testing.T) {
	g, err := New(Config{Sidecar: "127.0.0.1:1", Instance: "c1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	g.apply(breaker.PairRecord{Caller: "checkout", Callee: "payments", Record: breaker.Record{State: breaker.Open, Generation: 7}, Traceparent: tp}, "")

	spans := tracetest.NewInMemoryExporter()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)).Tracer("test")
	ctx, span := tracer.Start(context.Background(), "call payments")
	invoked := false
	err = g.UnaryClientInterceptor("payments")(ctx, "/svc/M", nil, nil, nil,
		func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			invoked = true
			return nil
		})
	span.End()
	if invoked {
		t.Fatal("a rejected call reached the network")
	}
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "colony: breaker checkout->payments is OPEN (generation 7): call rejected" {
		t.Fatalf("rejection: %v", err)
	}
	got := spans.GetSpans()
	if len(got) != 1 {
		t.Fatalf("%d spans", len(got))
	}
	attrs := map[string]string{}
	for _, a := range got[0].Attributes {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["colony.breaker.generation"] != "7" || attrs["colony.breaker.traceparent"] != tp {
		t.Fatalf("span attributes %v", attrs)
	}
	if len(got[0].Links) != 1 || got[0].Links[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("span links %+v, want one to the decision's trace", got[0].Links)
	}
}

// TestDataPlaneRejectionLinksToDecision: a call the guard let through (a
// HALF_OPEN probe) that the data plane then rejected for the breaker
// (gRPC's fault injection on the sidecar's routes, Envoy's response with
// the breaker header) gets the same link on the caller's span, to the
// decision the guard holds; a guard that still holds CLOSED links nothing.
func TestDataPlaneRejectionLinksToDecision(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	faulted := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "RPC terminated due to fault injection")
	}
	breakerHeader := roundTripper(func(*http.Request) (*http.Response, error) {
		h := http.Header{}
		h.Set(BreakerHeader, "checkout->payments")
		return &http.Response{StatusCode: 503, Header: h, Body: http.NoBody}, nil
	})
	calls := map[string]func(g *Guard, ctx context.Context) error{
		"grpc": func(g *Guard, ctx context.Context) error {
			return g.UnaryClientInterceptor("payments")(ctx, "/svc/M", nil, nil, nil, faulted)
		},
		"http": func(g *Guard, ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://payments/", nil)
			resp, err := g.RoundTripper("payments", breakerHeader).RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			return err
		},
	}
	for _, state := range []breaker.State{breaker.HalfOpen, breaker.Closed} {
		for name, call := range calls {
			t.Run(name+" "+state.String(), func(t *testing.T) {
				g, err := New(Config{Sidecar: "127.0.0.1:1", Instance: "c1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					t.Fatal(err)
				}
				defer g.Close()
				g.apply(breaker.PairRecord{Caller: "checkout", Callee: "payments",
					Record: breaker.Record{State: state, Generation: 8, Probes: map[string]int{"c1": 1}}, Traceparent: tp}, "")
				spans := tracetest.NewInMemoryExporter()
				ctx, span := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)).Tracer("test").Start(context.Background(), "call payments")
				call(g, ctx)
				span.End()
				got := spans.GetSpans()
				if len(got) != 1 {
					t.Fatalf("%d spans", len(got))
				}
				linked := len(got[0].Links) == 1 && got[0].Links[0].SpanContext.TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736"
				if want := state != breaker.Closed; linked != want {
					t.Fatalf("guard holding %v: span links %+v; want a link to the decision: %v", state, got[0].Links, want)
				}
			})
		}
	}
}
