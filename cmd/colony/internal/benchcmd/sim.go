package benchcmd

// One simulated sidecar: what package sidecar does against the
// coordinator, without the data plane. Session and registration as in
// sidecar/session.go, mirrors as in sidecar/mirror.go (watch first, then
// read every node with one Get each, then follow the watch), reports as in
// sidecar/reports.go: through the same client.Report, so on the same
// ReportStream, with the same move off the leader.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/outcome"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

type sim struct {
	f                 *fleet
	idx               int
	service, instance string
	callees           []string              // reported on; their registrations are mirrored
	registry          map[string]*simMirror // callee -> the mirror of its instances
	c                 *client.Client
	// pending counts what must happen before the sidecar is ready: its
	// registration and each mirror's first read.
	pending atomic.Int32
}

func newSim(f *fleet, idx int) *sim {
	svc := idx % f.services
	s := &sim{
		f: f, idx: idx,
		service:  serviceName(f.cfg.Prefix, svc),
		instance: fmt.Sprintf("i%05d", idx),
	}
	for k := 1; k <= f.cfg.Callees && k < f.services; k++ {
		s.callees = append(s.callees, serviceName(f.cfg.Prefix, (svc+k)%f.services))
	}
	return s
}

// done marks one readiness step.
func (s *sim) done() {
	if s.pending.Add(-1) == 0 {
		if s.f.ready.Add(1) == int64(s.f.cfg.Sidecars) {
			close(s.f.readyCh)
		}
	}
}

// run runs the sidecar until ctx ends, then closes its session and client.
func (s *sim) run(ctx context.Context) {
	// A context of the sidecar's own: the contexts of its calls hang off
	// it, not off the fleet's, whose lock thousands of sidecars would
	// otherwise contend for (and whose cancellation would walk them all).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	eps := slices.Concat(s.f.cfg.Endpoints[s.idx%len(s.f.cfg.Endpoints):], s.f.cfg.Endpoints[:s.idx%len(s.f.cfg.Endpoints)])
	c, err := client.New(client.Config{Endpoints: eps, TLS: s.f.cfg.TLS})
	if err != nil {
		s.f.fail("client", err)
		return
	}
	s.c = c
	defer c.Close()
	// The registry: only the callees' instances, as a sidecar configured
	// with its callees mirrors (a sidecar without mirrors every service's,
	// which a fleet of thousands cannot afford).
	mirrors := []*simMirror{
		{s: s, name: "breakers", root: contract.CallerBreakers(s.service), onRecord: s.applyRecord},
		{s: s, name: "policies", root: contract.PoliciesRoot},
	}
	s.registry = map[string]*simMirror{}
	for _, callee := range s.callees {
		m := &simMirror{s: s, name: "registry", root: contract.ServiceDir(callee)}
		s.registry[callee] = m
		mirrors = append(mirrors, m)
	}
	s.pending.Store(int32(1 + len(mirrors)))
	var wg sync.WaitGroup
	sessDone := make(chan struct{})
	wg.Go(func() { s.runSession(ctx, sessDone) })
	for _, m := range mirrors {
		wg.Go(func() { m.run(ctx) })
	}
	wg.Go(func() { s.runReports(ctx, sessDone) })
	wg.Wait()
}

// runSession keeps a session open and the instance registered under it;
// when ctx ends it closes the session, which removes the registration.
func (s *sim) runSession(ctx context.Context, registered chan struct{}) {
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		sess, err := s.register(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.f.fail("register", err)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if first {
			first = false
			close(registered)
			s.done()
		}
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := sess.Close(cctx); err != nil {
				s.f.fail("close session", err)
			}
			cancel()
			return
		case <-sess.Done():
			s.f.fail("session lost", sess.Err())
		}
	}
}

// register opens a session and creates the instance's ephemeral node,
// replacing one left by an earlier session, as the sidecar does.
func (s *sim) register(ctx context.Context) (*client.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sess, err := s.c.OpenSession(ctx, s.f.cfg.SessionTTL, s.service+"/"+s.instance+"/sidecar")
	if err != nil {
		return nil, fmt.Errorf("opening a session: %w", err)
	}
	data, _ := json.Marshal(contract.Registration{
		Service: s.service, Instance: s.instance, Address: "127.0.0.1", Port: 10000 + s.idx%50000,
		Protocol: "grpc", XDSNode: s.service + "/" + s.instance, Sidecar: "127.0.0.1:1",
	})
	svc := contract.ServiceDir(s.service)
	if _, _, err := s.c.Create(ctx, svc, nil); err != nil && !errors.Is(err, client.ErrNodeExists) {
		sess.Close(ctx)
		return nil, fmt.Errorf("creating %s: %w", svc, err)
	}
	node := path.Join(svc, s.instance)
	for range 3 {
		_, _, err = s.c.Create(ctx, node, data, client.Ephemeral(sess.ID()))
		if !errors.Is(err, client.ErrNodeExists) {
			break
		}
		if err = s.c.Delete(ctx, node, client.AnyVersion); err != nil && !errors.Is(err, client.ErrNoNode) {
			break
		}
	}
	if err != nil {
		sess.Close(ctx)
		return nil, fmt.Errorf("registering %s: %w", node, err)
	}
	return sess, nil
}

// runReports reports outcomes every report interval, from the first
// registration on (the coordinator takes reports only from registered
// instances): successes to every callee, and once the fleet trips,
// failures to the trip callee.
func (s *sim) runReports(ctx context.Context, registered <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-registered:
	}
	// Real sidecars' periods are not aligned; neither are these.
	if !sleepCtx(ctx, rand.N(s.f.cfg.ReportInterval)) {
		return
	}
	t := time.NewTicker(s.f.cfg.ReportInterval)
	defer t.Stop()
	ok := outcome.ToProto(breaker.Counts{Successes: reportCalls})
	bad := outcome.ToProto(breaker.Counts{Failures: reportCalls, TrailingFailures: reportCalls})
	trip := tripCallee(s.f.cfg.Prefix)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		reports := make([]*colonyv1.OutcomeReport, 0, len(s.callees)+1)
		for _, callee := range s.callees {
			// A data plane has outcomes only for callees it has
			// endpoints for.
			if s.registry[callee].nodes.Load() == 0 {
				continue
			}
			reports = append(reports, &colonyv1.OutcomeReport{Caller: s.service, Callee: callee, Instance: s.instance, Counts: ok})
		}
		tripping := s.f.tripping.Load()
		if tripping {
			reports = append(reports, &colonyv1.OutcomeReport{Caller: s.service, Callee: trip, Instance: s.instance, Counts: bad})
		}
		if len(reports) == 0 {
			continue
		}
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 2*s.f.cfg.ReportInterval)
		err := s.c.Report(rctx, reports...)
		cancel()
		switch {
		case err == nil:
			s.f.mu.Lock()
			s.f.reports++
			s.f.mu.Unlock()
			if tripping {
				s.f.noteFailureSent(s.service, sent)
			}
		case ctx.Err() == nil:
			s.f.fail("report", err)
		}
	}
}

// applyRecord is the breakers mirror's callback: it notes the trip
// callee's record turning OPEN.
func (s *sim) applyRecord(p string, data []byte) {
	if path.Base(p) != tripCallee(s.f.cfg.Prefix) || !s.f.tripping.Load() {
		return
	}
	var rec breaker.PairRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		s.f.fail("breaker record", err)
		return
	}
	if rec.State == breaker.Open {
		s.f.noteOpen(s.idx, s.service, rec.Since, time.Now())
	}
}

// simMirror follows the nodes directly under root as the sidecar's mirror
// does: watch, read, follow; read again on a resync.
type simMirror struct {
	s    *sim
	name string // for error counts
	root string
	// onRecord, if set, receives each node's data: from reads and from
	// created and changed events.
	onRecord func(path string, data []byte)
	// nodes is how many nodes the mirror holds.
	nodes atomic.Int32
	ready bool
}

func (m *simMirror) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := m.sync(ctx)
		if ctx.Err() != nil {
			return
		}
		m.s.f.fail("watch "+m.name, err)
		if errors.Is(err, client.ErrResync) {
			backoff = 100 * time.Millisecond
			continue
		}
		if !sleepCtx(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (m *simMirror) sync(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := m.s.c.Watch(wctx, m.root, colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive())
	if err != nil {
		return err
	}
	defer w.Close()
	kids, _, err := m.s.c.Children(ctx, m.root, client.WithSessionConsistency())
	if err != nil && !errors.Is(err, client.ErrNoNode) {
		return err
	}
	held := map[string]bool{}
	for _, k := range kids {
		p := path.Join(m.root, k)
		data, _, err := m.s.c.Get(ctx, p, client.WithSessionConsistency())
		if errors.Is(err, client.ErrNoNode) {
			continue
		}
		if err != nil {
			return err
		}
		held[p] = true
		if m.onRecord != nil {
			m.onRecord(p, data)
		}
	}
	m.nodes.Store(int32(len(held)))
	if !m.ready {
		m.ready = true
		m.s.done()
	}
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			return err
		}
		p := ev.GetPath()
		if levels(m.root, p) != 1 {
			continue
		}
		switch ev.GetType() {
		case colonyv1.EventType_EVENT_TYPE_CREATED, colonyv1.EventType_EVENT_TYPE_DATA_CHANGED:
			held[p] = true
			if m.onRecord != nil {
				m.onRecord(p, ev.GetData())
			}
		case colonyv1.EventType_EVENT_TYPE_DELETED:
			delete(held, p)
		}
		m.nodes.Store(int32(len(held)))
	}
}

// levels is how many path components p has below root (-1: not below it).
func levels(root, p string) int {
	if len(p) <= len(root) || p[:len(root)] != root || p[len(root)] != '/' {
		return -1
	}
	n := 0
	for _, c := range p[len(root):] {
		if c == '/' {
			n++
		}
	}
	return n
}

// sleepCtx waits for d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
