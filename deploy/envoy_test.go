package deploy_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	// The typed configs the bootstrap's Anys name, for protojson.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"

	"github.com/colonymesh/colony/tests/support/envoycheck"
	"github.com/colonymesh/colony/xds"
)

// bootstrapFile is the Envoy bootstrap shared by Kubernetes (a ConfigMap
// generated from it) and docker-compose (a bind mount).
var bootstrapFile = filepath.Join("k8s", "sample-app", "envoy.yaml")

// envoyFacts is what the rest of a deployment must agree with.
type envoyFacts struct {
	sidecar   netip.AddrPort   // the endpoint of the ADS and access log cluster
	adminPort int              // 0 without admin
	listeners map[int]string   // static listener port -> name
	ready     map[int][]string // static listener port -> paths answered 200 directly
	nodeID    string           // from the file; --service-node replaces it
}

// loadBootstrap decodes an Envoy bootstrap (YAML) strictly into Envoy's v3
// proto, validates it and every typed config in it (protoc-gen-validate
// rules, as Envoy applies them), and checks that it takes its
// configuration from a Colony sidecar the way the sidecar serves it.
func loadBootstrap(t reporter, where string, data []byte) envoyFacts {
	t.Helper()
	b, err := envoycheck.DecodeBootstrap(data)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	f := envoyFacts{listeners: map[int]string{}, ready: map[int][]string{}, nodeID: b.GetNode().GetId()}

	// The sidecar tells Envoys from proxyless gRPC clients by the node's
	// user agent, which Envoy sets to "envoy".
	if ua := b.GetNode().GetUserAgentName(); ua != "" && ua != "envoy" {
		t.Errorf("%s: node.user_agent_name %q: the sidecar serves Envoy's listener only to user agent \"envoy\"", where, ua)
	}

	// ADS to the sidecar, for listeners and clusters only.
	dr := b.GetDynamicResources()
	ads := dr.GetAdsConfig()
	if ads.GetApiType() != corev3.ApiConfigSource_GRPC || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("%s: ads_config: want api_type GRPC, transport_api_version V3", where)
	}
	if len(ads.GetGrpcServices()) != 1 || ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() == "" {
		t.Fatalf("%s: ads_config: want one envoy_grpc service", where)
	}
	adsCluster := ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	for name, cs := range map[string]*corev3.ConfigSource{"lds_config": dr.GetLdsConfig(), "cds_config": dr.GetCdsConfig()} {
		if cs.GetAds() == nil || cs.GetResourceApiVersion() != corev3.ApiVersion_V3 {
			t.Errorf("%s: dynamic_resources.%s: want ads: {} with resource_api_version V3", where, name)
		}
	}
	if dr.GetAdsConfig().GetSetNodeOnFirstMessageOnly() {
		// Harmless for go-control-plane, but the sidecar's tracker reads the node per request.
		t.Logf("%s: set_node_on_first_message_only is set", where)
	}
	// The sidecar serves LDS, RDS, CDS and EDS only; asking it for another
	// type over the ADS stream (RTDS, SDS) closes the stream.
	for _, l := range b.GetLayeredRuntime().GetLayers() {
		if l.GetRtdsLayer() != nil {
			t.Errorf("%s: layered_runtime asks for RTDS, which the sidecar does not serve", where)
		}
	}
	if len(b.GetStaticResources().GetSecrets()) > 0 {
		t.Logf("%s: static secrets present", where)
	}

	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	// The sidecar's egress listener logs to xds.DefaultAccessLogCluster
	// (the sidecar does not set AccessLogAddr, so the bootstrap defines
	// it); ADS uses the same cluster: both are the sidecar's --listen.
	if adsCluster != xds.DefaultAccessLogCluster {
		t.Errorf("%s: ADS uses cluster %q; want the sidecar's cluster %q, which the access logs use too", where, adsCluster, xds.DefaultAccessLogCluster)
	}
	c, ok := clusters[xds.DefaultAccessLogCluster]
	if !ok {
		t.Fatalf("%s: no static cluster %q: Envoy could not reach the sidecar for ADS and access logs", where, xds.DefaultAccessLogCluster)
	}
	if c.GetType() != clusterv3.Cluster_STATIC {
		t.Errorf("%s: cluster %q: type %v, want STATIC (an IP on loopback)", where, c.GetName(), c.GetType())
	}
	// gRPC needs HTTP/2 to the sidecar.
	h2 := false
	if a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; ok {
		var po httpv3.HttpProtocolOptions
		if err := a.UnmarshalTo(&po); err == nil && po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil {
			h2 = true
		}
	}
	if !h2 {
		t.Errorf("%s: cluster %q: want explicit HTTP/2 (HttpProtocolOptions.explicit_http_config.http2_protocol_options) for gRPC", where, c.GetName())
	}
	var eps []netip.AddrPort
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, ep := range le.GetLbEndpoints() {
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			ap, err := netip.ParseAddrPort(fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
			if err != nil {
				t.Errorf("%s: cluster %q: endpoint %v: %v", where, c.GetName(), sa, err)
				continue
			}
			eps = append(eps, ap)
		}
	}
	if len(eps) != 1 || !eps[0].Addr().IsLoopback() {
		t.Fatalf("%s: cluster %q: endpoints %v, want the sidecar on loopback", where, c.GetName(), eps)
	}
	f.sidecar = eps[0]

	if sa := b.GetAdmin().GetAddress().GetSocketAddress(); sa != nil {
		f.adminPort = int(sa.GetPortValue())
		if a, err := netip.ParseAddr(sa.GetAddress()); err != nil || !a.IsLoopback() {
			t.Errorf("%s: admin on %q: keep Envoy's admin API on loopback", where, sa.GetAddress())
		}
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		p := int(l.GetAddress().GetSocketAddress().GetPortValue())
		if other, dup := f.listeners[p]; dup {
			t.Errorf("%s: listeners %q and %q on port %d", where, other, l.GetName(), p)
		}
		f.listeners[p] = l.GetName()
		if strings.HasPrefix(l.GetName(), "colony:egress") {
			t.Errorf("%s: static listener %q: the egress listener comes from the sidecar", where, l.GetName())
		}
		for _, fc := range l.GetFilterChains() {
			for _, fl := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if fl.GetTypedConfig().MessageIs(&hcm) && fl.GetTypedConfig().UnmarshalTo(&hcm) == nil {
					for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
						for _, r := range vh.GetRoutes() {
							if dr := r.GetDirectResponse(); dr != nil && dr.GetStatus() == 200 && r.GetMatch().GetPath() != "" {
								f.ready[p] = append(f.ready[p], r.GetMatch().GetPath())
							}
						}
					}
				}
			}
		}
	}
	if _, clash := f.listeners[f.adminPort]; clash && f.adminPort != 0 {
		t.Errorf("%s: admin and a listener on port %d", where, f.adminPort)
	}
	return f
}

func TestEnvoyBootstrap(t *testing.T) {
	data, err := os.ReadFile(bootstrapFile)
	if err != nil {
		t.Fatal(err)
	}
	f := loadBootstrap(t, bootstrapFile, data)
	if len(f.ready) == 0 {
		t.Errorf("%s: no static listener answers a readiness path", bootstrapFile)
	}
	t.Logf("sidecar at %v, admin on %d, listeners %v, ready paths %v", f.sidecar, f.adminPort, f.listeners, f.ready)
}

// TestEnvoyBootstrapRejects makes sure the bootstrap checks can fail: a
// misspelt field, a value out of range in a typed config, and a bootstrap
// without the sidecar's cluster.
func TestEnvoyBootstrapRejects(t *testing.T) {
	data, err := os.ReadFile(bootstrapFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"unknown field", "connect_timeout: 1s", "connect_timeout: 1s\n      conect_timeout: 1s"},
		{"invalid typed config", "status: 200", "status: 20"},
		{"no sidecar cluster", `"colony:sidecar"`, `"sidecar"`},
		{"sidecar not on loopback", "address: 127.0.0.1, port_value: 7500", "address: 10.0.0.1, port_value: 7500"},
		{"HTTP/1 to the sidecar", "http2_protocol_options: {}", "http_protocol_options: {}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edited := strings.ReplaceAll(string(data), tc.old, tc.new)
			if edited == string(data) {
				t.Fatalf("%q is not in %s", tc.old, bootstrapFile)
			}
			if errs := failures(func(r reporter) { loadBootstrap(r, tc.name, []byte(edited)) }); len(errs) == 0 {
				t.Error("accepted")
			} else {
				t.Logf("rejected: %s", errs[0])
			}
		})
	}
}
