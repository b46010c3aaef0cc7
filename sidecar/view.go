package sidecar

// The view: what the local data plane must enforce, computed from the
// sidecar's state and handed to the enforcers and WatchBreakers streams.

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"slices"
	"time"

	"github.com/colonymesh/colony/breaker"
)

// viewLocked computes what to enforce now (under mu).
func (s *Sidecar) viewLocked(now time.Time) View {
	v := View{Service: s.cfg.Service, Instance: s.cfg.Instance, Mode: ModeCoordinator, ProbeGate: s.gate.Addr()}
	if s.degraded {
		v.Mode = s.cfg.DegradedMode
	}
	names, held := map[string]bool{}, map[string]bool{}
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
		if r := c.Record; r != nil && r.State == breaker.HalfOpen && r.Probes[s.cfg.Instance] > 0 {
			c.ProbeSecret = s.probeSecretLocked(name, r.Generation)
			held[name] = true
		}
		v.Callees = append(v.Callees, c)
	}
	maps.DeleteFunc(s.secrets, func(callee string, _ probeSecret) bool { return !held[callee] })
	return v
}

// probeSecret is the probe secret of one generation of a callee's breaker.
type probeSecret struct {
	generation uint64
	secret     string
}

// probeSecretLocked returns the probe secret of callee's generation, drawing
// a new one for a generation it has not seen (under mu). A secret outlives
// no generation: the next HALF_OPEN gets a new one, so a secret that leaked
// (a probe call's header seen by the callee) opens nothing later.
func (s *Sidecar) probeSecretLocked(callee string, generation uint64) string {
	if ps, ok := s.secrets[callee]; ok && ps.generation == generation {
		return ps.secret
	}
	ps := probeSecret{generation: generation, secret: newProbeSecret()}
	s.secrets[callee] = ps
	return ps.secret
}

// newProbeSecret is 128 bits from crypto/rand in hex.
func newProbeSecret() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return hex.EncodeToString(b[:])
}

// publish hands the current view to the enforcers and pokes WatchBreakers
// streams.
func (s *Sidecar) publish() {
	s.mu.Lock()
	v := s.viewLocked(time.Now())
	same := viewsEqual(v, s.lastView)
	s.lastView = v
	if !same {
		s.viewNames = s.viewNames[:0]
		for _, c := range v.Callees {
			s.viewNames = append(s.viewNames, c.Name)
		}
	}
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
	if a.Mode != b.Mode || a.ProbeGate != b.ProbeGate || len(a.Callees) != len(b.Callees) {
		return false
	}
	for i := range a.Callees {
		x, y := a.Callees[i], b.Callees[i]
		if x.Name != y.Name || x.Protocol != y.Protocol || x.Source != y.Source || x.ProbeSecret != y.ProbeSecret || !slices.Equal(x.Endpoints, y.Endpoints) {
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
