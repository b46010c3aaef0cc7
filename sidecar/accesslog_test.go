package sidecar_test

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// TestSidecarCountsEnvoyAccessLogs: the calls Envoy proxied, streamed to the
// sidecar's access log service (as Envoy's http_grpc access logger does),
// become outcome reports classified with the callee's policy: statuses,
// gRPC statuses from trailers, connection failures, and the breaker's own
// fault aborts (rejected, not failures). The entries' durations fill the
// pair's latency histogram (only for the calls that count).
func TestSidecarCountsEnvoyAccessLogs(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	apply(t, admin)
	s := startSidecar(t, srv.Addr(), "checkout", "c1", 9501)

	entry := func(callee string, code uint32, trailers map[string]string, flags *accesslogdatav3.ResponseFlags) *accesslogdatav3.HTTPAccessLogEntry {
		return &accesslogdatav3.HTTPAccessLogEntry{
			CommonProperties: &accesslogdatav3.AccessLogCommon{UpstreamCluster: callee, ResponseFlags: flags,
				TimeToLastDownstreamTxByte: durationpb.New(time.Duration(code) * time.Millisecond / 10)}, // 20 ms for 200, 50 ms for 500
			Response: &accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(code), ResponseTrailers: trailers},
		}
	}
	entries := []*accesslogdatav3.HTTPAccessLogEntry{
		entry("payments", 200, nil, nil),
		entry("payments", 200, nil, nil),
		entry("payments", 200, map[string]string{"grpc-status": "0"}, nil),
		entry("payments", 503, nil, nil),
		entry("payments", 500, nil, nil),
		entry("payments", 200, map[string]string{"grpc-status": "14"}, nil),                          // UNAVAILABLE
		entry("payments", 503, nil, &accesslogdatav3.ResponseFlags{UpstreamConnectionFailure: true}), // connection error
		entry("payments", 503, nil, &accesslogdatav3.ResponseFlags{FaultInjected: true}),             // the breaker's own abort
		entry("colony:sidecar", 200, nil, nil),                                                       // not a callee
	}
	stream, err := accesslogv3.NewAccessLogServiceClient(dialSidecar(t, s.Addr())).StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&accesslogv3.StreamAccessLogsMessage{
		Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "checkout/c1"}, LogName: "colony"},
		LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := admin.GetBreaker(context.Background(), "checkout", "payments", 0)
		if err == nil && info.Live.Calls+info.Live.Rejected > 0 {
			ev := info.Live
			if ev.Successes != 3 || ev.Failures != 4 || ev.Rejected != 1 {
				t.Fatalf("live window %+v: want 3 successes, 4 failures (503, 500, UNAVAILABLE, connection failure), 1 rejected", ev)
			}
			// 4 calls at 20 ms, one at 50 ms (500), two at 50.3 ms (503,
			// just over the 50 ms bound); the abort has no latency.
			want := breaker.Latency{}
			want[breaker.LatencyBucket(20*time.Millisecond)] = 4
			want[breaker.LatencyBucket(50*time.Millisecond)] = 1
			want[breaker.LatencyBucket(51*time.Millisecond)] = 2
			if ev.Latency != want {
				t.Fatalf("live latency %v, want %v", ev.Latency, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the access log outcomes never reached the coordinator: %+v %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
