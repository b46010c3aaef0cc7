// Package sidecar is the process that runs beside every service instance. It
// holds a session with the coordinator cluster and registers the instance;
// it mirrors the breaker records of its service (as caller) and the
// registry of instances; it sums the outcomes its data plane and apps report
// and sends them to the coordinator every report interval; and it hands
// what to enforce to the local data plane (the xDS server for Envoy and
// proxyless gRPC, and apps following WatchBreakers). When the coordinator is
// unreachable for longer than a grace period it applies a degraded mode.
package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/outcome"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/xds"
)

// Mode is how the sidecar decides what to enforce.
type Mode string

const (
	// ModeCoordinator: the coordinator's records, fresh.
	ModeCoordinator Mode = "coordinator"
	// LastKnown keeps enforcing the last records received (fail-static).
	LastKnown Mode = "last-known"
	// Local runs a breaker per pair on this instance's own outcomes
	// (gobreaker's semantics, from the pair's policy).
	Local Mode = "local"
	// FailOpen lets every call through.
	FailOpen Mode = "fail-open"
	// FailClosed rejects every call.
	FailClosed Mode = "fail-closed"
)

// ParseMode parses a degraded mode name.
func ParseMode(s string) (Mode, error) {
	if slices.Contains(breaker.DegradedModes, s) { // one list: what policies accept
		return Mode(s), nil
	}
	return "", fmt.Errorf("unknown degraded mode %q (want one of %v)", s, breaker.DegradedModes)
}

// Registration is what a sidecar writes at contract.RegistrationPath (an
// ephemeral node of its session): how to reach the instance.
type Registration = contract.Registration

// Config configures a Sidecar.
type Config struct {
	// Service and Instance name this instance; Instance must be unique in
	// the service (a pod name, host:port...).
	Service, Instance string
	// Coordinators are the coordinator nodes' gRPC addresses.
	Coordinators []string
	// Address is the service's own host:port, registered for callers.
	Address string
	Zone    string
	// Protocol is "grpc" (default) or "http".
	Protocol string
	// APIAddr is where the sidecar serves its local API (and, when an
	// enforcer registers on the same server, xDS): default 127.0.0.1:7500.
	APIAddr string
	// ReportInterval is how often summed outcomes go to the coordinator.
	ReportInterval time.Duration
	// SessionTTL is the coordinator session's TTL: the instance's
	// registration disappears this long after the sidecar dies.
	SessionTTL time.Duration
	// DegradedAfter is how long the coordinator may stay silent before
	// DegradedMode applies.
	DegradedAfter time.Duration
	// DegradedMode applies when the coordinator is unreachable (default
	// LastKnown); DegradedModes overrides it per callee.
	DegradedMode  Mode
	DegradedModes map[string]Mode
	// Callees, when set, limits the data plane's resources to these services
	// (and any with a breaker record for this service). Empty: every
	// registered service, which in a large mesh makes every sidecar carry
	// every service (Istio's Sidecar resource solves the same problem).
	Callees []string
	Logger  *slog.Logger
	// TracerProvider, when set, traces the sidecar's part of a transition's
	// path (watch delivery, xDS ACKs), linked to the coordinator's spans
	// through the records' traceparent. Nil: no spans.
	TracerProvider trace.TracerProvider
	// Metrics, when set, receives the sidecar's Prometheus collector.
	Metrics prometheus.Registerer
}

func (cfg *Config) withDefaults() {
	if cfg.Protocol == "" {
		cfg.Protocol = "grpc"
	}
	if cfg.APIAddr == "" {
		cfg.APIAddr = "127.0.0.1:7500"
	}
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = 250 * time.Millisecond
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 6 * time.Second
	}
	if cfg.DegradedAfter == 0 {
		cfg.DegradedAfter = 5 * time.Second
	}
	if cfg.DegradedMode == "" {
		cfg.DegradedMode = LastKnown
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
}

// Validate reports every problem with cfg, naming the field.
func (cfg Config) Validate() error {
	var errs []error
	if err := breaker.ValidateServiceName(cfg.Service); err != nil {
		errs = append(errs, fmt.Errorf("service: %w", err))
	}
	if err := breaker.ValidateInstanceID(cfg.Instance); err != nil {
		errs = append(errs, fmt.Errorf("instance: %w", err))
	}
	if len(cfg.Coordinators) == 0 {
		errs = append(errs, errors.New("coordinators: at least one address is required"))
	}
	if _, port, err := net.SplitHostPort(cfg.Address); err != nil {
		errs = append(errs, fmt.Errorf("address: want host:port of the service, got %q", cfg.Address))
	} else if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		errs = append(errs, fmt.Errorf("address: port %q is not 1..65535", port))
	}
	if cfg.Protocol != "grpc" && cfg.Protocol != "http" {
		errs = append(errs, fmt.Errorf("protocol: want grpc or http, got %q", cfg.Protocol))
	}
	if cfg.ReportInterval < 10*time.Millisecond || cfg.ReportInterval > time.Minute {
		errs = append(errs, fmt.Errorf("report interval: %v is outside 10ms..1m", cfg.ReportInterval))
	}
	if cfg.DegradedAfter <= 0 {
		errs = append(errs, errors.New("degraded after: must be positive"))
	}
	if _, err := ParseMode(string(cfg.DegradedMode)); err != nil {
		errs = append(errs, fmt.Errorf("degraded mode: %w", err))
	}
	for i, callee := range cfg.Callees {
		if err := breaker.ValidateServiceName(callee); err != nil {
			errs = append(errs, fmt.Errorf("callees[%d]: %w", i, err))
		}
	}
	for callee, m := range cfg.DegradedModes {
		if _, err := ParseMode(string(m)); err != nil {
			errs = append(errs, fmt.Errorf("degraded mode for %s: %w", callee, err))
		}
	}
	return errors.Join(errs...)
}

// Endpoint is one registered instance of a callee.
type Endpoint = Registration

// Callee is what the sidecar enforces for calls to one service.
type Callee struct {
	Name string
	// Protocol is the callee's ("grpc" or "http"), from its registrations.
	Protocol  string
	Endpoints []Endpoint // sorted by instance
	// Record is the breaker to enforce (nil: no breaker yet, CLOSED).
	Record *breaker.PairRecord
	// Source is ModeCoordinator or the degraded mode that decided Record.
	Source Mode
	// Seen is when the sidecar learned the coordinator's current record.
	Seen time.Time
}

// View is everything the local data plane must enforce.
type View struct {
	Service, Instance string
	Mode              Mode
	Callees           []Callee // sorted by name
}

// Enforcer applies Views to a data plane (the xDS server). Update must not
// block for long: it is called with every change.
type Enforcer interface {
	Update(View) error
}

// Sidecar is one running sidecar. Start it with New; Close stops it.
type Sidecar struct {
	cfg Config
	log *slog.Logger
	c   *client.Client
	// closing is set when Close starts, so the session it closes is not
	// mistaken for a lost one.
	closing atomic.Bool

	grpc *grpc.Server
	lis  net.Listener

	mu          sync.Mutex
	records     map[string]*coordRecord            // callee -> the coordinator's record
	services    map[string]map[string]Registration // service -> instance -> registration
	policies    map[string]breaker.PolicySet       // callee -> policies
	session     *client.Session
	lastReply   time.Time // the coordinator last answered (besides keep-alives)
	degraded    bool
	agg         map[string]*breaker.Counts     // callee -> this period's counts
	local       map[string]*localBreaker       // callee -> Local mode breaker
	classifiers map[string]*breaker.Classifier // callee -> from its policy; cleared when policies change
	enforcers   []Enforcer
	subs        map[chan struct{}]struct{} // WatchBreakers streams to poke
	lastView    View
	metrics     *metrics
	started     time.Time // New: a sidecar that never reached the coordinator is stale from then

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type coordRecord struct {
	rec  breaker.PairRecord
	seen time.Time
}

// New starts a sidecar: it listens on cfg.APIAddr and connects to the
// coordinators in the background (it serves the last known state, empty at
// first, until it does). Enforcers get every View.
func New(cfg Config, enforcers ...Enforcer) (*Sidecar, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := client.New(client.Config{Endpoints: cfg.Coordinators, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("sidecar API address: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sidecar{
		cfg: cfg, log: cfg.Logger.With("service", cfg.Service, "instance", cfg.Instance), c: c,
		lis: lis, grpc: grpc.NewServer(),
		records: map[string]*coordRecord{}, services: map[string]map[string]Registration{},
		policies: map[string]breaker.PolicySet{}, agg: map[string]*breaker.Counts{},
		local: map[string]*localBreaker{}, classifiers: map[string]*breaker.Classifier{}, enforcers: enforcers, subs: map[chan struct{}]struct{}{},
		ctx: ctx, cancel: cancel, started: time.Now(),
	}
	s.metrics = newMetrics(s)
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(s.metrics); err != nil {
			cancel()
			lis.Close()
			c.Close()
			return nil, fmt.Errorf("registering the sidecar's metrics: %w", err)
		}
	}
	colonyv1.RegisterSidecarServer(s.grpc, &api{s: s})
	lk := newLocks(s)
	colonyv1.RegisterLocksServer(s.grpc, lk)
	colonyv1.RegisterElectionsServer(s.grpc, lk)
	accesslogv3.RegisterAccessLogServiceServer(s.grpc, &accessLogs{s: s})
	for _, e := range enforcers {
		if x, ok := e.(*XDS); ok {
			x.observe(func(en xds.Enforcement) {
				s.metrics.observe(en)
				s.traceAck(en)
			}, func(xds.NACK) { s.metrics.nacks.Inc() })
		}
		// An enforcer that serves gRPC (xDS, Envoy's access logs) shares the
		// sidecar's port: one address for apps, Envoy and proxyless clients.
		if r, ok := e.(interface{ Register(grpc.ServiceRegistrar) }); ok {
			r.Register(s.grpc)
		}
	}
	s.publish() // enforcers have the initial view before any client connects
	s.goFunc(func() {
		if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("sidecar API server stopped", "err", err)
		}
	})
	mirrors := []*mirror{
		{root: contract.CallerBreakers(cfg.Service), depth: 1, apply: s.applyRecord},
		{root: contract.PoliciesRoot, depth: 1, apply: s.applyPolicy},
	}
	// The registry: all of it, or with Callees only theirs, so a sidecar in
	// a large mesh reads and follows the instances it routes to, not every
	// registration change of every service.
	if len(cfg.Callees) == 0 {
		mirrors = append(mirrors, &mirror{root: contract.ServicesRoot, depth: 2, apply: s.registryApplier("")})
	}
	for _, callee := range cfg.Callees {
		mirrors = append(mirrors, &mirror{root: contract.ServiceDir(callee), depth: 1, apply: s.registryApplier(callee)})
	}
	for _, m := range mirrors {
		m.c, m.log, m.contact = c, s.log, s.contact
		s.goFunc(func() { m.run(ctx) })
	}
	s.goFunc(s.runSession)
	s.goFunc(s.runReports)
	s.goFunc(s.runStaleness)
	return s, nil
}

// GRPCServer returns the server of the sidecar's local API, for enforcers
// that serve on it too (xDS, Envoy's access log service). Register before
// the first client connects.
func (s *Sidecar) GRPCServer() *grpc.Server { return s.grpc }

// Addr returns the address of the local API.
func (s *Sidecar) Addr() string { return s.lis.Addr().String() }

func (s *Sidecar) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Close deregisters the instance (closing its session) and stops every
// goroutine of the sidecar.
func (s *Sidecar) Close() error {
	s.closing.Store(true)
	s.mu.Lock()
	sess := s.session
	s.mu.Unlock()
	var err error
	if sess != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = sess.Close(ctx)
		cancel()
	}
	s.cancel()
	s.mu.Lock()
	for ch := range s.subs {
		close(ch)
		delete(s.subs, ch)
	}
	s.mu.Unlock()
	s.grpc.Stop()
	s.wg.Wait()
	return errors.Join(err, s.c.Close())
}

// contact records that the coordinator answered.
func (s *Sidecar) contact() {
	s.mu.Lock()
	s.lastReply = time.Now()
	s.mu.Unlock()
}

// stale returns how long ago the coordinator last answered (under mu).
func (s *Sidecar) staleLocked(now time.Time) time.Duration {
	last := s.lastReply
	if s.session != nil && s.session.LastAck().After(last) {
		last = s.session.LastAck()
	}
	if last.IsZero() {
		return -1 // never reached it
	}
	return now.Sub(last)
}

// runSession keeps a session open and the instance registered under it,
// opening a new session (and registering again) whenever one is lost.
func (s *Sidecar) runSession() {
	backoff := 100 * time.Millisecond
	for s.ctx.Err() == nil {
		sess, err := s.register()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("registering with the coordinator failed; retrying", "err", err, "in", backoff)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		s.log.Info("registered", "session", sess.ID())
		select {
		case <-s.ctx.Done():
			return
		case <-sess.Done():
			if s.closing.Load() {
				return
			}
			s.log.Warn("coordinator session lost; registering again", "err", sess.Err())
		}
	}
}

// register opens a session and creates the instance's ephemeral node,
// replacing one left by an earlier session of the same instance.
func (s *Sidecar) register() (*client.Session, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	sess, err := s.c.OpenSession(ctx, s.cfg.SessionTTL, s.cfg.Service+"/"+s.cfg.Instance+"/sidecar")
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(s.cfg.Address)
	p, _ := strconv.Atoi(port)
	data, _ := json.Marshal(Registration{
		Service: s.cfg.Service, Instance: s.cfg.Instance, Address: host, Port: p,
		Zone: s.cfg.Zone, Protocol: s.cfg.Protocol, XDSNode: s.cfg.Service + "/" + s.cfg.Instance, Sidecar: s.Addr(),
	})
	svc := contract.ServiceDir(s.cfg.Service)
	if _, _, err := s.c.Create(ctx, svc, nil); err != nil && !errors.Is(err, client.ErrNodeExists) {
		sess.Close(ctx)
		return nil, fmt.Errorf("creating %s: %w", svc, err)
	}
	node := path.Join(svc, s.cfg.Instance)
	for range 3 {
		_, _, err = s.c.Create(ctx, node, data, client.Ephemeral(sess.ID()))
		if !errors.Is(err, client.ErrNodeExists) {
			break
		}
		// Left by an earlier run of this instance, whose session has not
		// expired yet: this run replaces it.
		if err = s.c.Delete(ctx, node, client.AnyVersion); err != nil && !errors.Is(err, client.ErrNoNode) {
			break
		}
	}
	if err != nil {
		sess.Close(ctx)
		return nil, fmt.Errorf("registering %s: %w", node, err)
	}
	s.mu.Lock()
	s.session = sess
	s.mu.Unlock()
	return sess, nil
}

// applyRecord is the mirror's callback for /colony/breakers/<service>.
func (s *Sidecar) applyRecord(u mirrorUpdate) {
	now := time.Now()
	decode := func(p string, data []byte) (string, *breaker.PairRecord) {
		var rec breaker.PairRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			s.log.Error("unreadable breaker record; keeping the previous one", "path", p, "err", err)
			return "", nil
		}
		return path.Base(p), &rec
	}
	s.mu.Lock()
	if u.full != nil {
		next := map[string]*coordRecord{}
		for p, data := range u.full {
			callee, rec := decode(p, data)
			if rec == nil {
				continue
			}
			cr := &coordRecord{rec: *rec, seen: now}
			if old, ok := s.records[callee]; ok && old.rec.Generation == rec.Generation && old.rec.State == rec.State {
				cr.seen = old.seen
			}
			next[callee] = cr
		}
		s.records = next
	} else if u.deleted {
		delete(s.records, path.Base(u.path))
	} else if callee, rec := decode(u.path, u.data); rec != nil {
		s.records[callee] = &coordRecord{rec: *rec, seen: now}
		defer s.traceRecord(rec, now)
	}
	s.mu.Unlock()
	s.publish()
}

// registryApplier returns the mirror callback for the registry: of one
// service's instances, or of every service's when service is empty. A full
// read replaces exactly what that mirror covers.
func (s *Sidecar) registryApplier(service string) func(mirrorUpdate) {
	decode := func(p string, data []byte) (svc, inst string, r Registration, ok bool) {
		if levels(contract.ServicesRoot, p) != 2 {
			return "", "", r, false
		}
		svc, inst = path.Base(path.Dir(p)), path.Base(p)
		if err := json.Unmarshal(data, &r); err != nil || r.Port <= 0 {
			return svc, inst, r, false
		}
		return svc, inst, r, true
	}
	return func(u mirrorUpdate) {
		s.mu.Lock()
		if u.full != nil {
			if service == "" {
				s.services = map[string]map[string]Registration{}
			} else {
				delete(s.services, service)
			}
			for p, data := range u.full {
				if svc, inst, r, ok := decode(p, data); ok {
					if s.services[svc] == nil {
						s.services[svc] = map[string]Registration{}
					}
					s.services[svc][inst] = r
				}
			}
		} else {
			svc, inst, r, ok := decode(u.path, u.data)
			switch {
			case u.deleted && svc != "":
				delete(s.services[svc], inst)
			case ok:
				if s.services[svc] == nil {
					s.services[svc] = map[string]Registration{}
				}
				s.services[svc][inst] = r
			}
		}
		s.mu.Unlock()
		s.publish()
	}
}

// applyPolicy is the mirror's callback for /colony/policies.
func (s *Sidecar) applyPolicy(u mirrorUpdate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.classifiers) // rebuilt from the new policies on the next call
	decode := func(data []byte) (breaker.PolicySet, bool) {
		var ps breaker.PolicySet
		return ps, json.Unmarshal(data, &ps) == nil && ps.Validate() == nil
	}
	if u.full != nil {
		s.policies = map[string]breaker.PolicySet{}
		for p, data := range u.full {
			if ps, ok := decode(data); ok {
				s.policies[path.Base(p)] = ps
			}
		}
		return
	}
	if u.deleted {
		delete(s.policies, path.Base(u.path))
	} else if ps, ok := decode(u.data); ok {
		s.policies[path.Base(u.path)] = ps
	}
}

// policy returns the policy for calls to callee (under mu).
func (s *Sidecar) policyLocked(callee string) breaker.Policy {
	if ps, ok := s.policies[callee]; ok {
		return ps.For(s.cfg.Service)
	}
	return breaker.DefaultPolicy()
}

// modeFor returns the degraded mode for calls to callee.
// The sidecar's per-callee flag wins, then the pair's policy, then the
// sidecar's default (under mu).
func (s *Sidecar) modeFor(callee string) Mode {
	if m, ok := s.cfg.DegradedModes[callee]; ok {
		return m
	}
	if m, err := ParseMode(s.policyLocked(callee).DegradedMode); err == nil {
		return m
	}
	return s.cfg.DegradedMode
}

// runStaleness watches how long the coordinator has been silent and
// switches degraded modes on and off.
func (s *Sidecar) runStaleness() {
	t := time.NewTicker(min(250*time.Millisecond, s.cfg.DegradedAfter/4))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		stale := s.staleLocked(time.Now())
		degraded := stale < 0 && time.Since(s.started) > s.cfg.DegradedAfter || stale > s.cfg.DegradedAfter
		changed := degraded != s.degraded
		s.degraded = degraded
		if changed && !degraded {
			clear(s.local) // local breakers start afresh next time
		}
		localMode := degraded && s.anyLocalLocked()
		s.mu.Unlock()
		if changed {
			if degraded {
				s.log.Warn("coordinator unreachable; degraded mode", "stale", stale, "mode", s.cfg.DegradedMode)
			} else {
				s.log.Info("coordinator reachable again; enforcing its records")
			}
		}
		if changed || localMode {
			s.publish()
		}
	}
}

func (s *Sidecar) anyLocalLocked() bool {
	if s.cfg.DegradedMode == Local {
		return true
	}
	for callee := range s.policies {
		if s.modeFor(callee) == Local {
			return true
		}
	}
	for _, m := range s.cfg.DegradedModes {
		if m == Local {
			return true
		}
	}
	return false
}

// viewLocked computes what to enforce now (under mu).
func (s *Sidecar) viewLocked(now time.Time) View {
	v := View{Service: s.cfg.Service, Instance: s.cfg.Instance, Mode: ModeCoordinator}
	if s.degraded {
		v.Mode = s.cfg.DegradedMode
	}
	names := map[string]bool{}
	for callee := range s.records {
		names[callee] = true
	}
	if len(s.cfg.Callees) > 0 {
		for _, svc := range s.cfg.Callees {
			names[svc] = true
		}
	} else {
		for svc := range s.services {
			if svc != s.cfg.Service {
				names[svc] = true
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		c := Callee{Name: name, Protocol: "grpc", Source: ModeCoordinator}
		insts := s.services[name]
		for _, id := range slices.Sorted(maps.Keys(insts)) {
			c.Endpoints = append(c.Endpoints, insts[id])
			c.Protocol = insts[id].Protocol
		}
		if cr, ok := s.records[name]; ok {
			rec := cr.rec.Clone()
			c.Record, c.Seen = &rec, cr.seen
		}
		if s.degraded {
			c.Source = s.modeFor(name)
			c.Record = s.degradedRecordLocked(name, c.Record, c.Source, now)
		}
		v.Callees = append(v.Callees, c)
	}
	return v
}

// degradedRecordLocked is the record a degraded mode enforces for callee.
func (s *Sidecar) degradedRecordLocked(callee string, last *breaker.PairRecord, m Mode, now time.Time) *breaker.PairRecord {
	rec := breaker.PairRecord{Caller: s.cfg.Service, Callee: callee, Cause: "degraded:" + string(m)}
	if last != nil {
		rec.Generation = last.Generation
	}
	switch m {
	case LastKnown:
		return last
	case FailOpen:
		rec.State = breaker.Closed
	case FailClosed:
		rec.State = breaker.Open
	case Local:
		lb := s.local[callee]
		if lb == nil {
			lb = newLocalBreaker(callee, s.policyLocked(callee), last)
			s.local[callee] = lb
		}
		rec.State = lb.state()
		if rec.State == breaker.HalfOpen {
			rec.Probes = map[string]int{s.cfg.Instance: lb.probes()}
		}
	}
	rec.Since = now
	return &rec
}

// publish hands the current view to the enforcers and pokes WatchBreakers
// streams.
func (s *Sidecar) publish() {
	s.mu.Lock()
	v := s.viewLocked(time.Now())
	same := viewsEqual(v, s.lastView)
	s.lastView = v
	enforcers := slices.Clone(s.enforcers)
	if !same {
		for ch := range s.subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	s.mu.Unlock()
	if same {
		return
	}
	for _, e := range enforcers {
		if err := e.Update(v); err != nil {
			s.log.Error("data plane update failed", "err", err)
		}
	}
}

func viewsEqual(a, b View) bool {
	if a.Mode != b.Mode || len(a.Callees) != len(b.Callees) {
		return false
	}
	for i := range a.Callees {
		x, y := a.Callees[i], b.Callees[i]
		if x.Name != y.Name || x.Protocol != y.Protocol || x.Source != y.Source || !slices.Equal(x.Endpoints, y.Endpoints) {
			return false
		}
		if (x.Record == nil) != (y.Record == nil) {
			return false
		}
		// What of a record matters to enforcement.
		if xr, yr := x.Record, y.Record; xr != nil && (xr.State != yr.State || xr.Generation != yr.Generation ||
			xr.Cause != yr.Cause || !maps.Equal(xr.Probes, yr.Probes)) {
			return false
		}
	}
	return true
}

// Report adds outcome counts for calls to callee (from the data plane or an
// app) to the current report period. In Local mode they also feed the local
// breaker.
func (s *Sidecar) Report(callee string, c breaker.Counts) error {
	if err := breaker.ValidateServiceName(callee); err != nil {
		return fmt.Errorf("callee: %w", err)
	}
	if err := c.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agg[callee]
	if a == nil {
		if len(s.agg) >= 10000 {
			return fmt.Errorf("callee %s: this sidecar already reports for 10000 callees, its limit", callee)
		}
		a = &breaker.Counts{}
		s.agg[callee] = a
	}
	// A period's trailing run: a report with successes restarts it.
	if c.Successes > 0 {
		a.TrailingFailures = c.TrailingFailures
	} else {
		a.TrailingFailures += c.Failures
	}
	a.Successes = min(a.Successes+c.Successes, breaker.MaxCount)
	a.Failures = min(a.Failures+c.Failures, breaker.MaxCount)
	a.Slow = min(a.Slow+c.Slow, a.Successes+a.Failures)
	a.Rejected = min(a.Rejected+c.Rejected, breaker.MaxCount)
	a.Excluded = min(a.Excluded+c.Excluded, breaker.MaxCount)
	a.TrailingFailures = min(a.TrailingFailures, a.Failures)
	if lb := s.local[callee]; lb != nil && s.degraded {
		lb.feed(c)
	}
	return nil
}

// runReports sends the summed outcomes every report interval.
func (s *Sidecar) runReports() {
	t := time.NewTicker(s.cfg.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		agg := s.agg
		s.agg = map[string]*breaker.Counts{}
		s.mu.Unlock()
		if len(agg) == 0 {
			continue
		}
		reports := make([]*colonyv1.OutcomeReport, 0, len(agg))
		for _, callee := range slices.Sorted(maps.Keys(agg)) {
			c := agg[callee]
			reports = append(reports, &colonyv1.OutcomeReport{
				Caller: s.cfg.Service, Callee: callee, Instance: s.cfg.Instance,
				Counts: outcome.ToProto(*c),
			})
		}
		for len(reports) > 0 {
			n := min(len(reports), contract.MaxOutcomesPerReport)
			ctx, cancel := context.WithTimeout(s.ctx, 2*s.cfg.ReportInterval)
			err := s.c.Report(ctx, reports[:n]...)
			cancel()
			if err == nil {
				s.contact()
				s.metrics.reportsSent.Add(float64(n))
			} else if s.ctx.Err() == nil {
				s.metrics.reportsLost.Add(float64(n))
				// Soft state: the next period brings fresh counts.
				s.log.Debug("outcome report dropped", "pairs", n, "err", err)
			}
			reports = reports[n:]
		}
	}
}

// Status describes the sidecar now.
func (s *Sidecar) Status() *colonyv1.SidecarStatusResponse {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &colonyv1.SidecarStatusResponse{
		Service: s.cfg.Service, Instance: s.cfg.Instance, Mode: string(ModeCoordinator), Degraded: s.degraded,
		StaleMs: s.staleLocked(now).Milliseconds(),
	}
	if s.session != nil {
		st.SessionId = s.session.ID()
	}
	if s.degraded {
		st.Mode = string(s.cfg.DegradedMode)
	}
	for _, c := range s.lastView.Callees {
		ps := &colonyv1.PairStatus{Callee: c.Name, State: breaker.Closed.String(), Source: string(c.Source), Endpoints: int32(len(c.Endpoints))}
		if c.Record != nil {
			ps.State, ps.Generation = c.Record.State.String(), c.Record.Generation
		}
		if cr, ok := s.records[c.Name]; ok {
			ps.CoordinatorState = cr.rec.State.String()
			ps.SeenMs, ps.SinceMs = cr.seen.UnixMilli(), cr.rec.Since.UnixMilli()
		}
		st.Pairs = append(st.Pairs, ps)
	}
	for _, e := range s.enforcers {
		if d, ok := e.(interface{ Describe() []string }); ok {
			st.Enforcers = append(st.Enforcers, d.Describe()...)
		}
		if m, ok := e.(interface{ Enforcements() []xds.Enforcement }); ok {
			list := m.Enforcements()
			for _, en := range list[max(0, len(list)-maxStatusEnforcements):] {
				st.Enforcements = append(st.Enforcements, enforcementStatus(en))
			}
		}
	}
	sort.Strings(st.Enforcers)
	if n := len(st.Enforcements); n > maxStatusEnforcements {
		st.Enforcements = st.Enforcements[n-maxStatusEnforcements:]
	}
	return st
}

// maxStatusEnforcements bounds the trip-to-enforce measurements in Status.
const maxStatusEnforcements = 200

func enforcementStatus(e xds.Enforcement) *colonyv1.Enforcement {
	return &colonyv1.Enforcement{
		Callee: e.Callee, Generation: e.Generation, State: e.State.String(), Client: e.NodeID,
		AtMs: e.At.UnixMilli(), FromLeaderUs: e.FromLeader.Microseconds(), FromSeenUs: e.FromSeen.Microseconds(),
		Initial: e.Initial,
	}
}

// View returns what the sidecar enforces now.
func (s *Sidecar) View() View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastView
}

// subscribe returns a channel poked on every change of the view; it is
// closed when the sidecar closes.
func (s *Sidecar) subscribe() (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		close(ch)
		return ch, func() {}
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}
