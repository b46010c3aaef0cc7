package sidecar

// Staleness and degraded mode: how long the coordinator has been silent,
// when the degraded modes take over, and what each of them enforces.

import (
	"time"

	"github.com/colonymesh/colony/breaker"
)

// staleLocked returns how long ago the coordinator last answered, -1 if
// it never did (under mu).
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

// shouldDegrade is the degraded-mode decision: the coordinator last
// answered stale ago (negative: never), the sidecar started up ago, and the
// coordinator may stay silent for after. A sidecar that never reached the
// coordinator counts its silence from its start.
func shouldDegrade(stale, up, after time.Duration) bool {
	if stale < 0 {
		return up > after
	}
	return stale > after
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
		degraded := shouldDegrade(stale, time.Since(s.started), s.cfg.DegradedAfter)
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
