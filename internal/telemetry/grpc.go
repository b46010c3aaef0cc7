package telemetry

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// untracedMethods are RPCs too frequent and too uneventful to trace: a
// fleet of sidecars sends keep-alives every few hundred milliseconds.
var untracedMethods = map[string]bool{
	"/colony.v1.Sessions/KeepAlive":                             true,
	"/colony.peer.v1.Peer/KeepAliveSessions":                    true,
	"/colony.peer.v1.Peer/NodeStatus":                           true,
	"/grpc.health.v1.Health/Check":                              true,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": true,
}

func otelgrpcOptions(tp trace.TracerProvider) []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(Propagator()),
		// gRPC metrics would go to OpenTelemetry's meter; Colony's metrics
		// are Prometheus collectors, so otelgrpc records none.
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool { return !untracedMethods[info.FullMethodName] }),
	}
}

// ServerOption traces a gRPC server's calls with tp, continuing the caller's
// W3C trace context. With a nil tp it adds nothing.
func ServerOption(tp trace.TracerProvider) grpc.ServerOption {
	if tp == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpcOptions(tp)...))
}

// DialOption traces a gRPC client's calls with tp and sends the W3C trace
// context of the calling span. With a nil tp it adds nothing.
func DialOption(tp trace.TracerProvider) grpc.DialOption {
	if tp == nil {
		return grpc.EmptyDialOption{}
	}
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpcOptions(tp)...))
}
