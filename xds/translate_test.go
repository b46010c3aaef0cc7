package xds

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/colonymesh/colony/breaker"
)

var t0 = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)

func record(state breaker.State, gen uint64, probes map[string]int) *breaker.PairRecord {
	return &breaker.PairRecord{
		Caller: "checkout", Callee: "payments",
		Record: breaker.Record{State: state, Generation: gen, Since: t0, Probes: probes},
	}
}

func testState(p Protocol, b *breaker.PairRecord) State {
	return State{
		Caller:   "checkout",
		Instance: "checkout-1",
		Callees: []Callee{
			{
				Name: "payments", Protocol: p, Breaker: b,
				Endpoints: []Endpoint{
					{Instance: "payments-1", Address: "10.0.0.1", Port: 8080, Zone: "a"},
					{Instance: "payments-2", Address: "10.0.0.2", Port: 8080, Zone: "b"},
					{Instance: "payments-3", Address: "10.0.0.3", Port: 8080, Zone: "a"},
				},
			},
			{
				Name: "ledger", Protocol: HTTP,
				Endpoints: []Endpoint{{Instance: "ledger-1", Address: "10.0.1.1", Port: 9090}},
			},
		},
	}
}

func mustTranslate(t *testing.T, cfg Config, st State) Resources {
	t.Helper()
	res, err := Translate(cfg, st)
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	return res
}

func findRoute(t *testing.T, res Resources, name string) *routev3.RouteConfiguration {
	t.Helper()
	for _, r := range res.Routes {
		if r.GetName() == name {
			return r
		}
	}
	t.Fatalf("no route configuration %q", name)
	return nil
}

func findVH(t *testing.T, rc *routev3.RouteConfiguration, name string) *routev3.VirtualHost {
	t.Helper()
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() == name {
			return vh
		}
	}
	t.Fatalf("route configuration %q has no virtual host %q", rc.GetName(), name)
	return nil
}

// faultOf returns the fault override of a virtual host's only route, or nil.
func faultOf(t *testing.T, vh *routev3.VirtualHost) *faultv3.HTTPFault {
	t.Helper()
	routes := vh.GetRoutes()
	switch len(routes) {
	case 1:
	case 2:
		// A probe holder's first route lets marked probe calls through.
		if probeRoute(routes[0]) == "" {
			t.Fatalf("virtual host %q: first of 2 routes is not a probe route: %v", vh.GetName(), routes[0])
		}
		if _, ok := routes[0].GetTypedPerFilterConfig()[wellknown.Fault]; ok {
			t.Fatalf("virtual host %q: the probe route has a fault override", vh.GetName())
		}
	default:
		t.Fatalf("virtual host %q has %d routes, want 1 (or 2 on a probe holder)", vh.GetName(), len(routes))
	}
	a, ok := routes[len(routes)-1].GetTypedPerFilterConfig()[wellknown.Fault]
	if !ok {
		return nil
	}
	f := &faultv3.HTTPFault{}
	if err := a.UnmarshalTo(f); err != nil {
		t.Fatalf("fault override of %q: %v", vh.GetName(), err)
	}
	return f
}

// probeRoute returns the generation a probe route matches in ProbeHeader,
// "" if r is not a probe route.
func probeRoute(r *routev3.Route) string {
	for _, h := range r.GetMatch().GetHeaders() {
		if h.GetName() == ProbeHeader {
			return h.GetStringMatch().GetExact()
		}
	}
	return ""
}

// walkAnys calls fn on every message packed in an Any anywhere in m,
// recursively.
func walkAnys(t *testing.T, m protoreflect.Message, fn func(proto.Message)) {
	t.Helper()
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		visit := func(v protoreflect.Value) {
			if fd.Message() == nil {
				return
			}
			child := v.Message()
			if a, ok := child.Interface().(*anypb.Any); ok {
				inner, err := a.UnmarshalNew()
				if err != nil {
					t.Fatalf("unpacking %s: %v", a.GetTypeUrl(), err)
				}
				fn(inner)
				walkAnys(t, inner.ProtoReflect(), fn)
				return
			}
			walkAnys(t, child, fn)
		}
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				visit(v.List().Get(i))
			}
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Message() != nil {
					child := mv.Message()
					if a, ok := child.Interface().(*anypb.Any); ok {
						inner, err := a.UnmarshalNew()
						if err != nil {
							t.Fatalf("unpacking %s: %v", a.GetTypeUrl(), err)
						}
						fn(inner)
						walkAnys(t, inner.ProtoReflect(), fn)
					} else {
						walkAnys(t, child, fn)
					}
				}
				return true
			})
		default:
			visit(v)
		}
		return true
	})
}

// checkAllValid runs ValidateAll on every resource and on every message
// packed inside one, independently of Translate's own checks.
func checkAllValid(t *testing.T, res Resources) {
	t.Helper()
	var all []proto.Message
	for _, x := range res.EnvoyListeners {
		all = append(all, x)
	}
	for _, x := range res.ProxylessListeners {
		all = append(all, x)
	}
	for _, x := range res.Routes {
		all = append(all, x)
	}
	for _, x := range res.Clusters {
		all = append(all, x)
	}
	for _, x := range res.Endpoints {
		all = append(all, x)
	}
	packed := 0
	check := func(m proto.Message) {
		v, ok := m.(interface{ ValidateAll() error })
		if !ok {
			t.Errorf("%T has no ValidateAll", m)
			return
		}
		if err := v.ValidateAll(); err != nil {
			t.Errorf("%T: %v", m, err)
		}
	}
	for _, m := range all {
		check(m)
		walkAnys(t, m.ProtoReflect(), func(inner proto.Message) { packed++; check(inner) })
	}
	if packed == 0 {
		t.Errorf("found no packed configs: the walk is broken")
	}
}

func TestTranslateBreakerStates(t *testing.T) {
	holder := map[string]int{"checkout-1": 2, "checkout-7": 1}
	other := map[string]int{"checkout-7": 3}
	tests := []struct {
		name     string
		protocol Protocol
		breaker  *breaker.PairRecord
		// wantAbort is the abort percentage; -1: no override.
		wantAbort int
	}{
		{"http no record", HTTP, nil, -1},
		{"http closed", HTTP, record(breaker.Closed, 1, nil), -1},
		{"http open", HTTP, record(breaker.Open, 2, nil), 100},
		{"http half-open holder, no gate", HTTP, record(breaker.HalfOpen, 3, holder), 100}, // TestTranslateProbeGate
		{"http half-open non-holder", HTTP, record(breaker.HalfOpen, 3, other), 100},
		{"http half-open no permits", HTTP, record(breaker.HalfOpen, 3, map[string]int{"checkout-1": 0}), 100},
		{"grpc no record", GRPC, nil, -1},
		{"grpc closed", GRPC, record(breaker.Closed, 1, nil), -1},
		{"grpc open", GRPC, record(breaker.Open, 2, nil), 100},
		{"grpc half-open holder, no gate", GRPC, record(breaker.HalfOpen, 3, holder), 100},
		{"grpc half-open non-holder", GRPC, record(breaker.HalfOpen, 3, other), 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustTranslate(t, Config{}, testState(tt.protocol, tt.breaker))
			checkAllValid(t, res)
			// The same virtual host serves proxyless clients (route
			// configuration "payments") and Envoy (the egress one).
			for _, rc := range []string{"payments", EgressRouteName} {
				vh := findVH(t, findRoute(t, res, rc), "payments")
				f := faultOf(t, vh)
				if tt.wantAbort < 0 {
					if f != nil {
						t.Fatalf("%s: override %v, want none", rc, f)
					}
					continue
				}
				if f == nil {
					t.Fatalf("%s: no fault override, want abort %d%%", rc, tt.wantAbort)
				}
				if f.GetDelay() != nil || f.GetHeaders() != nil || f.GetMaxActiveFaults() != nil {
					t.Errorf("%s: override has more than an abort: %v", rc, f)
				}
				p := f.GetAbort().GetPercentage()
				if p.GetNumerator() != uint32(tt.wantAbort) || p.GetDenominator() != typev3.FractionalPercent_HUNDRED {
					t.Errorf("%s: abort %v, want %d/100", rc, p, tt.wantAbort)
				}
				switch tt.protocol {
				case GRPC:
					if got := f.GetAbort().GetGrpcStatus(); got != 14 {
						t.Errorf("%s: grpc_status %d, want 14 (UNAVAILABLE)", rc, got)
					}
				case HTTP:
					if got := f.GetAbort().GetHttpStatus(); got != 503 {
						t.Errorf("%s: http_status %d, want 503", rc, got)
					}
				}
				// The route's name is what the breaker header carries.
				want := "checkout->payments; state=" + tt.breaker.State.String() + "; generation="
				if got := vh.GetRoutes()[0].GetName(); len(got) < len(want) || got[:len(want)] != want {
					t.Errorf("%s: route name %q, want prefix %q", rc, got, want)
				}
			}
			// The other callee has no record: never an override.
			if f := faultOf(t, findVH(t, findRoute(t, res, "ledger"), "ledger")); f != nil {
				t.Errorf("ledger: override %v, want none", f)
			}
			refs := res.Breakers["payments"]
			if tt.breaker == nil {
				if len(refs) != 0 {
					t.Errorf("Breakers[payments] = %v, want none", refs)
				}
			} else if len(refs) != 1 || refs[0].Generation != tt.breaker.Generation || refs[0].State != tt.breaker.State {
				t.Errorf("Breakers[payments] = %v, want generation %d", refs, tt.breaker.Generation)
			}
		})
	}
}

// TestTranslateProbeRoute: only a HALF_OPEN instance holding permits gets,
// in its guard clients' route configuration, a route that lets calls
// through whose ProbeHeader is exactly the callee's probe secret (never the
// generation); everything else on it is aborted. Without a secret there is
// no probe route to match. Other clients' routes never carry the secret.
func TestTranslateProbeRoute(t *testing.T) {
	const secret = "9f86d081884c7d659a2feaa0c55ad015"
	for _, tt := range []struct {
		name   string
		rec    *breaker.PairRecord
		secret string
		want   string // the value matched, "" for no probe route
		routes int
	}{
		{"holder", record(breaker.HalfOpen, 9, map[string]int{"checkout-1": 2}), secret, secret, 2},
		{"holder without a secret", record(breaker.HalfOpen, 9, map[string]int{"checkout-1": 2}), "", "", 1},
		{"non-holder", record(breaker.HalfOpen, 9, map[string]int{"checkout-7": 2}), secret, "", 1},
		{"open", record(breaker.Open, 8, nil), secret, "", 1},
		{"closed", record(breaker.Closed, 10, nil), secret, "", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := testState(GRPC, tt.rec)
			st.Callees[0].ProbeSecret = tt.secret
			res := mustTranslate(t, Config{}, st)
			for _, rc := range append(res.Routes, res.GuardRoutes...) {
				if b, _ := proto.Marshal(rc); tt.secret != "" && strings.Contains(string(b), tt.secret) && !slices.Contains(res.GuardRoutes, rc) {
					t.Fatalf("route configuration %s for other clients carries the probe secret", rc.GetName())
				}
			}
			for _, rc := range []string{"payments"} {
				vh := findVH(t, findGuardRoute(t, res, rc), "payments")
				if len(vh.GetRoutes()) != tt.routes {
					t.Fatalf("%s: %d routes, want %d", rc, len(vh.GetRoutes()), tt.routes)
				}
				if got := probeRoute(vh.GetRoutes()[0]); got != tt.want {
					t.Fatalf("%s: probe route matches %q, want %q", rc, got, tt.want)
				}
				for i, r := range vh.GetRoutes() {
					for _, h := range r.GetMatch().GetHeaders() {
						if h.GetName() == ProbeHeader && h.GetStringMatch().GetExact() != tt.secret {
							t.Fatalf("%s: route %d matches %s=%q, want only the secret", rc, i, ProbeHeader, h.GetStringMatch().GetExact())
						}
					}
				}
			}
		})
	}
}

func findGuardRoute(t *testing.T, res Resources, name string) *routev3.RouteConfiguration {
	t.Helper()
	for _, r := range res.GuardRoutes {
		if r.GetName() == name {
			return r
		}
	}
	t.Fatalf("no guard route configuration %q", name)
	return nil
}

// TestTranslateRejectsBadProbeSecret: a secret that is not a plain token is
// refused, naming the callee and the field.
func TestTranslateRejectsBadProbeSecret(t *testing.T) {
	for _, bad := range []string{"a b", "x\r\nx-evil: 1", strings.Repeat("a", MaxProbeSecretLen+1)} {
		st := testState(GRPC, record(breaker.HalfOpen, 9, map[string]int{"checkout-1": 2}))
		st.Callees[0].ProbeSecret = bad
		_, err := Translate(Config{}, st)
		if !errors.Is(err, ErrInvalidState) || !strings.Contains(err.Error(), `callees["payments"]: probe secret`) {
			t.Errorf("secret %q: %v, want ErrInvalidState naming the probe secret", bad, err)
		}
	}
}

// TestTranslateProbeGate: a HALF_OPEN probe holder's routes for clients
// without Colony's library send every call, unfaulted, to the probe gate's
// cluster, whose one endpoint is the gate; guard clients' routes keep the
// probe route and abort the rest. Without a gate such clients cannot probe
// (every call aborted), and nobody else is routed to the gate.
func TestTranslateProbeGate(t *testing.T) {
	const gate = "127.0.0.1:7501"
	holder := record(breaker.HalfOpen, 4, map[string]int{"checkout-1": 1})
	for _, tt := range []struct {
		name     string
		rec      *breaker.PairRecord
		gate     string
		wantGate bool
	}{
		{"holder", holder, gate, true},
		{"holder without a gate", holder, "", false},
		{"non-holder", record(breaker.HalfOpen, 4, map[string]int{"checkout-2": 1}), gate, false},
		{"open", record(breaker.Open, 3, nil), gate, false},
		{"closed", nil, gate, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range []Protocol{GRPC, HTTP} {
				st := testState(p, tt.rec)
				st.ProbeGate = tt.gate
				st.Callees[0].ProbeSecret = "s3cr3t"
				res := mustTranslate(t, Config{}, st)
				for _, rc := range []string{"payments", EgressRouteName} {
					r := findVH(t, findRoute(t, res, rc), "payments").GetRoutes()
					if got := r[len(r)-1].GetRoute().GetCluster() == ProbeGateCluster; got != tt.wantGate {
						t.Errorf("%v %s: routed to the gate %v, want %v", p, rc, got, tt.wantGate)
					}
					if tt.wantGate && (len(r) != 1 || r[0].GetTypedPerFilterConfig() != nil) {
						t.Errorf("%v %s: %d routes, fault %v; want one route to the gate, no fault", p, rc, len(r), r[0].GetTypedPerFilterConfig())
					}
				}
				for _, rc := range res.GuardRoutes {
					for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
						if r.GetRoute().GetCluster() == ProbeGateCluster {
							t.Errorf("%v: guard route %q goes to the gate", p, r.GetName())
						}
					}
				}
				cl := slices.IndexFunc(res.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == ProbeGateCluster })
				if (cl >= 0) != (tt.gate != "") {
					t.Fatalf("%v: gate cluster present %v with gate %q", p, cl >= 0, tt.gate)
				}
				if cl >= 0 {
					if res.Clusters[cl].GetLrsServer() != nil {
						t.Errorf("gate cluster names an LRS server: the gate counts its calls itself")
					}
					i := slices.IndexFunc(res.Endpoints, func(c *endpointv3.ClusterLoadAssignment) bool { return c.GetClusterName() == ProbeGateCluster })
					if i < 0 {
						t.Fatal("no load assignment for the gate cluster")
					}
					sa := res.Endpoints[i].GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
					if got := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()); got != gate {
						t.Errorf("gate endpoint %s, want %s", got, gate)
					}
				}
			}
		})
	}
}

func marshalAll[T proto.Message](t *testing.T, list []T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, m := range list {
		b, err := cachev3.MarshalResource(m)
		if err != nil {
			t.Fatal(err)
		}
		out[cachev3.GetResourceName(m)] = b
	}
	return out
}

func TestTranslateFlipChangesOnlyRoutes(t *testing.T) {
	cfg := Config{AccessLogAddr: "127.0.0.1:7500"}
	flips := []*breaker.PairRecord{
		nil,
		record(breaker.Closed, 1, nil),
		record(breaker.Open, 2, nil),
		record(breaker.HalfOpen, 3, map[string]int{"checkout-1": 1}),
		record(breaker.HalfOpen, 4, map[string]int{"checkout-2": 1}),
		record(breaker.Open, 5, nil),
		record(breaker.Closed, 6, nil),
	}
	for _, p := range []Protocol{HTTP, GRPC} {
		base := mustTranslate(t, cfg, testState(p, flips[0]))
		prevRoutes := marshalAll(t, base.Routes)
		for i, b := range flips[1:] {
			res := mustTranslate(t, cfg, testState(p, b))
			checkAllValid(t, res)
			same := func(what string, a, b map[string][]byte) {
				if len(a) != len(b) {
					t.Fatalf("%v flip %d: %s: %d resources, was %d", p, i+1, what, len(b), len(a))
				}
				for name, x := range a {
					if string(x) != string(b[name]) {
						t.Errorf("%v flip %d to %v: %s %q changed", p, i+1, b, what, name)
					}
				}
			}
			same("Envoy listener", marshalAll(t, base.EnvoyListeners), marshalAll(t, res.EnvoyListeners))
			same("proxyless listener", marshalAll(t, base.ProxylessListeners), marshalAll(t, res.ProxylessListeners))
			same("cluster", marshalAll(t, base.Clusters), marshalAll(t, res.Clusters))
			same("endpoints", marshalAll(t, base.Endpoints), marshalAll(t, res.Endpoints))

			// The routes of payments change on every flip (state or
			// generation); ledger's never.
			routes := marshalAll(t, res.Routes)
			for _, name := range []string{"payments", EgressRouteName} {
				if string(routes[name]) == string(prevRoutes[name]) {
					t.Errorf("%v flip %d: route configuration %q did not change", p, i+1, name)
				}
			}
			if string(routes["ledger"]) != string(prevRoutes["ledger"]) {
				t.Errorf("%v flip %d: route configuration ledger changed", p, i+1)
			}
			prevRoutes = routes
		}
	}
}

func TestTranslateDeterministic(t *testing.T) {
	st := testState(GRPC, record(breaker.Open, 2, nil))
	a := mustTranslate(t, Config{}, st)
	// Reversed callee and endpoint order: same resources.
	st.Callees[0], st.Callees[1] = st.Callees[1], st.Callees[0]
	eps := st.Callees[1].Endpoints
	eps[0], eps[2] = eps[2], eps[0]
	b := mustTranslate(t, Config{}, st)
	for _, pair := range [][2]map[string][]byte{
		{marshalAll(t, a.Routes), marshalAll(t, b.Routes)},
		{marshalAll(t, a.Clusters), marshalAll(t, b.Clusters)},
		{marshalAll(t, a.Endpoints), marshalAll(t, b.Endpoints)},
		{marshalAll(t, a.ProxylessListeners), marshalAll(t, b.ProxylessListeners)},
	} {
		for name, x := range pair[0] {
			if string(x) != string(pair[1][name]) {
				t.Errorf("%q differs with the input reordered", name)
			}
		}
	}
}

func TestTranslateEndpoints(t *testing.T) {
	res := mustTranslate(t, Config{}, testState(GRPC, nil))
	var cla = res.Endpoints[1] // sorted: ledger, payments
	if cla.GetClusterName() != "payments" {
		t.Fatalf("endpoints[1] is %q", cla.GetClusterName())
	}
	if len(cla.GetEndpoints()) != 2 {
		t.Fatalf("%d localities, want 2 (zones a and b)", len(cla.GetEndpoints()))
	}
	for i, want := range []struct {
		zone   string
		weight uint32
		addrs  []string
	}{{"a", 2, []string{"10.0.0.1", "10.0.0.3"}}, {"b", 1, []string{"10.0.0.2"}}} {
		loc := cla.GetEndpoints()[i]
		if loc.GetLocality().GetZone() != want.zone || loc.GetLoadBalancingWeight().GetValue() != want.weight {
			t.Errorf("locality %d: zone %q weight %d, want %q %d", i, loc.GetLocality().GetZone(), loc.GetLoadBalancingWeight().GetValue(), want.zone, want.weight)
		}
		for j, ep := range loc.GetLbEndpoints() {
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetAddress() != want.addrs[j] || sa.GetPortValue() != 8080 {
				t.Errorf("locality %d endpoint %d: %v, want %s:8080", i, j, sa, want.addrs[j])
			}
		}
	}
	var payments *clusterv3.Cluster
	for _, c := range res.Clusters {
		if c.GetName() == "payments" {
			payments = c
		}
	}
	if payments.GetType() != clusterv3.Cluster_EDS || payments.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
		t.Errorf("payments cluster is not EDS over ADS: %v", payments)
	}
	if _, ok := payments.GetTypedExtensionProtocolOptions()[http2Options]; !ok {
		t.Errorf("gRPC callee's cluster has no HTTP/2 upstream options")
	}
}

func hcmOf(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	a := l.GetApiListener().GetApiListener()
	if a == nil {
		a = l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := a.UnmarshalTo(h); err != nil {
		t.Fatalf("listener %q: %v", l.GetName(), err)
	}
	return h
}

func TestTranslateListeners(t *testing.T) {
	cfg := Config{EgressAddr: "127.0.0.1:15001", AccessLogCluster: "sidecar", BreakerHeader: "x-breaker"}
	res := mustTranslate(t, cfg, testState(HTTP, nil))
	checkFilters := func(name string, h *hcmv3.HttpConnectionManager, route string) {
		f := h.GetHttpFilters()
		if len(f) != 2 || f[0].GetName() != wellknown.Fault || f[1].GetName() != wellknown.Router {
			t.Errorf("%s: filters %v, want fault then router", name, f)
		}
		fault := &faultv3.HTTPFault{}
		if err := f[0].GetTypedConfig().UnmarshalTo(fault); err != nil || !proto.Equal(fault, &faultv3.HTTPFault{}) {
			t.Errorf("%s: listener-level fault config %v (%v), want empty", name, fault, err)
		}
		if h.GetRds().GetRouteConfigName() != route || h.GetRds().GetConfigSource().GetAds() == nil {
			t.Errorf("%s: RDS %v, want %q over ADS", name, h.GetRds(), route)
		}
	}
	if len(res.ProxylessListeners) != 2 {
		t.Fatalf("%d proxyless listeners, want 2", len(res.ProxylessListeners))
	}
	for _, l := range res.ProxylessListeners {
		checkFilters(l.GetName(), hcmOf(t, l), l.GetName())
	}
	if len(res.EnvoyListeners) != 1 {
		t.Fatalf("%d Envoy listeners, want 1", len(res.EnvoyListeners))
	}
	l := res.EnvoyListeners[0]
	if sa := l.GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 15001 {
		t.Errorf("egress listener address %v", sa)
	}
	h := hcmOf(t, l)
	checkFilters("egress", h, EgressRouteName)
	if len(h.GetAccessLog()) != 1 || h.GetAccessLog()[0].GetName() != "envoy.access_loggers.http_grpc" {
		t.Fatalf("egress access log %v", h.GetAccessLog())
	}
	als := &grpcalsv3.HttpGrpcAccessLogConfig{}
	if err := h.GetAccessLog()[0].GetTypedConfig().UnmarshalTo(als); err != nil {
		t.Fatal(err)
	}
	if got := als.GetCommonConfig().GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != "sidecar" {
		t.Errorf("access log cluster %q, want sidecar", got)
	}
	m := h.GetLocalReplyConfig().GetMappers()
	if len(m) != 1 || len(m[0].GetFilter().GetResponseFlagFilter().GetFlags()) != 1 ||
		m[0].GetFilter().GetResponseFlagFilter().GetFlags()[0] != "FI" {
		t.Fatalf("local reply mappers %v, want one on response flag FI", m)
	}
	if hd := m[0].GetHeadersToAdd(); len(hd) != 1 || hd[0].GetHeader().GetKey() != "x-breaker" || hd[0].GetHeader().GetValue() != "%ROUTE_NAME%" {
		t.Errorf("local reply headers %v", hd)
	}
	// Without AccessLogAddr the cluster comes from Envoy's bootstrap.
	for _, c := range res.Clusters {
		if c.GetName() == "sidecar" {
			t.Errorf("access log cluster served without AccessLogAddr")
		}
	}
	cfg.AccessLogAddr = "127.0.0.1:7500"
	res = mustTranslate(t, cfg, testState(HTTP, nil))
	found := false
	for _, c := range res.Clusters {
		if c.GetName() == "sidecar" {
			found = c.GetType() == clusterv3.Cluster_STATIC
		}
	}
	if !found {
		t.Errorf("no static access log cluster with AccessLogAddr set")
	}
}

func TestTranslateRejects(t *testing.T) {
	good := func() State { return testState(GRPC, record(breaker.Open, 2, nil)) }
	tests := []struct {
		name   string
		cfg    Config
		mutate func(*State)
		want   error
	}{
		{"bad caller", Config{}, func(s *State) { s.Caller = "a/b" }, ErrInvalidState},
		{"no instance", Config{}, func(s *State) { s.Instance = "" }, ErrInvalidState},
		{"bad callee name", Config{}, func(s *State) { s.Callees[0].Name = "colony:egress" }, ErrInvalidState},
		{"callee twice", Config{}, func(s *State) { s.Callees[1].Name = "payments" }, ErrInvalidState},
		{"host name endpoint", Config{}, func(s *State) { s.Callees[0].Endpoints[0].Address = "payments.local" }, ErrInvalidState},
		{"port 0", Config{}, func(s *State) { s.Callees[0].Endpoints[0].Port = 0 }, ErrInvalidState},
		{"endpoint twice", Config{}, func(s *State) { s.Callees[0].Endpoints[1].Address = "10.0.0.1" }, ErrInvalidState},
		{"record of another callee", Config{}, func(s *State) { s.Callees[1].Breaker = record(breaker.Open, 1, nil) }, ErrInvalidState},
		{"bad protocol", Config{}, func(s *State) { s.Callees[0].Protocol = 7 }, ErrInvalidState},
		{"bad egress addr", Config{EgressAddr: "localhost:1"}, func(*State) {}, ErrInvalidConfig},
		{"bad probe gate", Config{}, func(s *State) { s.ProbeGate = "localhost:1" }, ErrInvalidState},
		{"bad header", Config{BreakerHeader: "X-Breaker"}, func(*State) {}, ErrInvalidConfig},
		{"bad access log addr", Config{AccessLogAddr: "sidecar:7400"}, func(*State) {}, ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := good()
			tt.mutate(&st)
			_, err := Translate(tt.cfg, st)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Translate: %v, want %v", err, tt.want)
			}
			t.Logf("%v", err)
		})
	}
}

func TestTranslateEmpty(t *testing.T) {
	res := mustTranslate(t, Config{}, State{Caller: "checkout", Instance: "checkout-1"})
	checkAllValid(t, res)
	if len(res.EnvoyListeners) != 1 || len(res.Routes) != 1 || len(res.ProxylessListeners) != 0 || len(res.Clusters) != 0 {
		t.Errorf("empty state: %d Envoy listeners, %d routes, %d proxyless listeners, %d clusters; want 1, 1, 0, 0",
			len(res.EnvoyListeners), len(res.Routes), len(res.ProxylessListeners), len(res.Clusters))
	}
}

func TestPackValidRejectsInvalid(t *testing.T) {
	// An abort without an error type fails HTTPFault's own validation.
	_, err := packValid("fault", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{}})
	if !errors.Is(err, ErrInvalidResource) {
		t.Fatalf("packValid: %v, want ErrInvalidResource", err)
	}
	t.Logf("%v", err)
}
