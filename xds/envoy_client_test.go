package xds

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/colonymesh/colony/breaker"
)

// These tests speak ADS the way Envoy does (node user agent "envoy",
// wildcard listeners and clusters), with a hand-driven client: Envoy itself
// is not installed here. They check what Envoy is sent and that its ACKs and
// NACKs are tracked.

var envoyNode = &corev3.Node{Id: "envoy-1", Cluster: "checkout", UserAgentName: "envoy"}

func dialRaw(t *testing.T, addr string) discoveryv3.AggregatedDiscoveryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
}

func names(t *testing.T, list []*anypb.Any) []string {
	t.Helper()
	var out []string
	for _, a := range list {
		out = append(out, resourceName(a.GetValue()))
	}
	slices.Sort(out)
	return out
}

func envoyState(b *breaker.PairRecord) State {
	st := testState(GRPC, b)
	st.Callees[0].Endpoints = []Endpoint{{Instance: "payments-1", Address: "127.0.0.1", Port: 50051}}
	st.Callees[1].Endpoints = []Endpoint{{Instance: "ledger-1", Address: "127.0.0.1", Port: 50052}}
	return st
}

func TestEnvoyNodeStateOfTheWorld(t *testing.T) {
	nacks := make(chan NACK, 4)
	s, addr := startServer(t, Config{AccessLogAddr: "127.0.0.1:7500", OnNACK: func(n NACK) { nacks <- n }})
	if err := s.Update(envoyState(nil)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := dialRaw(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(req *discoveryv3.DiscoveryRequest) {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(typeURL string) *discoveryv3.DiscoveryResponse {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetTypeUrl() != typeURL {
			t.Fatalf("got a %s response, want %s", resp.GetTypeUrl(), typeURL)
		}
		return resp
	}
	ack := func(resp *discoveryv3.DiscoveryResponse, resourceNames ...string) {
		t.Helper()
		send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(),
			ResponseNonce: resp.GetNonce(), ResourceNames: resourceNames})
	}

	// Wildcard listeners: Envoy gets the egress listener only, never the
	// proxyless clients' api_listeners.
	send(&discoveryv3.DiscoveryRequest{Node: envoyNode, TypeUrl: resourcev3.ListenerType})
	lds := recv(resourcev3.ListenerType)
	if got := names(t, lds.GetResources()); !slices.Equal(got, []string{EgressListenerName}) {
		t.Errorf("Envoy's listeners: %v, want only %s", got, EgressListenerName)
	}
	ack(lds)
	// Wildcard clusters: every callee and the access log cluster.
	send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	cds := recv(resourcev3.ClusterType)
	if got := names(t, cds.GetResources()); !slices.Equal(got, []string{DefaultAccessLogCluster, "ledger", "payments"}) {
		t.Errorf("Envoy's clusters: %v", got)
	}
	ack(cds)
	send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNames: []string{EgressRouteName}})
	rds := recv(resourcev3.RouteType)
	if got := names(t, rds.GetResources()); !slices.Equal(got, []string{EgressRouteName}) {
		t.Errorf("Envoy's routes: %v", got)
	}
	ack(rds, EgressRouteName)

	// A flip sends the egress routes, with the override, and nothing else.
	if err := s.Update(envoyState(record(breaker.Open, 2, nil))); err != nil {
		t.Fatal(err)
	}
	rds = recv(resourcev3.RouteType)
	rc := &routev3.RouteConfiguration{}
	if err := rds.GetResources()[0].UnmarshalTo(rc); err != nil {
		t.Fatal(err)
	}
	if f := faultOf(t, findVH(t, rc, "payments")); f.GetAbort().GetPercentage().GetNumerator() != 100 {
		t.Errorf("egress routes after OPEN: fault %v, want abort 100%%", f)
	}
	ack(rds, EgressRouteName)
	st := waitStatus(t, s, 500, "Envoy enforces generation 2", func(st Status) bool {
		_, ok := enforcedBy(st, "payments", 2, "envoy-1")
		return ok
	})
	c, _ := clientOf(st, "envoy-1")
	if !c.Envoy || c.Types["LDS"].Sent != 1 || c.Types["CDS"].Sent != 1 || c.Types["RDS"].Sent != 2 {
		t.Errorf("Envoy client %+v: want 1 LDS, 1 CDS and 2 RDS responses", c)
	}

	// Envoy NACKs the next routes: recorded with the resource and reason,
	// and the transition they carry is not enforced.
	if err := s.Update(envoyState(record(breaker.Closed, 3, nil))); err != nil {
		t.Fatal(err)
	}
	rds3 := recv(resourcev3.RouteType)
	send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.RouteType, VersionInfo: rds.GetVersionInfo(),
		ResponseNonce: rds3.GetNonce(), ResourceNames: []string{EgressRouteName},
		ErrorDetail: &status.Status{Code: 3, Message: "route: unknown cluster"}})
	var n NACK
	select {
	case n = <-nacks:
	case <-ctx.Done():
		t.Fatal("no NACK")
	}
	if n.Type != "RDS" || n.Version != rds3.GetVersionInfo() || !slices.Equal(n.Resources, []string{EgressRouteName}) ||
		n.Reason != "route: unknown cluster" || n.NodeID != "envoy-1" {
		t.Errorf("NACK %+v", n)
	}
	st = s.Status()
	c, _ = clientOf(st, "envoy-1")
	if c.LastNACK == nil || c.Types["RDS"].Nacked != 1 || c.Types["RDS"].LastAcked != rds.GetVersionInfo() {
		t.Errorf("Envoy client after the NACK: %+v", c)
	}
	if _, ok := enforcedBy(st, "payments", 3, "envoy-1"); ok {
		t.Errorf("generation 3 counted as enforced by a client that NACKed it")
	}
}

func TestEnvoyNodeDelta(t *testing.T) {
	s, addr := startServer(t, Config{})
	if err := s.Update(envoyState(nil)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := dialRaw(t, addr).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(req *discoveryv3.DeltaDiscoveryRequest) *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		if req != nil {
			if err := stream.Send(req); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		// ACK it.
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	lds := exchange(&discoveryv3.DeltaDiscoveryRequest{Node: envoyNode, TypeUrl: resourcev3.ListenerType})
	if len(lds.GetResources()) != 1 || lds.GetResources()[0].GetName() != EgressListenerName {
		t.Errorf("delta listeners: %v, want only %s", lds.GetResources(), EgressListenerName)
	}
	rds := exchange(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNamesSubscribe: []string{EgressRouteName}})
	if len(rds.GetResources()) != 1 {
		t.Fatalf("delta routes: %v", rds.GetResources())
	}
	if err := s.Update(envoyState(record(breaker.Open, 2, nil))); err != nil {
		t.Fatal(err)
	}
	rds = exchange(nil)
	if rds.GetTypeUrl() != resourcev3.RouteType || len(rds.GetResources()) != 1 {
		t.Fatalf("after the flip: %v", rds)
	}
	st := waitStatus(t, s, 500, "delta Envoy enforces generation 2", func(st Status) bool {
		_, ok := enforcedBy(st, "payments", 2, "envoy-1")
		return ok
	})
	c, _ := clientOf(st, "envoy-1")
	if !c.Delta || !slices.Equal(c.Types["RDS"].Subscribed, []string{EgressRouteName}) || c.Types["LDS"].Sent != 1 {
		t.Errorf("delta client %+v", c)
	}
}

// TestRegisterOnSidecarServer serves ADS on a gRPC server the sidecar owns:
// Close ends the streams, the sidecar stops its server.
func TestRegisterOnSidecarServer(t *testing.T) {
	s, err := NewServer(Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(envoyState(nil)); err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	s.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	defer func() {
		gs.Stop()
		<-done
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := dialRaw(t, lis.Addr().String()).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: envoyNode, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.GetVersionInfo(), s.VersionPrefix()) {
		t.Errorf("version %q does not start with the server's prefix %q", resp.GetVersionInfo(), s.VersionPrefix())
	}
	s.Close()
	if _, err := stream.Recv(); err == nil {
		t.Fatal("stream still open after Close")
	}
}

func TestVersionPrefixUniquePerServer(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		s, err := NewServer(Config{})
		if err != nil {
			t.Fatal(err)
		}
		p := s.VersionPrefix()
		s.Close()
		if p == "" || seen[p] {
			t.Fatalf("version prefix %q empty or reused", p)
		}
		seen[p] = true
	}
	s, err := NewServer(Config{VersionPrefix: "fixed-"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.VersionPrefix() != "fixed-" {
		t.Errorf("VersionPrefix() = %q, want the configured one", s.VersionPrefix())
	}
}
