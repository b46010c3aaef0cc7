package xds

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/colonymesh/colony/breaker"
)

// Protocol is how callers talk to a callee.
type Protocol int

const (
	// HTTP callees get HTTP/1.1 upstreams from Envoy and, when their breaker
	// rejects a call, HTTP 503 with the breaker header.
	HTTP Protocol = iota
	// GRPC callees get HTTP/2 upstreams from Envoy and, when their breaker
	// rejects a call, gRPC status UNAVAILABLE (from Envoy and from proxyless
	// gRPC clients alike).
	GRPC
)

// String returns "http" or "grpc".
func (p Protocol) String() string {
	switch p {
	case HTTP:
		return "http"
	case GRPC:
		return "grpc"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// Endpoint is one registered instance of a callee.
type Endpoint struct {
	// Instance is the instance id it registered with (optional; it is
	// carried in the endpoint's metadata).
	Instance string
	// Address is an IP address (Envoy's EDS takes no host names).
	Address string
	Port    int
	// Zone is the instance's zone; endpoints are grouped into localities by
	// zone. Empty is a zone of its own.
	Zone string
}

// Callee is one service the sidecar's service calls.
type Callee struct {
	Name      string
	Protocol  Protocol
	Endpoints []Endpoint
	// Breaker is the shared breaker record of the pair (State.Caller ->
	// Name); nil means no record yet: CLOSED.
	Breaker *breaker.PairRecord
	// BreakerSeen is when the sidecar learned Breaker's generation (the
	// watch event's arrival). Zero: the time of the Update that brings it.
	BreakerSeen time.Time
	// ProbeSecret is the value of ProbeHeader that marks this instance's
	// probes while Breaker is HALF_OPEN and the instance holds permits: a
	// secret the sidecar draws for the generation and hands only to its
	// guard clients, so a client cannot mark its own calls as probes. Only
	// guard clients' route configurations carry it (GuardRoutes). Up to
	// MaxProbeSecretLen characters of A-Z a-z 0-9 - _. Empty: no probe
	// route.
	ProbeSecret string
}

// MaxProbeSecretLen bounds Callee.ProbeSecret.
const MaxProbeSecretLen = 128

// State is everything the sidecar's clients should enforce: the caller
// service and instance the sidecar runs beside, and the callees.
type State struct {
	Caller   string
	Instance string
	Callees  []Callee
	// ProbeGate is the IP:port of the sidecar's probe gate: while a callee
	// is HALF_OPEN and this instance holds permits, the routes of clients
	// that run no Colony code (stock gRPC, Envoy) send every call there,
	// and the gate admits exactly the instance's permits. Empty: no gate;
	// such clients' calls are all aborted in HALF_OPEN (they cannot probe).
	ProbeGate string
}

// Resources are the xDS resources of a State, sorted by name.
type Resources struct {
	// EnvoyListeners are served to Envoy (node user agent "envoy"): the
	// egress listener.
	EnvoyListeners []*listenerv3.Listener
	// ProxylessListeners are served to every other client: one api_listener
	// per callee, named after it.
	ProxylessListeners []*listenerv3.Listener
	// Routes are one route configuration per callee, named after it (for
	// proxyless clients), and EgressRouteName with a virtual host per
	// callee (for Envoy). They are served to every client but guard ones:
	// a HALF_OPEN probe holder's routes send every call to the probe gate.
	Routes []*routev3.RouteConfiguration
	// GuardRoutes are the callees' route configurations served to guard
	// clients (nodes marked with GuardNodeMetadataKey), which admit their
	// permits themselves: a HALF_OPEN probe holder's routes let through
	// the calls marked with the probe secret and abort the rest.
	GuardRoutes []*routev3.RouteConfiguration
	// Clusters are one EDS cluster per callee, named after it, the access
	// log cluster when Config.AccessLogAddr is set, and ProbeGateCluster
	// when State.ProbeGate is.
	Clusters []*clusterv3.Cluster
	// Endpoints are one load assignment per callee, named after it, and
	// ProbeGateCluster's.
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Breakers lists, by route configuration name, the breaker records whose
	// state the route configuration carries.
	Breakers map[string][]BreakerRef
}

// BreakerRef names one generation of one pair's breaker record.
type BreakerRef struct {
	Callee     string
	Generation uint64
	State      breaker.State
}

// ErrInvalidState is returned by Translate and Update for a State that
// cannot be translated; the message names the field at fault.
var ErrInvalidState = errors.New("xds: invalid state")

// ErrInvalidResource is returned by Translate when a resource it built
// fails the Envoy types' own validation (a bug in Translate, or input that
// slipped past its checks).
var ErrInvalidResource = errors.New("xds: invalid resource")

// Translate builds the xDS resources of st. It is pure: the same Config and
// State give the same resources (Config.Now and the callbacks are not used).
// Every resource, and every typed config packed inside one, passes its
// ValidateAll.
func Translate(cfg Config, st State) (Resources, error) {
	if err := cfg.Validate(); err != nil {
		return Resources{}, err
	}
	cfg = cfg.withDefaults()
	if err := validateState(st); err != nil {
		return Resources{}, err
	}
	callees := slices.Clone(st.Callees)
	slices.SortFunc(callees, func(a, b Callee) int { return cmp.Compare(a.Name, b.Name) })

	res := Resources{Breakers: map[string][]BreakerRef{}}
	egress := &routev3.RouteConfiguration{Name: EgressRouteName}
	var egressRefs []BreakerRef
	for _, c := range callees {
		vh, err := virtualHost(cfg, st, c, false)
		if err != nil {
			return Resources{}, err
		}
		gvh, err := virtualHost(cfg, st, c, true)
		if err != nil {
			return Resources{}, err
		}
		egress.VirtualHosts = append(egress.VirtualHosts, vh)
		// A proxyless client's route configuration has this one virtual
		// host, matched whatever authority the client dialed: the callee's
		// name, with a port, in another case (names.go).
		pvh := proto.CloneOf(vh)
		pvh.Domains = []string{"*"}
		res.Routes = append(res.Routes, &routev3.RouteConfiguration{
			Name:         c.Name,
			VirtualHosts: []*routev3.VirtualHost{pvh},
		})
		gvh.Domains = []string{"*"}
		res.GuardRoutes = append(res.GuardRoutes, &routev3.RouteConfiguration{
			Name:         c.Name,
			VirtualHosts: []*routev3.VirtualHost{gvh},
		})
		if c.Breaker != nil {
			ref := BreakerRef{Callee: c.Name, Generation: c.Breaker.Generation, State: c.Breaker.State}
			res.Breakers[c.Name] = []BreakerRef{ref}
			egressRefs = append(egressRefs, ref)
		}

		l, err := proxylessListener(c.Name)
		if err != nil {
			return Resources{}, err
		}
		res.ProxylessListeners = append(res.ProxylessListeners, l)

		cl, err := calleeCluster(c)
		if err != nil {
			return Resources{}, err
		}
		res.Clusters = append(res.Clusters, cl)
		res.Endpoints = append(res.Endpoints, loadAssignment(c))
	}
	res.Routes = append(res.Routes, egress)
	if len(egressRefs) > 0 {
		res.Breakers[EgressRouteName] = egressRefs
	}

	l, err := egressListener(cfg)
	if err != nil {
		return Resources{}, err
	}
	res.EnvoyListeners = []*listenerv3.Listener{l}
	if cfg.AccessLogAddr != "" {
		cl, err := accessLogCluster(cfg)
		if err != nil {
			return Resources{}, err
		}
		res.Clusters = append(res.Clusters, cl)
	}
	if st.ProbeGate != "" {
		cl, cla, err := probeGateCluster(st.ProbeGate)
		if err != nil {
			return Resources{}, err
		}
		res.Clusters = append(res.Clusters, cl)
		res.Endpoints = append(res.Endpoints, cla)
	}
	slices.SortFunc(res.Routes, func(a, b *routev3.RouteConfiguration) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(res.Clusters, func(a, b *clusterv3.Cluster) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(res.Endpoints, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return cmp.Compare(a.ClusterName, b.ClusterName)
	})

	if err := res.validate(); err != nil {
		return Resources{}, err
	}
	return res, nil
}

func validateState(st State) error {
	var errs []error
	if err := breaker.ValidateServiceName(st.Caller); err != nil {
		errs = append(errs, fmt.Errorf("caller: %w", err))
	}
	if err := breaker.ValidateInstanceID(st.Instance); err != nil {
		errs = append(errs, fmt.Errorf("instance: %w", err))
	}
	if st.ProbeGate != "" {
		if _, err := netip.ParseAddrPort(st.ProbeGate); err != nil {
			errs = append(errs, fmt.Errorf("probe gate: %q is not an IP:port: %w", st.ProbeGate, err))
		}
	}
	seen := map[string]bool{}
	for i, c := range st.Callees {
		if err := breaker.ValidateServiceName(c.Name); err != nil {
			errs = append(errs, fmt.Errorf("callees[%d]: name: %w", i, err))
			continue
		}
		if seen[c.Name] {
			errs = append(errs, fmt.Errorf("callees[%d]: %q listed twice", i, c.Name))
		}
		seen[c.Name] = true
		if c.Protocol != HTTP && c.Protocol != GRPC {
			errs = append(errs, fmt.Errorf("callees[%q]: protocol: %v, want HTTP or GRPC", c.Name, c.Protocol))
		}
		if b := c.Breaker; b != nil {
			if b.Callee != "" && b.Callee != c.Name {
				errs = append(errs, fmt.Errorf("callees[%q]: breaker: record of callee %q", c.Name, b.Callee))
			}
			if b.Caller != "" && b.Caller != st.Caller {
				errs = append(errs, fmt.Errorf("callees[%q]: breaker: record of caller %q, not %q", c.Name, b.Caller, st.Caller))
			}
			if b.State > breaker.HalfOpen {
				errs = append(errs, fmt.Errorf("callees[%q]: breaker: unknown state %v", c.Name, b.State))
			}
		}
		if err := validateProbeSecret(c.ProbeSecret); err != nil {
			errs = append(errs, fmt.Errorf("callees[%q]: probe secret: %w", c.Name, err))
		}
		addrs := map[netip.AddrPort]bool{}
		for j, e := range c.Endpoints {
			ip, err := netip.ParseAddr(e.Address)
			if err != nil {
				errs = append(errs, fmt.Errorf("callees[%q]: endpoints[%d]: address %q is not an IP address", c.Name, j, e.Address))
				continue
			}
			if e.Port < 1 || e.Port > 65535 {
				errs = append(errs, fmt.Errorf("callees[%q]: endpoints[%d]: port %d, want 1..65535", c.Name, j, e.Port))
				continue
			}
			if e.Instance != "" {
				if err := breaker.ValidateInstanceID(e.Instance); err != nil {
					errs = append(errs, fmt.Errorf("callees[%q]: endpoints[%d]: instance: %w", c.Name, j, err))
				}
			}
			// gRPC rejects a load assignment that lists an address twice.
			ap := netip.AddrPortFrom(ip, uint16(e.Port))
			if addrs[ap] {
				errs = append(errs, fmt.Errorf("callees[%q]: endpoints[%d]: %v listed twice", c.Name, j, ap))
			}
			addrs[ap] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	return nil
}

// validator is what protoc-gen-validate generates on every Envoy type.
type validator interface {
	proto.Message
	ValidateAll() error
}

// packValid validates m and packs it into an Any. ValidateAll does not look
// inside an Any, so every typed config goes through here.
func packValid(what string, m validator) (*anypb.Any, error) {
	if err := m.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidResource, what, err)
	}
	a, err := anypb.New(m)
	if err != nil {
		return nil, fmt.Errorf("packing %s: %w", what, err)
	}
	return a, nil
}

func (r Resources) validate() error {
	var all []validator
	for _, l := range r.EnvoyListeners {
		all = append(all, l)
	}
	for _, l := range r.ProxylessListeners {
		all = append(all, l)
	}
	for _, x := range r.Routes {
		all = append(all, x)
	}
	for _, x := range r.GuardRoutes {
		all = append(all, x)
	}
	for _, x := range r.Clusters {
		all = append(all, x)
	}
	for _, x := range r.Endpoints {
		all = append(all, x)
	}
	for _, m := range all {
		if err := m.ValidateAll(); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalidResource, m.ProtoReflect().Descriptor().Name(), err)
		}
	}
	return nil
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// httpFilters is the filter chain of every connection manager: the fault
// filter, empty (it injects nothing unless a route overrides it), then the
// router.
func httpFilters() ([]*hcmv3.HttpFilter, error) {
	fault, err := packValid("fault filter", &faultv3.HTTPFault{})
	if err != nil {
		return nil, err
	}
	router, err := packValid("router filter", &routerv3.Router{})
	if err != nil {
		return nil, err
	}
	return []*hcmv3.HttpFilter{
		{Name: wellknown.Fault, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: fault}},
		{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
	}, nil
}

// proxylessListener is what a gRPC client dialing xds:///<callee> asks for.
func proxylessListener(callee string) (*listenerv3.Listener, error) {
	filters, err := httpFilters()
	if err != nil {
		return nil, err
	}
	hcm, err := packValid("connection manager of listener "+callee, &hcmv3.HttpConnectionManager{
		StatPrefix: callee,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: callee,
		}},
		HttpFilters: filters,
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:        callee,
		ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
	}, nil
}

// egressListener is Envoy's one listener for outbound calls. Its access
// logger streams every call to the sidecar; its local reply mapper adds the
// breaker header to the replies the fault filter makes (response flag FI),
// with the route's name as the value (see routeName).
func egressListener(cfg Config) (*listenerv3.Listener, error) {
	ap, err := netip.ParseAddrPort(cfg.EgressAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: EgressAddr: %w", ErrInvalidConfig, err)
	}
	filters, err := httpFilters()
	if err != nil {
		return nil, err
	}
	als, err := packValid("access logger", &grpcalsv3.HttpGrpcAccessLogConfig{
		CommonConfig: &grpcalsv3.CommonGrpcAccessLogConfig{
			LogName: cfg.AccessLogName,
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cfg.AccessLogCluster},
			}},
			TransportApiVersion: corev3.ApiVersion_V3,
		},
		// A gRPC call's outcome is in its trailers (or, for an error
		// without a body, its headers): the sidecar classifies by it.
		AdditionalResponseHeadersToLog:  []string{"grpc-status"},
		AdditionalResponseTrailersToLog: []string{"grpc-status"},
	})
	if err != nil {
		return nil, err
	}
	hcm, err := packValid("egress connection manager", &hcmv3.HttpConnectionManager{
		StatPrefix: "colony_egress",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: EgressRouteName,
		}},
		HttpFilters: filters,
		AccessLog: []*accesslogv3.AccessLog{{
			Name:       wellknown.HTTPGRPCAccessLog,
			ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: als},
		}},
		LocalReplyConfig: &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{
			Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
				ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: []string{"FI"}},
			}},
			HeadersToAdd: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: cfg.BreakerHeader, Value: "%ROUTE_NAME%"},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
		}}},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name: EgressListenerName,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       ap.Addr().String(),
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
		}}},
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
			}},
		}},
	}, nil
}

// validateProbeSecret accepts an empty secret or up to MaxProbeSecretLen
// characters that need no escaping in a header value.
func validateProbeSecret(secret string) error {
	if len(secret) > MaxProbeSecretLen {
		return fmt.Errorf("%d characters, the limit is %d", len(secret), MaxProbeSecretLen)
	}
	for i, r := range secret {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("character %d (%q) is not one of A-Z a-z 0-9 - _", i, r)
		}
	}
	return nil
}

// enforcement is what one instance enforces for a callee.
type enforcement struct {
	state       breaker.State
	generation  uint64
	abort       bool   // abort every call but probes
	probeSecret string // the ProbeHeader value of the probe route (guard clients)
	gate        bool   // send every call to the probe gate (other clients)
}

// ProbeHeader marks a HALF_OPEN probe call; its value is the callee's
// Callee.ProbeSecret, a secret of the generation that only the sidecar's
// guard clients receive. On an instance holding probe permits, a route
// matching exactly that value comes first in the guard clients' route
// configuration and carries no fault: Colony's client library
// (sidecar/guard) admits exactly the permits the coordinator gave the
// instance and marks those calls, so exactly the fleet-wide probe budget
// reaches the callee. Any other value (the generation, an earlier
// generation's secret) is an ordinary call. Clients without the library go
// through the probe gate instead (State.ProbeGate). Keep it equal to
// guard.ProbeHeader.
const ProbeHeader = "x-colony-probe"

// enforce is what the route of callee c enforces for a guard client
// (guard) or any other.
func enforce(st State, c Callee, guard bool) enforcement {
	b := c.Breaker
	if b == nil {
		return enforcement{state: breaker.Closed}
	}
	e := enforcement{state: b.State, generation: b.Generation}
	switch b.State {
	case breaker.Open:
		e.abort = true
	case breaker.HalfOpen:
		e.abort = true
		if b.Probes[st.Instance] > 0 {
			switch {
			case guard:
				e.probeSecret = c.ProbeSecret
			case st.ProbeGate != "":
				e.abort, e.gate = false, true
			}
		}
	}
	return e
}

// routeName names a callee's route. With an override it says which breaker
// rejected the call, in what state and generation: Envoy copies it into the
// breaker header of the replies the fault filter makes.
func routeName(caller string, c Callee, e enforcement) string {
	if c.Breaker == nil {
		return caller + "->" + c.Name
	}
	name := fmt.Sprintf("%s->%s; state=%s; generation=%d", caller, c.Name, e.state, e.generation)
	if e.gate {
		name += "; probe gate"
	}
	return name
}

// virtualHost is a callee's virtual host, shared by its own route
// configuration (proxyless clients) and Envoy's egress one; guard builds
// the one of guard clients.
func virtualHost(cfg Config, st State, c Callee, guard bool) (*routev3.VirtualHost, error) {
	e := enforce(st, c, guard)
	action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c.Name}}
	if e.gate {
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: ProbeGateCluster}
	}
	if c.Protocol == GRPC {
		// Envoy's default 15 s route timeout would cut streaming calls; gRPC
		// callers carry their own deadlines.
		action.Timeout = durationpb.New(0)
	}
	r := &routev3.Route{
		Name:   routeName(st.Caller, c, e),
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: action},
	}
	if e.abort {
		abort := &faultv3.FaultAbort{Percentage: &typev3.FractionalPercent{Numerator: 100}}
		if c.Protocol == GRPC {
			abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(codes.Unavailable)}
		} else {
			abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}
		}
		fault, err := packValid("fault override of "+c.Name, &faultv3.HTTPFault{Abort: abort})
		if err != nil {
			return nil, err
		}
		r.TypedPerFilterConfig = map[string]*anypb.Any{wellknown.Fault: fault}
	}
	routes := []*routev3.Route{r}
	if e.probeSecret != "" {
		probe := &routev3.Route{
			Name: r.Name + "; probe",
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{{
					Name: ProbeHeader,
					HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Exact{Exact: e.probeSecret},
					}},
				}},
			},
			Action: &routev3.Route_Route{Route: proto.CloneOf(action)},
		}
		routes = []*routev3.Route{probe, r}
	}
	return &routev3.VirtualHost{
		Name:    c.Name,
		Domains: []string{c.Name, c.Name + ":*"},
		Routes:  routes,
	}, nil
}

const http2Options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

func http2Only() (map[string]*anypb.Any, error) {
	a, err := packValid("HTTP/2 protocol options", &upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, err
	}
	return map[string]*anypb.Any{http2Options: a}, nil
}

func calleeCluster(c Callee) (*clusterv3.Cluster, error) {
	cl := &clusterv3.Cluster{
		Name:                 c.Name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: c.Name},
		ConnectTimeout:       durationpb.New(time.Second),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		// gRPC clients report their load (calls succeeded, errored) on
		// this cluster to the server that sent it: the sidecar (lrs.go).
		LrsServer: &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}},
		},
	}
	if c.Protocol == GRPC {
		opts, err := http2Only()
		if err != nil {
			return nil, err
		}
		cl.TypedExtensionProtocolOptions = opts
	}
	return cl, nil
}

// probeGateCluster is the cluster of the probe gate at addr, and its load
// assignment: EDS, as gRPC takes no static clusters. The gate speaks
// HTTP/1.1 and cleartext HTTP/2 on one port, so Envoy forwards each call
// in the protocol it came in. It names no LRS server: the gate counts the
// calls it forwards itself.
func probeGateCluster(addr string) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: probe gate: %w", ErrInvalidState, err)
	}
	opts, err := packValid("probe gate protocol options", &upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		},
	})
	if err != nil {
		return nil, nil, err
	}
	cl := &clusterv3.Cluster{
		Name:                          ProbeGateCluster,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:              &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: ProbeGateCluster},
		ConnectTimeout:                durationpb.New(time.Second),
		LbPolicy:                      clusterv3.Cluster_ROUND_ROBIN,
		TypedExtensionProtocolOptions: map[string]*anypb.Any{http2Options: opts},
	}
	cla := loadAssignment(Callee{Name: ProbeGateCluster, Endpoints: []Endpoint{{Address: ap.Addr().String(), Port: int(ap.Port())}}})
	return cl, cla, nil
}

func accessLogCluster(cfg Config) (*clusterv3.Cluster, error) {
	ap, err := netip.ParseAddrPort(cfg.AccessLogAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: AccessLogAddr: %w", ErrInvalidConfig, err)
	}
	opts, err := http2Only()
	if err != nil {
		return nil, err
	}
	return &clusterv3.Cluster{
		Name:                          cfg.AccessLogCluster,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:                durationpb.New(time.Second),
		TypedExtensionProtocolOptions: opts,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: cfg.AccessLogCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(ap.Addr().String(), int(ap.Port()), "")},
			}},
		},
	}, nil
}

func lbEndpoint(addr string, port int, instance string) *endpointv3.LbEndpoint {
	ep := &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address:       addr,
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
			}}},
		}},
	}
	if instance != "" {
		ep.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"colony": {Fields: map[string]*structpb.Value{"instance": structpb.NewStringValue(instance)}},
		}}
	}
	return ep
}

// loadAssignment groups a callee's endpoints into one locality per zone,
// each weighted by its number of endpoints, so that calls spread evenly over
// endpoints (gRPC requires locality weights; Envoy uses them only with
// locality-weighted balancing and ignores them otherwise).
func loadAssignment(c Callee) *endpointv3.ClusterLoadAssignment {
	eps := slices.Clone(c.Endpoints)
	slices.SortFunc(eps, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: c.Name}
	for i := 0; i < len(eps); {
		j := i
		for j < len(eps) && eps[j].Zone == eps[i].Zone {
			j++
		}
		loc := &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Zone: eps[i].Zone},
			LoadBalancingWeight: wrapperspb.UInt32(uint32(j - i)),
		}
		for _, e := range eps[i:j] {
			loc.LbEndpoints = append(loc.LbEndpoints, lbEndpoint(e.Address, e.Port, e.Instance))
		}
		cla.Endpoints = append(cla.Endpoints, loc)
		i = j
	}
	return cla
}
