package telemetry

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOTLPRequested(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    bool
		wantErr string
	}{
		{name: "nothing configured", want: false},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, want: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4317"}, want: true},
		{name: "exporter otlp, default endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{name: "exporter none wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x:4317"}, want: false},
		{name: "sdk disabled wins", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "x:4317"}, want: false},
		{name: "grpc protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: true},
		{name: "http protocol unsupported", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, wantErr: "only grpc"},
		{name: "traces protocol overrides", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, want: true},
		{name: "other exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "only otlp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := otlpRequested(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestTracingFromEnvOffByDefault(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
	tr, err := TracingFromEnv(context.Background(), ServiceCoordinator, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Exporting {
		t.Error("exporting with nothing configured")
	}
	_, span := Tracer(tr.Provider).Start(context.Background(), "x")
	if span.SpanContext().IsValid() || Traceparent(span.SpanContext()) != "" {
		t.Error("the no-op provider made a valid span context")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestTraceparentRoundTrip(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	tp := Traceparent(sc)
	if tp != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("Traceparent = %q", tp)
	}
	back := SpanContextFromTraceparent(tp)
	if !back.IsRemote() || back.TraceID() != tid || back.SpanID() != sid || !back.IsSampled() {
		t.Fatalf("round trip: %+v", back)
	}
	if got := trace.SpanContextFromContext(ContextWithTraceparent(context.Background(), tp)); !got.Equal(back) {
		t.Errorf("ContextWithTraceparent: %+v", got)
	}
	if l, ok := LinkTraceparent(tp); !ok || l.SpanContext.SpanID() != sid {
		t.Errorf("LinkTraceparent: %+v %v", l, ok)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		if SpanContextFromTraceparent(bad).IsValid() {
			t.Errorf("%q decoded as valid", bad)
		}
		if _, ok := LinkTraceparent(bad); ok {
			t.Errorf("%q linked", bad)
		}
	}
}

func TestMetricsServer(t *testing.T) {
	reg := NewRegistry()
	for _, pprof := range []bool{false, true} {
		ms, err := ListenMetrics("127.0.0.1:0", Handler(reg, HandlerOptions{Pprof: pprof}))
		if err != nil {
			t.Fatal(err)
		}
		get := func(path string) (int, string) {
			resp, err := http.Get("http://" + ms.Addr() + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
			t.Errorf("/metrics: %d, Go collector missing", code)
		}
		want := http.StatusNotFound
		if pprof {
			want = http.StatusOK
		}
		if code, _ := get("/debug/pprof/"); code != want {
			t.Errorf("pprof %v: /debug/pprof/ answered %d, want %d", pprof, code, want)
		}
		http.DefaultClient.CloseIdleConnections()
		if err := ms.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
