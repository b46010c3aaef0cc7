package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
	"github.com/colonymesh/colony/xds"
)

// TestEnvoyLegProbeGate: in HALF_OPEN, the Envoy of the walkthrough sends
// the probe holder's calls to the sidecar's probe gate. The client that
// presents itself as that Envoy gets an egress route to the gate's cluster
// (no fault), the cluster (EDS, each call forwarded in the protocol it came
// in) and its one endpoint, the sidecar's gate; calls forwarded there as
// Envoy forwards an HTTP/1.1 call reach the callee up to the instance's
// permits, the rest get 503 with the breaker header, and the probes'
// successes close the pair.
func TestEnvoyLegProbeGate(t *testing.T) {
	b := loadBootstrap(t)
	service, instance, _ := strings.Cut(b.node.GetId(), "/")
	srv := coordinatortest.StartNode(t).Addr()
	admin := newClient(t, srv)
	applyPolicyFile(t, admin, "policy.yaml")
	cal, svcAddr, _ := startCallee(t)
	startSidecar(t, sidecar.Config{Service: "catalog", Instance: "k1", Protocol: "http", Address: svcAddr, Coordinators: []string{srv}})
	sc := startSidecar(t, sidecar.Config{Service: service, Instance: instance, Address: "127.0.0.1:9303",
		Callees: []string{"catalog"}, Coordinators: []string{srv}, ReportInterval: 50 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(sc.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := proto.Clone(b.node).(*corev3.Node)
	node.UserAgentName = "envoy"
	ads := &adsClient{t: t, stream: stream, node: node}
	catalogRoute := func(rc *routev3.RouteConfiguration) *routev3.Route {
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() == "catalog" && len(vh.GetRoutes()) == 1 {
				return vh.GetRoutes()[0]
			}
		}
		return nil
	}
	rc := only(t, ads.fetch(resourcev3.RouteType, xds.EgressRouteName), &routev3.RouteConfiguration{})

	// Trip the pair with this instance's failures, as Envoy's access logs
	// would report them; after the open duration it goes HALF_OPEN with
	// this instance holding the permits.
	for !slices.ContainsFunc(sc.View().Callees, func(c sidecar.Callee) bool { return c.Name == "catalog" && len(c.Endpoints) == 1 }) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := sc.Report("catalog", breaker.Counts{Failures: 20, TrailingFailures: 20}); err != nil {
		t.Fatal(err)
	}
	for r := catalogRoute(rc); r.GetRoute().GetCluster() != xds.ProbeGateCluster; r = catalogRoute(rc) {
		if ctx.Err() != nil {
			t.Fatalf("no route to the probe gate; last route %v", r)
		}
		rc = only(t, ads.next(resourcev3.RouteType, xds.EgressRouteName), &routev3.RouteConfiguration{})
	}
	r := catalogRoute(rc)
	if len(r.GetTypedPerFilterConfig()) != 0 || !strings.Contains(r.GetName(), "state=HALF_OPEN") {
		t.Errorf("HALF_OPEN route %q: %v, want no fault", r.GetName(), r.GetTypedPerFilterConfig())
	}
	var permits int
	for _, c := range sc.View().Callees {
		if c.Name == "catalog" && c.Record != nil {
			permits = c.Record.Probes[instance]
		}
	}
	t.Logf("HALF_OPEN: route %q to %s; %d permits here", r.GetName(), xds.ProbeGateCluster, permits)

	// CDS and EDS: the gate's cluster and its endpoint, the sidecar's gate.
	var gateCluster *clusterv3.Cluster
	for _, a := range ads.fetch(resourcev3.ClusterType).GetResources() {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		if c.GetName() == xds.ProbeGateCluster {
			gateCluster = &c
		}
	}
	if gateCluster == nil {
		t.Fatalf("no cluster %s", xds.ProbeGateCluster)
	}
	var opts upstreamhttpv3.HttpProtocolOptions
	if a := gateCluster.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a == nil || a.UnmarshalTo(&opts) != nil || opts.GetUseDownstreamProtocolConfig() == nil {
		t.Errorf("gate cluster: want Envoy to forward each call in its downstream protocol, got %v", gateCluster.GetTypedExtensionProtocolOptions())
	}
	cla := only(t, ads.fetch(resourcev3.EndpointType, xds.ProbeGateCluster), &endpointv3.ClusterLoadAssignment{})
	sa := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	gate := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
	if gate != sc.View().ProbeGate {
		t.Fatalf("gate endpoint %s, want the sidecar's gate %s", gate, sc.View().ProbeGate)
	}

	// Envoy forwards the caller's calls to the gate over HTTP/1.1, with
	// the caller's Host.
	reached := cal.requests.Load()
	var passed, rejected int
	for range permits + 3 {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+gate+"/items", nil)
		req.Host = "catalog"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch h := resp.Header.Get(xds.DefaultBreakerHeader); {
		case resp.StatusCode == http.StatusOK:
			passed++
		case resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(h, "state=HALF_OPEN"):
			rejected++
		default:
			t.Fatalf("call through the gate: %d, %s=%q", resp.StatusCode, xds.DefaultBreakerHeader, h)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	if got := cal.requests.Load() - reached; passed != permits || got != int64(permits) || rejected != 3 {
		t.Errorf("through the gate: %d passed, %d rejected, %d reached the callee; want the %d permits", passed, rejected, got, permits)
	}
	for {
		rec := breakerRecord(t, admin, service, "catalog")
		if rec.State == breaker.Closed {
			t.Logf("closed on the gate's probes: %s, generation %d", rec.Cause, rec.Generation)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the pair did not close on %d successful probes: %+v", passed, rec)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
