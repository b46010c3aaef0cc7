package xds

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// ErrClosed is returned by Update and Serve after Close.
var ErrClosed = errors.New("xds: server closed")

// Keys of the server's caches. Listeners are split by kind of client:
// Envoy subscribes to all listeners (wildcard) and must get only the egress
// listener (it does not take api_listeners over LDS); proxyless clients name
// the listeners they want. Routes are split too: guard clients admit their
// probe permits themselves (Resources.GuardRoutes), every other client's
// probes go through the probe gate (Resources.Routes).
const (
	cacheEnvoyListeners     = "LDS/envoy"
	cacheProxylessListeners = "LDS/proxyless"
	cacheRoutes             = "RDS"
	cacheGuardRoutes        = "RDS/guard"
	cacheClusters           = "CDS"
	cacheEndpoints          = "EDS"
)

// updateOrder is the order in which changed resources reach the caches, so
// that a client learns of a cluster before a route sends calls to it and of
// a route before a listener uses it (Envoy's make-before-break order: CDS,
// EDS, LDS, RDS). Deletions go in the reverse order.
var updateOrder = []string{cacheClusters, cacheEndpoints, cacheEnvoyListeners, cacheProxylessListeners, cacheRoutes, cacheGuardRoutes}

// Server serves one sidecar's xDS resources over ADS to its Envoy and its
// proxyless gRPC clients, and tracks their ACKs and NACKs. Create it with
// NewServer, feed it with Update, serve it with Serve or Register, and end
// it with Close.
type Server struct {
	cfg    Config
	log    *slog.Logger
	prefix string
	ctx    context.Context
	cancel context.CancelFunc
	xds    serverv3.Server
	gs     *grpc.Server
	lrs    *loadService
	caches map[string]*cachev3.LinearCache
	tr     *tracker

	mu        sync.Mutex // serialises Update and the mark Close sets
	closed    bool
	closeOnce sync.Once
	published map[string]map[string][]byte // cache key -> name -> serialized resource
	served    []string                     // the callees' names, sorted
	aliases   []string                     // names asked for that are not callees' own (names.go)
	aliasSet  map[string]bool
}

// NewServer returns a Server with no resources: call Update before clients
// connect (a proxyless client that asks for a listener the server does not
// have fails its calls until it appears).
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix := cfg.VersionPrefix
	if prefix == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("making a version prefix: %w", err)
		}
		prefix = strconv.FormatInt(cfg.Now().UnixNano(), 36) + "-" + hex.EncodeToString(b[:]) + "-"
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		log:       log,
		prefix:    prefix,
		ctx:       ctx,
		cancel:    cancel,
		caches:    map[string]*cachev3.LinearCache{},
		tr:        newTracker(cfg, log),
		lrs:       &loadService{interval: cfg.LoadReportInterval, onLoad: cfg.OnLoad},
		published: map[string]map[string][]byte{},
		aliasSet:  map[string]bool{},
	}
	cpLog := controlPlaneLogger{log}
	for key, typeURL := range map[string]string{
		cacheEnvoyListeners:     resourcev3.ListenerType,
		cacheProxylessListeners: resourcev3.ListenerType,
		cacheRoutes:             resourcev3.RouteType,
		cacheGuardRoutes:        resourcev3.RouteType,
		cacheClusters:           resourcev3.ClusterType,
		cacheEndpoints:          resourcev3.EndpointType,
	} {
		s.caches[key] = cachev3.NewLinearCache(typeURL, cachev3.WithVersionPrefix(prefix), cachev3.WithLogger(cpLog))
		s.published[key] = map[string][]byte{}
	}
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return classify(r.GetTypeUrl(), r.GetNode()) },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return classify(r.GetTypeUrl(), r.GetNode()) },
		Caches:        map[string]cachev3.Cache{},
	}
	for k, c := range s.caches {
		mux.Caches[k] = c
	}
	s.xds = serverv3.NewServer(ctx, mux, callbacks{s.tr, s}, sotwv3.WithLogger(cpLog))
	s.gs = grpc.NewServer(grpc.WaitForHandlers(true))
	s.Register(s.gs)
	return s, nil
}

// isEnvoy tells Envoy from proxyless clients by the node's user agent,
// which Envoy always sets to "envoy" (gRPC sets "gRPC Go", "gRPC Java"...).
func isEnvoy(n *corev3.Node) bool { return n.GetUserAgentName() == "envoy" }

func classify(typeURL string, node *corev3.Node) string {
	switch typeURL {
	case resourcev3.ListenerType:
		if isEnvoy(node) {
			return cacheEnvoyListeners
		}
		return cacheProxylessListeners
	case resourcev3.RouteType:
		if isGuard(node) {
			return cacheGuardRoutes
		}
		return cacheRoutes
	case resourcev3.ClusterType:
		return cacheClusters
	case resourcev3.EndpointType:
		return cacheEndpoints
	}
	// MuxCache fails the watch, and go-control-plane the stream, for a
	// type without a cache: the server serves these four only.
	return typeURL
}

// VersionPrefix returns the prefix of every version this server sends.
func (s *Server) VersionPrefix() string { return s.prefix }

// Register adds the ADS service (state of the world and delta) and the
// load reporting service (LRS) to r, for a sidecar that serves them on its
// own gRPC server beside its other services. Close ends the ADS streams;
// r's owner stops r.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(r, s.xds)
	lrsv3.RegisterLoadReportingServiceServer(r, s.lrs)
}

// Serve serves ADS on lis with the server's own gRPC server. It returns nil
// once Close has stopped it, ErrClosed if called after Close.
func (s *Server) Serve(lis net.Listener) error {
	err := s.gs.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return ErrClosed
	}
	return err
}

// Close ends every xDS stream and stops the server's own gRPC server,
// waiting for its handlers to return. It is idempotent; a second call
// returns once the first has stopped the server.
//
// The handlers take mu (a proxyless client's request materialises its
// names under it), so the server is stopped without it: stopping while
// holding it waited for a handler that waited for it (CI, a 10-minute hang
// in TestNamesUsersWrite).
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.gs.Stop()
	})
}

// Update translates st and hands the resources that changed to the caches,
// which push them to the clients subscribed to them. Resources that did
// not change (compared serialized) are not touched, so their versions stay
// and nothing is re-sent: a breaker flip sends route configurations only.
// On error nothing is changed.
func (s *Server) Update(st State) error {
	res, err := Translate(s.cfg, st)
	if err != nil {
		return err
	}
	want := map[string][]types.Resource{
		cacheEnvoyListeners:     resourceSlice(res.EnvoyListeners),
		cacheProxylessListeners: resourceSlice(res.ProxylessListeners),
		cacheRoutes:             resourceSlice(res.Routes),
		cacheGuardRoutes:        resourceSlice(res.GuardRoutes),
		cacheClusters:           resourceSlice(res.Clusters),
		cacheEndpoints:          resourceSlice(res.Endpoints),
	}
	served := make([]string, 0, len(st.Callees))
	for _, c := range st.Callees {
		served = append(served, c.Name)
	}
	slices.Sort(served)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	// The names clients asked for besides the callees' own follow the
	// callees: an alias of a callee, or an unknown name's error.
	for _, name := range s.aliases {
		if _, own := slices.BinarySearch(served, name); own {
			continue
		}
		l, err := nameListener(name, served)
		if err != nil {
			return err
		}
		want[cacheProxylessListeners] = append(want[cacheProxylessListeners], l)
	}
	type change struct {
		update  map[string]types.Resource
		bytes   map[string][]byte
		deleted []string
	}
	changes := map[string]*change{}
	for key, list := range want {
		ch := &change{update: map[string]types.Resource{}, bytes: map[string][]byte{}}
		names := map[string]bool{}
		for _, r := range list {
			name := cachev3.GetResourceName(r)
			names[name] = true
			b, err := cachev3.MarshalResource(r)
			if err != nil {
				return fmt.Errorf("serializing %s %s: %w", key, name, err)
			}
			if old, ok := s.published[key][name]; ok && bytes.Equal(old, b) {
				continue
			}
			ch.update[name], ch.bytes[name] = r, b
		}
		for name := range s.published[key] {
			if !names[name] {
				ch.deleted = append(ch.deleted, name)
			}
		}
		changes[key] = ch
	}

	// The tracker must know what the new routes carry before any client
	// can be sent them: the caches push synchronously.
	s.tr.publish(st, res.Breakers, s.cfg.Now(), changes[cacheRoutes].bytes, changes[cacheGuardRoutes].bytes)

	for _, key := range updateOrder {
		ch := changes[key]
		if len(ch.update) == 0 {
			continue
		}
		if err := s.caches[key].UpdateResources(ch.update, nil); err != nil {
			return fmt.Errorf("updating %s: %w", key, err)
		}
		for name, b := range ch.bytes {
			s.published[key][name] = b
		}
	}
	s.served = served
	for i := len(updateOrder) - 1; i >= 0; i-- {
		key := updateOrder[i]
		ch := changes[key]
		if len(ch.deleted) == 0 {
			continue
		}
		if err := s.caches[key].UpdateResources(nil, ch.deleted); err != nil {
			return fmt.Errorf("deleting from %s: %w", key, err)
		}
		for _, name := range ch.deleted {
			delete(s.published[key], name)
			if key == cacheRoutes || key == cacheGuardRoutes {
				s.tr.forget(name)
			}
		}
	}
	return nil
}

// Status returns a snapshot of the connected clients and the recent breaker
// transitions.
func (s *Server) Status() Status {
	clients, transitions := s.tr.status()
	return Status{VersionPrefix: s.prefix, Clients: clients, Transitions: transitions}
}

func resourceSlice[T proto.Message](list []T) []types.Resource {
	out := make([]types.Resource, len(list))
	for i, r := range list {
		out[i] = r
	}
	return out
}

// callbacks feeds go-control-plane's stream events to the tracker, and
// proxyless clients' listener names to the server (names.go).
type callbacks struct {
	tr  *tracker
	srv *Server
}

var _ serverv3.Callbacks = callbacks{}

func (c callbacks) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.tr.open(streamKey{id: id})
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.tr.close(streamKey{id: id}) }

func (c callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	if req.GetTypeUrl() == resourcev3.ListenerType && !isEnvoy(req.GetNode()) && c.srv != nil {
		c.srv.requestNames(req.GetResourceNames())
	}
	c.tr.request(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(),
		req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil, sotwSubscription(req))
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	bs := make([][]byte, len(resp.GetResources()))
	for i, a := range resp.GetResources() {
		bs[i] = a.GetValue()
	}
	c.tr.sent(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo(), bs)
}

func (c callbacks) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.tr.open(streamKey{delta: true, id: id})
	return nil
}

func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.tr.close(streamKey{delta: true, id: id})
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	c.tr.request(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(),
		req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil, deltaSubscription(req))
	return nil
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	bs := make([][]byte, len(resp.GetResources()))
	for i, r := range resp.GetResources() {
		bs[i] = r.GetResource().GetValue()
	}
	c.tr.sent(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo(), bs)
}

func (callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }

func (callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

// controlPlaneLogger adapts slog to go-control-plane's logger. Its Info is
// chatty (a line per watch), so it goes to Debug.
type controlPlaneLogger struct{ l *slog.Logger }

func (l controlPlaneLogger) Debugf(format string, args ...any) {
	l.l.Debug("go-control-plane: " + fmt.Sprintf(format, args...))
}

func (l controlPlaneLogger) Infof(format string, args ...any) {
	l.l.Debug("go-control-plane: " + fmt.Sprintf(format, args...))
}

func (l controlPlaneLogger) Warnf(format string, args ...any) {
	l.l.Warn("go-control-plane: " + fmt.Sprintf(format, args...))
}

func (l controlPlaneLogger) Errorf(format string, args ...any) {
	l.l.Error("go-control-plane: " + fmt.Sprintf(format, args...))
}
