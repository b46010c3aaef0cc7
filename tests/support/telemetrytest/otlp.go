// Package telemetrytest provides an OTLP/gRPC trace receiver for tests: it
// implements the OpenTelemetry collector's trace service on a loopback port
// and keeps every span it is sent, so a test can check what a process
// exported over the wire.
package telemetrytest

import (
	"context"
	"encoding/hex"
	"net"
	"strconv"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Span is one received span with its resource's and scope's identity.
type Span struct {
	// Resource holds the resource attributes, as strings.
	Resource map[string]string
	Scope    string
	*tracepb.Span
}

// TraceID and SpanID are the span's ids in hex, as trace.TraceID.String
// prints them; ParentSpanID is "" for a root.
func (s Span) TraceID() string { return hex.EncodeToString(s.Span.TraceId) }
func (s Span) SpanID() string  { return hex.EncodeToString(s.Span.SpanId) }
func (s Span) ParentSpanID() string {
	return hex.EncodeToString(s.Span.ParentSpanId)
}

// Attr returns a span attribute as a string ("" when absent).
func (s Span) Attr(key string) string { return attrString(s.Span.Attributes, key) }

// Receiver is the OTLP trace collector.
type Receiver struct {
	coltracepb.UnimplementedTraceServiceServer

	srv *grpc.Server
	lis net.Listener
	wg  sync.WaitGroup

	mu      sync.Mutex
	spans   []Span
	changed chan struct{} // closed and replaced on every export
}

// StartReceiver serves the trace service on a loopback port until the test
// ends.
func StartReceiver(t testing.TB) *Receiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{srv: grpc.NewServer(), lis: lis, changed: make(chan struct{})}
	coltracepb.RegisterTraceServiceServer(r.srv, r)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		r.srv.Stop()
		r.wg.Wait()
	})
	return r
}

// Endpoint is the receiver's address as OTEL_EXPORTER_OTLP_ENDPOINT takes it
// (http: plaintext).
func (r *Receiver) Endpoint() string { return "http://" + r.lis.Addr().String() }

// Export implements the collector's trace service.
func (r *Receiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = anyString(kv.GetValue())
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				got = append(got, Span{Resource: res, Scope: ss.GetScope().GetName(), Span: sp})
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// Spans returns every span received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Wait blocks until done holds for the spans received, or ctx ends; it
// returns the spans it last saw.
func (r *Receiver) Wait(ctx context.Context, done func([]Span) bool) ([]Span, error) {
	for {
		r.mu.Lock()
		spans := append([]Span(nil), r.spans...)
		ch := r.changed
		r.mu.Unlock()
		if done(spans) {
			return spans, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return spans, ctx.Err()
		}
	}
}

func attrString(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return anyString(kv.GetValue())
		}
	}
	return ""
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	}
	return v.String()
}
