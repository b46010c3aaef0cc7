package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is a tracer provider and what flushes it.
type Tracing struct {
	// Provider creates the process's tracers: an SDK provider exporting over
	// OTLP, or a no-op provider when nothing is configured.
	Provider trace.TracerProvider
	// Exporting reports whether spans are exported.
	Exporting bool

	shutdown func(context.Context) error
	exp      sdktrace.SpanExporter // nil when not exporting

	mu     sync.Mutex
	others []*sdktrace.TracerProvider // made by ForService
}

// Shutdown exports the spans still buffered (ForService's providers' first)
// and stops the exporter. Call it once, after everything that creates spans
// has stopped.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	t.mu.Lock()
	others := t.others
	t.others = nil
	t.mu.Unlock()
	var errs []error
	for _, tp := range others {
		errs = append(errs, tp.Shutdown(ctx))
	}
	return errors.Join(append(errs, t.shutdown(ctx))...)
}

// ForService returns a tracer provider for another role that runs in this
// process (colony dev runs a coordinator and the demo's sidecars in one):
// its spans carry service and instance as their resource, as that role's
// own process would, and leave through t's exporter; Shutdown flushes them.
// A no-op provider when t does not export.
func (t *Tracing) ForService(ctx context.Context, service, instance string) (trace.TracerProvider, error) {
	if t == nil || t.exp == nil {
		return noop.NewTracerProvider(), nil
	}
	res, err := Resource(ctx, service, instance)
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(sharedExporter{t.exp}), sdktrace.WithResource(res))
	t.mu.Lock()
	t.others = append(t.others, tp)
	t.mu.Unlock()
	return tp, nil
}

// sharedExporter is the exporter of a ForService provider: the Tracing's
// own provider shuts the exporter down, once, after the others.
type sharedExporter struct{ sdktrace.SpanExporter }

func (sharedExporter) Shutdown(context.Context) error { return nil }

// TracingFromEnv returns the tracing the standard OpenTelemetry environment
// variables ask for:
//
//   - OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, or
//     OTEL_TRACES_EXPORTER=otlp: spans are batched and exported over OTLP/gRPC,
//     configured by the other OTEL_EXPORTER_OTLP_* variables (headers,
//     insecure, certificate, compression, timeout); an http:// endpoint means
//     no TLS. OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG pick the
//     sampler (default: parent-based, always on).
//   - otherwise, or with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none:
//     a no-op provider; nothing is recorded or exported.
//
// The resource carries service.name and service.instance.id (instance: the
// node or instance id), which OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
// may override. Only cmd/ should call it: it reads the environment.
func TracingFromEnv(ctx context.Context, service, instance string) (*Tracing, error) {
	on, err := otlpRequested(os.Getenv)
	if err != nil || !on {
		return &Tracing{Provider: noop.NewTracerProvider()}, err
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
	}
	res, err := Resource(ctx, service, instance)
	if err != nil {
		exp.Shutdown(ctx)
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{Provider: tp, Exporting: true, shutdown: tp.Shutdown, exp: exp}, nil
}

// otlpRequested reports whether the environment asks for OTLP trace export.
func otlpRequested(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return false, nil
	case "", "otlp":
		if exp == "otlp" {
			break
		}
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return false, nil
		}
	default:
		return false, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q: only otlp (over gRPC) and none are supported", exp)
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(getenv(v)); p != "" {
			if p != "grpc" {
				return false, fmt.Errorf("telemetry: %s=%q: only grpc is supported", v, p)
			}
			break
		}
	}
	return true, nil
}

// Resource describes one Colony process: service.name, service.instance.id,
// the SDK, and whatever OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES add
// or override.
func Resource(ctx context.Context, service, instance string) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceInstanceID(instance)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// Propagator is the W3C trace context (and baggage) propagator Colony uses
// on every gRPC hop, whatever the process-global propagator is.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Traceparent encodes a span context as a W3C traceparent header value
// ("00-<trace id>-<span id>-<flags>"), "" when sc is not valid (tracing off).
func Traceparent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), c)
	return c.Get("traceparent")
}

// SpanContextFromTraceparent decodes a traceparent value into a remote span
// context; the zero (invalid) SpanContext when tp is empty or malformed.
func SpanContextFromTraceparent(tp string) trace.SpanContext {
	if tp == "" {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	return trace.SpanContextFromContext(ctx)
}

// ContextWithTraceparent returns ctx with tp as the remote parent of the
// spans started from it; ctx itself when tp is empty or malformed. A sidecar
// starts SpanWatchDeliver from it with a record's Traceparent.
func ContextWithTraceparent(ctx context.Context, tp string) context.Context {
	if sc := SpanContextFromTraceparent(tp); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}

// LinkTraceparent returns a link to the span tp names, for a span that
// follows from it without being its child; false when tp is empty or
// malformed.
func LinkTraceparent(tp string) (trace.Link, bool) {
	sc := SpanContextFromTraceparent(tp)
	return trace.Link{SpanContext: sc}, sc.IsValid()
}

// Tracer returns Colony's tracer from tp, or from a no-op provider when tp
// is nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(InstrumentationName)
}
