package sidecar

// Status: what the sidecar reports about itself to its local API and its
// metrics.

import (
	"sort"
	"time"

	"github.com/colonymesh/colony/breaker"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/xds"
)

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
