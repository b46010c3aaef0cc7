package sidecar

// State appliers: the mirrors' callbacks that turn the coordinator's
// breaker records, registry and policies into the sidecar's state.

import (
	"encoding/json"
	"path"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
)

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
				cr.seen, cr.watch = old.seen, old.watch
			}
			next[callee] = cr
		}
		s.records = next
	} else if u.deleted {
		delete(s.records, path.Base(u.path))
	} else if callee, rec := decode(u.path, u.data); rec != nil {
		s.records[callee] = &coordRecord{rec: *rec, seen: now, watch: s.traceRecord(rec, now)}
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
