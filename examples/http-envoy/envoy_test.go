package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	// Typed configs that the bootstrap's and the sidecar's Anys name, for
	// protojson and UnmarshalNew.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/sidecar/guard"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
	"github.com/colonymesh/colony/tests/support/envoycheck"
	"github.com/colonymesh/colony/xds"
)

// Envoy is not installed where this example was written (no Debian
// package, no download), so the Envoy leg is checked structurally: the
// bootstrap is decoded strictly with Envoy's v3 proto and validated with
// Envoy's validation rules, and what a real sidecar serves to a client that
// presents itself as this Envoy is checked the same way and against the
// bootstrap. Nothing here proves that Envoy accepts and applies it.

const bootstrapFile = "envoy.yaml"

// bootstrap is what the test learns from envoy.yaml.
type bootstrap struct {
	node           *corev3.Node
	sidecar        netip.AddrPort      // the endpoint of the ADS cluster
	staticClusters map[string]struct{} // by name
}

// loadBootstrap decodes the bootstrap strictly (an unknown field is an
// error), validates it and every typed config packed in it, and checks that
// it takes its configuration from a Colony sidecar over ADS.
func loadBootstrap(t *testing.T) bootstrap {
	t.Helper()
	data, err := os.ReadFile(bootstrapFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := envoycheck.DecodeBootstrap(data)
	if err != nil {
		t.Fatalf("%s: %v", bootstrapFile, err)
	}
	out := bootstrap{node: b.GetNode(), staticClusters: map[string]struct{}{}}

	dr := b.GetDynamicResources()
	ads := dr.GetAdsConfig()
	if ads.GetApiType() != corev3.ApiConfigSource_GRPC || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("ads_config: want api_type GRPC, transport_api_version V3")
	}
	if len(ads.GetGrpcServices()) != 1 {
		t.Fatalf("ads_config: want one gRPC service, the sidecar")
	}
	adsCluster := ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	for name, cs := range map[string]*corev3.ConfigSource{"lds_config": dr.GetLdsConfig(), "cds_config": dr.GetCdsConfig()} {
		if cs.GetAds() == nil || cs.GetResourceApiVersion() != corev3.ApiVersion_V3 {
			t.Errorf("dynamic_resources.%s: want ads: {} with resource_api_version V3", name)
		}
	}
	// The egress listener's access logs go to xds.DefaultAccessLogCluster
	// (`colony sidecar` does not serve that cluster itself), and ADS uses
	// the same one: both are the sidecar's --listen.
	if adsCluster != xds.DefaultAccessLogCluster {
		t.Errorf("ADS uses cluster %q, want %q", adsCluster, xds.DefaultAccessLogCluster)
	}
	// Load reports go to the sidecar too (the same cluster as ADS).
	lsc := b.GetClusterManager().GetLoadStatsConfig()
	if lsc.GetApiType() != corev3.ApiConfigSource_GRPC || lsc.GetTransportApiVersion() != corev3.ApiVersion_V3 ||
		len(lsc.GetGrpcServices()) != 1 || lsc.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != adsCluster {
		t.Errorf("cluster_manager.load_stats_config %v: want api_type GRPC, transport_api_version V3, the sidecar's cluster %q", lsc, adsCluster)
	}
	var sc *clusterv3.Cluster
	for _, c := range b.GetStaticResources().GetClusters() {
		out.staticClusters[c.GetName()] = struct{}{}
		if c.GetName() == adsCluster {
			sc = c
		}
	}
	if sc == nil {
		t.Fatalf("no static cluster %q for ADS", adsCluster)
	}
	var po httpv3.HttpProtocolOptions
	if a := sc.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a == nil ||
		a.UnmarshalTo(&po) != nil || po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster %q: want explicit HTTP/2 (gRPC)", sc.GetName())
	}
	eps := sc.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		t.Fatalf("cluster %q: want one endpoint, the sidecar", sc.GetName())
	}
	sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	out.sidecar, err = netip.ParseAddrPort(fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
	if err != nil || !out.sidecar.Addr().IsLoopback() {
		t.Fatalf("cluster %q: endpoint %v: want the sidecar on loopback (%v)", sc.GetName(), sa, err)
	}
	if a := b.GetAdmin().GetAddress().GetSocketAddress(); a != nil && a.GetAddress() != "127.0.0.1" {
		t.Errorf("admin on %s: keep Envoy's admin API on loopback", a.GetAddress())
	}
	if len(b.GetStaticResources().GetListeners()) > 0 {
		t.Errorf("static listeners: the egress listener comes from the sidecar")
	}
	return out
}

// adsClient speaks state-of-the-world ADS the way Envoy does, by hand.
type adsClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
}

// fetch subscribes to a type (names empty: wildcard), returns the first
// response and ACKs it.
func (c *adsClient) fetch(typeURL string, names ...string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names}
	if c.node != nil {
		req.Node, c.node = c.node, nil // the node goes with the first request
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
	return c.next(typeURL, names...)
}

// next waits for the next response of a type, ACKing every response.
func (c *adsClient) next(typeURL string, names ...string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			c.t.Fatal(err)
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if resp.GetTypeUrl() == typeURL {
			ack.ResourceNames = names
		}
		if err := c.stream.Send(ack); err != nil {
			c.t.Fatal(err)
		}
		if resp.GetTypeUrl() == typeURL {
			return resp
		}
	}
}

// only decodes the single resource of a response into m and validates it
// as Envoy would.
func only[M proto.Message](t *testing.T, resp *discoveryv3.DiscoveryResponse, m M) M {
	t.Helper()
	if len(resp.GetResources()) != 1 {
		t.Fatalf("%s: %d resources, want 1", resp.GetTypeUrl(), len(resp.GetResources()))
	}
	if err := resp.GetResources()[0].UnmarshalTo(m); err != nil {
		t.Fatal(err)
	}
	if err := envoycheck.ValidateDeep(m); err != nil {
		t.Fatalf("%s: invalid: %v", resp.GetTypeUrl(), err)
	}
	return m
}

// TestEnvoyLeg checks the Envoy leg of the walkthrough without Envoy: the
// bootstrap is valid and points at the sidecar the README starts for it, and
// a real sidecar, as `colony sidecar` builds it, serves the client that
// presents itself as that Envoy an egress listener that routes Host:
// catalog to the callee's registered address, whose access logs go to a
// cluster the bootstrap defines, and, when the breaker is OPEN, routes that
// abort with 503 and the breaker header the caller recognises.
func TestEnvoyLeg(t *testing.T) {
	b := loadBootstrap(t)

	// The README runs the sidecar this Envoy talks to, and the caller that
	// sends its calls to Envoy.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	service, instance, _ := strings.Cut(b.node.GetId(), "/")
	for _, want := range []string{
		fmt.Sprintf("--service %s --instance %s", service, instance),
		fmt.Sprintf("--listen %s", b.sidecar),
		"envoy -c examples/http-envoy/" + bootstrapFile,
		"--via-envoy " + xds.DefaultEgressAddr,
	} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md does not run %q, which %s relies on", want, bootstrapFile)
		}
	}
	if b.node.GetCluster() != service {
		t.Errorf("node.cluster %q, want the service %q", b.node.GetCluster(), service)
	}

	srv := coordinatortest.StartNode(t)
	admin := newClient(t, srv.Addr())
	const calleeAddr = "127.0.0.1:9201" // registered, never called
	startSidecar(t, sidecar.Config{Service: "catalog", Instance: "k1", Protocol: "http", Address: calleeAddr, Coordinators: []string{srv.Addr()}})
	sc := startSidecar(t, sidecar.Config{Service: service, Instance: instance, Address: "127.0.0.1:9303",
		Callees: []string{"catalog"}, Coordinators: []string{srv.Addr()}})
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(sc.View().Callees, func(c sidecar.Callee) bool { return c.Name == "catalog" && len(c.Endpoints) == 1 }) {
		if time.Now().After(deadline) {
			t.Fatalf("the sidecar never saw the callee's registration: %+v", sc.View())
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
	// Envoy sends the bootstrap's node with its own user agent, "envoy",
	// by which the sidecar tells it from proxyless gRPC clients.
	node := proto.Clone(b.node).(*corev3.Node)
	node.UserAgentName = "envoy"
	ads := &adsClient{t: t, stream: stream, node: node}

	// LDS: the egress listener, on the address the caller's --via-envoy
	// uses.
	l := only(t, ads.fetch(resourcev3.ListenerType), &listenerv3.Listener{})
	if l.GetName() != xds.EgressListenerName {
		t.Fatalf("listener %q, want %q", l.GetName(), xds.EgressListenerName)
	}
	la := l.GetAddress().GetSocketAddress()
	if got := fmt.Sprintf("%s:%d", la.GetAddress(), la.GetPortValue()); got != xds.DefaultEgressAddr {
		t.Errorf("egress listener on %s, want %s", got, xds.DefaultEgressAddr)
	}
	var hcm hcmv3.HttpConnectionManager
	if fs := l.GetFilterChains(); len(fs) != 1 || len(fs[0].GetFilters()) != 1 || fs[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm) != nil {
		t.Fatalf("egress listener: want one HTTP connection manager")
	}
	if hcm.GetRds().GetRouteConfigName() != xds.EgressRouteName || hcm.GetRds().GetConfigSource().GetAds() == nil {
		t.Errorf("egress routes: %v, want RDS %q over ADS", hcm.GetRds(), xds.EgressRouteName)
	}
	for _, al := range hcm.GetAccessLog() {
		var als grpcalsv3.HttpGrpcAccessLogConfig
		if al.GetTypedConfig().UnmarshalTo(&als) != nil {
			t.Fatalf("access log %q: not a gRPC access log", al.GetName())
		}
		cluster := als.GetCommonConfig().GetGrpcService().GetEnvoyGrpc().GetClusterName()
		if _, ok := b.staticClusters[cluster]; !ok {
			t.Errorf("the egress listener logs to cluster %q, which %s does not define", cluster, bootstrapFile)
		}
	}
	var breakerHeader bool
	for _, m := range hcm.GetLocalReplyConfig().GetMappers() {
		for _, h := range m.GetHeadersToAdd() {
			breakerHeader = breakerHeader || h.GetHeader().GetKey() == guard.BreakerHeader
		}
	}
	if !breakerHeader {
		t.Errorf("the egress listener does not add %s to its fault replies: the caller could not tell a rejection from a failure", guard.BreakerHeader)
	}

	// CDS: the callee's cluster and the probe gate's, and none that
	// clashes with a static one (Envoy would reject it).
	cds := ads.fetch(resourcev3.ClusterType)
	var clusters []string
	for _, a := range cds.GetResources() {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		if err := envoycheck.ValidateDeep(&c); err != nil {
			t.Fatalf("cluster %s: %v", c.GetName(), err)
		}
		if _, clash := b.staticClusters[c.GetName()]; clash {
			t.Errorf("the sidecar serves cluster %q, which %s defines statically", c.GetName(), bootstrapFile)
		}
		if c.GetName() == "catalog" && c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			t.Errorf("cluster catalog: want EDS over ADS, got %v", c.GetEdsClusterConfig())
		}
		clusters = append(clusters, c.GetName())
	}
	slices.Sort(clusters)
	if want := []string{"catalog", xds.ProbeGateCluster}; !slices.Equal(clusters, want) {
		t.Errorf("clusters %v, want %v", clusters, want)
	}

	// EDS: the callee's registered address.
	cla := only(t, ads.fetch(resourcev3.EndpointType, "catalog"), &endpointv3.ClusterLoadAssignment{})
	var eps []string
	for _, le := range cla.GetEndpoints() {
		for _, ep := range le.GetLbEndpoints() {
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			eps = append(eps, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	if !slices.Equal(eps, []string{calleeAddr}) {
		t.Errorf("catalog's endpoints %v, want [%s]", eps, calleeAddr)
	}

	// RDS: Host: catalog goes to cluster catalog, with no fault while the
	// breaker is CLOSED.
	route := func(rc *routev3.RouteConfiguration) (*routev3.Route, *faultv3.HTTPFault) {
		t.Helper()
		i := slices.IndexFunc(rc.GetVirtualHosts(), func(vh *routev3.VirtualHost) bool { return vh.GetName() == "catalog" })
		if i < 0 {
			t.Fatalf("egress routes: no virtual host for catalog: %v", rc)
		}
		vh := rc.GetVirtualHosts()[i]
		if !slices.Contains(vh.GetDomains(), "catalog") {
			t.Errorf("virtual host catalog: domains %v do not match the caller's Host header", vh.GetDomains())
		}
		if len(vh.GetRoutes()) != 1 || vh.GetRoutes()[0].GetRoute().GetCluster() != "catalog" || vh.GetRoutes()[0].GetMatch().GetPrefix() != "/" {
			t.Fatalf("virtual host catalog: want one route, / to cluster catalog: %v", vh.GetRoutes())
		}
		r := vh.GetRoutes()[0]
		a, ok := r.GetTypedPerFilterConfig()[wellknown.Fault]
		if !ok {
			return r, nil
		}
		var f faultv3.HTTPFault
		if err := a.UnmarshalTo(&f); err != nil {
			t.Fatal(err)
		}
		return r, &f
	}
	rc := only(t, ads.fetch(resourcev3.RouteType, xds.EgressRouteName), &routev3.RouteConfiguration{})
	if r, f := route(rc); f != nil {
		t.Errorf("CLOSED: route %q has a fault %v", r.GetName(), f)
	}

	// OPEN (forced by an operator, as `colony breaker force-open` does): the
	// sidecar pushes routes that abort every call with 503.
	if _, err := admin.SetOverride(ctx, service, "catalog", breaker.ForceOpen, "envoy leg test", "test", 0); err != nil {
		t.Fatal(err)
	}
	for {
		rc = only(t, ads.next(resourcev3.RouteType, xds.EgressRouteName), &routev3.RouteConfiguration{})
		r, f := route(rc)
		if f == nil {
			continue // an update before the override's
		}
		abort := f.GetAbort()
		if abort.GetHttpStatus() != 503 || abort.GetPercentage().GetNumerator() != 100 {
			t.Errorf("OPEN: fault %v, want abort 503 for 100%% of calls", f)
		}
		if !strings.HasPrefix(r.GetName(), service+"->catalog; state=OPEN") {
			t.Errorf("OPEN: route name %q: Envoy copies it into %s", r.GetName(), guard.BreakerHeader)
		}
		t.Logf("OPEN: route %q aborts %d%% with %d", r.GetName(), abort.GetPercentage().GetNumerator(), abort.GetHttpStatus())
		break
	}
}
