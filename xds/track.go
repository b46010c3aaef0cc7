package xds

import (
	"cmp"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/colonymesh/colony/breaker"
)

// Limits on what the tracker remembers.
const (
	// maxTransitions is how many breaker transitions Status keeps.
	maxTransitions = 256
	// maxPending is how many unanswered responses per client and type are
	// remembered; a client answers each in order, so a handful suffices.
	maxPending = 16
	// routeHistory is how many past versions of each route configuration are
	// recognised in responses still in flight.
	routeHistory = 8 // four per kind of client (guard, other)
)

// Status is a snapshot of a Server's clients and of the breaker transitions
// it published.
type Status struct {
	// VersionPrefix starts every version this server sends.
	VersionPrefix string
	// Clients are the connected xDS streams, by stream.
	Clients []ClientStatus
	// Transitions are the most recent breaker transitions (up to 256), oldest
	// first.
	Transitions []TransitionStatus
}

// ClientStatus is one connected xDS stream (one Envoy, or one gRPC xDS
// client: a process's gRPC channels share one).
type ClientStatus struct {
	// Stream is go-control-plane's stream id (numbered separately for state
	// of the world and delta streams).
	Stream int64
	Delta  bool
	// NodeID, Cluster and UserAgent come from the client's node.
	NodeID    string
	Cluster   string
	UserAgent string
	// Envoy is set when the client is an Envoy (it gets EnvoyListeners).
	Envoy     bool
	Connected time.Time
	// Types is by resource type: "LDS", "RDS", "CDS", "EDS".
	Types map[string]TypeStatus
	// LastNACK is the client's most recent NACK, if any.
	LastNACK *NACK
}

// TypeStatus is what one client asked for and accepted of one type.
type TypeStatus struct {
	// Subscribed is the resource names the client last asked for; empty for
	// a wildcard subscription.
	Subscribed []string
	// Sent, Acked and Nacked count responses.
	Sent, Acked, Nacked int
	// LastSent is the version of the last response sent.
	LastSent   string
	LastSentAt time.Time
	// LastAcked is the last version the client ACKed.
	LastAcked   string
	LastAckedAt time.Time
}

// NACK is a client rejecting a response.
type NACK struct {
	NodeID string
	Stream int64
	// Type is "LDS", "RDS", "CDS" or "EDS".
	Type string
	// Version is the rejected version; Resources are the names the
	// rejected response carried.
	Version   string
	Resources []string
	// Reason is the client's error detail.
	Reason string
	At     time.Time
}

// TransitionStatus is one generation of one pair's breaker record, as
// published by the server, and the clients that enforce it.
type TransitionStatus struct {
	Caller     string
	Callee     string
	Generation uint64
	State      breaker.State
	// Initial marks a state already in force before this server started:
	// the first generation it saw for the pair, decided by the leader
	// (Since) before the server was created, so Since may lie long before
	// Seen. A pair's first transition that happens while the server runs is
	// live, not initial.
	Initial bool
	// Since is the leader's transition time (from the record); Seen is when
	// the sidecar learned it (Callee.BreakerSeen); Published is when Update
	// handed it to the caches.
	Since     time.Time
	Seen      time.Time
	Published time.Time
	// Enforced lists each client's first ACK of a route resource carrying
	// this generation.
	Enforced []Enforcement
}

// Enforcement is one client ACKing the routes that carry one breaker
// transition: from then on it enforces it.
type Enforcement struct {
	Caller     string
	Callee     string
	Generation uint64
	State      breaker.State
	// Initial is set when the client found this state on connecting (it
	// was published before the client's stream opened, or it is an
	// Initial transition): not a live transition, so its FromLeader says
	// nothing about trip-to-enforce latency. Every transition published
	// while the client is connected is live, a pair's first one included.
	Initial bool
	NodeID  string
	Stream  int64
	// Version is the route version the client ACKed; Sent is when the
	// server sent it, At when the ACK arrived.
	Version string
	Sent    time.Time
	At      time.Time
	// FromSeen is At minus the time the sidecar learned the transition.
	FromSeen time.Duration
	// FromLeader is At minus the leader's transition time: trip-to-enforce
	// latency, across two clocks (the leader's and this machine's).
	FromLeader time.Duration
}

type streamKey struct {
	delta bool
	id    int64
}

type tkey struct {
	callee string
	gen    uint64
}

type transition struct {
	TransitionStatus
	acked map[streamKey]bool
}

type sentResponse struct {
	nonce   string
	version string
	names   []string
	refs    []tkey
	at      time.Time
}

type typeTrack struct {
	TypeStatus
	subscribed map[string]bool
	pending    []sentResponse
}

type client struct {
	key       streamKey
	node      *corev3.Node
	connected time.Time
	types     map[string]*typeTrack
	lastNACK  *NACK
}

func (c *client) typ(typeURL string) *typeTrack {
	name := shortType(typeURL)
	t := c.types[name]
	if t == nil {
		t = &typeTrack{subscribed: map[string]bool{}}
		c.types[name] = t
	}
	return t
}

// tracker follows what each client was sent and what it ACKed or NACKed,
// and times breaker transitions from publication to enforcement. Its methods
// run on the xDS stream goroutines (through the server callbacks) and in
// Update.
type tracker struct {
	log        *slog.Logger
	now        func() time.Time
	started    time.Time // when the server was created
	onEnforced func(Enforcement)
	onNACK     func(NACK)

	mu      sync.Mutex
	clients map[streamKey]*client
	// routes maps the serialized bytes of a route configuration, as the
	// caches send it, to the breaker generations it carries.
	routes      map[string][]tkey
	routeKeys   map[string][]string // route name -> recent keys of routes, oldest first
	transitions map[tkey]*transition
	order       []tkey // transitions, oldest first
	lastGen     map[string]uint64
}

func newTracker(cfg Config, log *slog.Logger) *tracker {
	return &tracker{
		log:         log,
		now:         cfg.Now,
		started:     cfg.Now(),
		onEnforced:  cfg.OnEnforced,
		onNACK:      cfg.OnNACK,
		clients:     map[streamKey]*client{},
		routes:      map[string][]tkey{},
		routeKeys:   map[string][]string{},
		transitions: map[tkey]*transition{},
		lastGen:     map[string]uint64{},
	}
}

// publish records, before the caches are updated, the breaker generations
// of st and which route configuration bytes carry them.
func (t *tracker) publish(st State, carried map[string][]BreakerRef, now time.Time, changedRoutes ...map[string][]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range st.Callees {
		b := c.Breaker
		if b == nil {
			continue
		}
		k := tkey{c.Name, b.Generation}
		if _, ok := t.transitions[k]; ok {
			continue
		}
		last, seenBefore := t.lastGen[c.Name]
		if seenBefore && b.Generation < last {
			// An older record than one already published (a watch replay):
			// nothing new to enforce.
			continue
		}
		t.lastGen[c.Name] = b.Generation
		seen := c.BreakerSeen
		if seen.IsZero() {
			seen = now
		}
		t.transitions[k] = &transition{
			TransitionStatus: TransitionStatus{
				Caller: st.Caller, Callee: c.Name, Generation: b.Generation, State: b.State,
				Initial: !seenBefore && b.Since.Before(t.started), Since: b.Since, Seen: seen, Published: now,
			},
			acked: map[streamKey]bool{},
		}
		t.order = append(t.order, k)
		if len(t.order) > maxTransitions {
			delete(t.transitions, t.order[0])
			t.order = slices.Delete(t.order, 0, 1)
		}
	}
	// A route configuration has one version per kind of client (guard
	// clients' and the others'); each is remembered by its bytes.
	for _, changed := range changedRoutes {
		for name, b := range changed {
			var refs []tkey
			for _, r := range carried[name] {
				refs = append(refs, tkey{r.Callee, r.Generation})
			}
			key := string(b)
			t.routes[key] = refs
			keys := append(t.routeKeys[name], key)
			if len(keys) > routeHistory {
				delete(t.routes, keys[0])
				keys = slices.Delete(keys, 0, 1)
			}
			t.routeKeys[name] = keys
		}
	}
}

// forget drops the route history of a route configuration that was
// deleted.
func (t *tracker) forget(routeName string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.routeKeys[routeName] {
		delete(t.routes, k)
	}
	delete(t.routeKeys, routeName)
}

func (t *tracker) open(k streamKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clients[k] = &client{key: k, connected: t.now(), types: map[string]*typeTrack{}}
}

func (t *tracker) close(k streamKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.clients, k)
}

// client returns the stream's client, creating it if a callback came
// before open (it does not, but a missing entry must not panic).
func (t *tracker) client(k streamKey) *client {
	c := t.clients[k]
	if c == nil {
		c = &client{key: k, connected: t.now(), types: map[string]*typeTrack{}}
		t.clients[k] = c
	}
	return c
}

// sent records a response about to be sent: its nonce, version and the
// resources in it (by their serialized bytes, as the caches made them).
func (t *tracker) sent(k streamKey, typeURL, nonce, version string, resources [][]byte) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	tt := t.client(k).typ(typeURL)
	r := sentResponse{nonce: nonce, version: version, at: now}
	for _, b := range resources {
		r.names = append(r.names, resourceName(b))
		if typeURL == resourcev3.RouteType {
			r.refs = append(r.refs, t.routes[string(b)]...)
		}
	}
	tt.pending = append(tt.pending, r)
	if len(tt.pending) > maxPending {
		tt.pending = slices.Delete(tt.pending, 0, len(tt.pending)-maxPending)
	}
	tt.Sent++
	tt.LastSent, tt.LastSentAt = version, now
}

// request handles a request: the client's subscription and, when it
// answers a response (its nonce), the ACK or NACK of that response.
func (t *tracker) request(k streamKey, node *corev3.Node, typeURL, nonce string, errDetail string, nacked bool, subscribe func(map[string]bool)) {
	now := t.now()
	var enforced []Enforcement
	var nack *NACK

	t.mu.Lock()
	c := t.client(k)
	if node != nil {
		c.node = node
	}
	tt := c.typ(typeURL)
	subscribe(tt.subscribed)
	if nonce != "" {
		i := slices.IndexFunc(tt.pending, func(r sentResponse) bool { return r.nonce == nonce })
		if i >= 0 {
			r := tt.pending[i]
			tt.pending = slices.Delete(tt.pending, 0, i+1)
			if nacked && strings.Contains(errDetail, unknownNameMarker) {
				// The listener of an unknown name, rejected as intended
				// (names.go): not a NACK anyone must look into.
			} else if nacked {
				tt.Nacked++
				nack = &NACK{
					NodeID: c.node.GetId(), Stream: k.id, Type: shortType(typeURL),
					Version: r.version, Resources: r.names, Reason: errDetail, At: now,
				}
				c.lastNACK = nack
			} else {
				tt.Acked++
				tt.LastAcked, tt.LastAckedAt = r.version, now
				for _, ref := range r.refs {
					tr := t.transitions[ref]
					if tr == nil || tr.acked[k] {
						continue
					}
					tr.acked[k] = true
					e := Enforcement{
						Caller: tr.Caller, Callee: tr.Callee, Generation: tr.Generation, State: tr.State,
						Initial: tr.Initial || tr.Published.Before(c.connected), NodeID: c.node.GetId(), Stream: k.id, Version: r.version, Sent: r.at, At: now,
						FromSeen: now.Sub(tr.Seen), FromLeader: now.Sub(tr.Since),
					}
					tr.Enforced = append(tr.Enforced, e)
					enforced = append(enforced, e)
				}
			}
		}
	}
	t.mu.Unlock()

	if nack != nil {
		t.log.Warn("xds: client rejected resources",
			"node", nack.NodeID, "stream", nack.Stream, "type", nack.Type,
			"version", nack.Version, "resources", nack.Resources, "reason", nack.Reason)
		if t.onNACK != nil {
			t.onNACK(*nack)
		}
	}
	if t.onEnforced != nil {
		for _, e := range enforced {
			t.onEnforced(e)
		}
	}
}

func (t *tracker) status() (clients []ClientStatus, transitions []TransitionStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.clients {
		cs := ClientStatus{
			Stream: c.key.id, Delta: c.key.delta,
			NodeID: c.node.GetId(), Cluster: c.node.GetCluster(), UserAgent: c.node.GetUserAgentName(),
			Envoy: isEnvoy(c.node), Connected: c.connected,
			Types: map[string]TypeStatus{},
		}
		for name, tt := range c.types {
			ts := tt.TypeStatus
			ts.Subscribed = slices.Sorted(maps.Keys(tt.subscribed))
			cs.Types[name] = ts
		}
		if c.lastNACK != nil {
			n := *c.lastNACK
			n.Resources = slices.Clone(n.Resources)
			cs.LastNACK = &n
		}
		clients = append(clients, cs)
	}
	slices.SortFunc(clients, func(a, b ClientStatus) int {
		if a.Delta != b.Delta {
			if a.Delta {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Stream, b.Stream)
	})
	for _, k := range t.order {
		ts := t.transitions[k].TransitionStatus
		ts.Enforced = slices.Clone(ts.Enforced)
		transitions = append(transitions, ts)
	}
	return clients, transitions
}

// shortType names a resource type the way people say it.
func shortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ListenerType:
		return "LDS"
	case resourcev3.RouteType:
		return "RDS"
	case resourcev3.ClusterType:
		return "CDS"
	case resourcev3.EndpointType:
		return "EDS"
	}
	return typeURL
}

// resourceName reads field 1 of a serialized resource: the name of a
// Listener, RouteConfiguration or Cluster, the cluster_name of a
// ClusterLoadAssignment. It saves decoding whole resources on every
// response.
func resourceName(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}

// sotwSubscription and deltaSubscription update a client's subscribed
// names from a request: a state-of-the-world request lists them all, a delta
// one lists changes.
func sotwSubscription(req *discoveryv3.DiscoveryRequest) func(map[string]bool) {
	return func(sub map[string]bool) {
		clear(sub)
		for _, n := range req.GetResourceNames() {
			if n != "*" {
				sub[n] = true
			}
		}
	}
}

func deltaSubscription(req *discoveryv3.DeltaDiscoveryRequest) func(map[string]bool) {
	return func(sub map[string]bool) {
		for _, n := range req.GetResourceNamesSubscribe() {
			if n != "*" {
				sub[n] = true
			}
		}
		for _, n := range req.GetResourceNamesUnsubscribe() {
			delete(sub, n)
		}
	}
}
