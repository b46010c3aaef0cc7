package sidecar

// Probes of stock clients: while a callee is HALF_OPEN and this instance
// holds probe permits, the data plane lets calls carrying the generation's
// probe secret through (guard clients mark exactly their permits), and a
// share of the other calls: those of clients that run no Colony code
// (stock gRPC over xDS, Envoy). That share is computed here so that their
// probes stay within the instance's permits, and withdrawn (every such call
// aborted) once the permits are spent.
//
// Demand. The load reports (LRS) of stock clients say how many calls they
// issued per report interval. Calls the route aborts are not in them, so
// the demand D (calls per second the clients attempt) is the issued rate
// divided by the share that was in force: 1 while the pair is CLOSED, the
// probe share in HALF_OPEN, nothing to learn while OPEN (D keeps its last
// estimate, normally from before the pair opened). D is the calls issued
// over the time weighted by the share in force, both sums decayed by 0.9 a
// sample (about the last ten load report intervals count): intervals
// without calls count as much as intervals with, which tiny shares make
// the common case.
//
// Spent permits. Every call counted for the callee in this HALF_OPEN
// generation spends a permit: outcomes reported by guard clients and
// access logs, and the calls stock clients issued (counted when issued, so
// calls still running count too). The coordinator reads every outcome of a
// holder in HALF_OPEN as a probe result, so the pair closes or re-opens on
// the stock clients' outcomes like on any other probes.
//
// Share. With r permits left, the share lets through an expected r/20
// calls per decision lag L = 2 x the load report interval (a call is
// reported at most one interval after it starts; the withdrawal reaches the
// clients milliseconds after the report): share = r / (20 L D). Calls
// arrive as a Poisson process, so once the last permit is spent, the calls
// that still pass before the withdrawal lands number Poisson(1/20) at most:
// P(one probe over the permits) <= 1 - e^(-1/20) ~ 4.9%, P(two or more)
// ~ 0.12%, expected overshoot <= 0.05 probes per instance and HALF_OPEN
// period, whatever the permits. The price is time: the first of r permits
// is spent after about 20 L / r (10 s for one permit with the default 250
// ms interval, 2 s for five), all of them after about 20 L (1 + 1/2 + ...
// + 1/r). The pair usually decides sooner: a failure re-opens it at once,
// successesToClose successes close it.
//
// Unknown demand (no stock calls seen since the sidecar started): the share
// starts at stockStartShare parts per million and doubles every report
// tick in which no stock call was issued; the first calls seen give D.
// Until then the bound above does not hold: a burst of demand can overshoot
// by about one call.
//
// The share also never grows more than twice per tick, so a demand that
// suddenly rises is seen before the share follows a stale estimate.
//
// A guard on the same instance admits its permits by itself: an instance
// whose calls go through both a guard and stock clients can send up to its
// permits in guard probes on top of the stock probes made before them.

import (
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/xds"
)

const (
	// stockLagFraction: the share lets through 1/stockLagFraction of the
	// permits left per decision lag.
	stockLagFraction = 20
	// stockStartShare is the share, in parts per million, a HALF_OPEN
	// holder starts stock clients at when their demand is unknown.
	stockStartShare = 100
	// stockDecay is the weight a demand sample keeps at the next one
	// (samples are a load report interval or more apart): about the last
	// ten samples count.
	stockDecay = 0.9
	// maxStockCallees bounds the callees whose stock demand is tracked.
	maxStockCallees = 10000
)

// stockProbes is the stock clients' demand on one callee and, while this
// instance holds its permits in HALF_OPEN, their probes.
type stockProbes struct {
	rate float64 // D, calls per second attempted; 0: unknown
	// issued and exposure are the decayed sums D is the ratio of: calls
	// issued, and seconds weighted by the share of calls let through.
	issued, exposure float64
	pending          uint64    // calls issued since since
	since            time.Time // start of the current demand sample

	gen   uint64 // the HALF_OPEN generation held; 0: none
	spent int64  // calls counted for the callee in gen
	share uint32 // parts per million, while gen != 0
}

// stockLocked returns callee's stock state, creating it (nil beyond the
// limit). Under mu.
func (s *Sidecar) stockLocked(callee string, now time.Time) *stockProbes {
	st := s.stock[callee]
	if st == nil {
		if len(s.stock) >= maxStockCallees {
			return nil
		}
		st = &stockProbes{since: now}
		s.stock[callee] = st
	}
	return st
}

// lag is the decision lag L of the share (see above).
func (s *Sidecar) lag() time.Duration { return 2 * s.loadInterval }

// stockLoad counts calls stock clients issued to callee (from a load
// report) and withdraws the share at once when they spend the last permit.
func (s *Sidecar) stockLoad(callee string, issued uint64) {
	if issued == 0 {
		return
	}
	s.mu.Lock()
	st := s.stockLocked(callee, time.Now())
	withdraw := false
	if st != nil {
		st.pending += issued
		withdraw = s.spendLocked(callee, st, int64(min(issued, uint64(breaker.MaxCount))))
	}
	s.mu.Unlock()
	if withdraw {
		s.publish()
	}
}

// spendLocked counts n calls of the held HALF_OPEN generation, if any, and
// reports whether that spent the last permit of a share still open.
func (s *Sidecar) spendLocked(callee string, st *stockProbes, n int64) bool {
	if st.gen == 0 || n <= 0 {
		return false
	}
	st.spent += n
	if st.share > 0 && s.permitsLeftLocked(callee, st) <= 0 {
		st.share = 0
		return true
	}
	return false
}

// permitsLeftLocked is the held generation's permits this instance has not
// spent.
func (s *Sidecar) permitsLeftLocked(callee string, st *stockProbes) int64 {
	cr := s.records[callee]
	if cr == nil || cr.rec.State != breaker.HalfOpen || cr.rec.Generation != st.gen {
		return 0
	}
	return int64(cr.rec.Probes[s.cfg.Instance]) - st.spent
}

// stockShareLocked returns the share for stock clients of callee, whose
// record r is HALF_OPEN with permits for this instance, starting the
// generation's accounting on its first call. Under mu.
func (s *Sidecar) stockShareLocked(callee string, r *breaker.PairRecord, now time.Time) uint32 {
	st := s.stockLocked(callee, now)
	if st == nil {
		return 0
	}
	if st.gen != r.Generation {
		st.gen, st.spent = r.Generation, 0
		st.share = s.targetShare(st, int64(r.Probes[s.cfg.Instance]), 0)
	}
	return st.share
}

// targetShare is the share for r permits left at demand st.rate, growing
// at most twice from prev (0: no previous share).
func (s *Sidecar) targetShare(st *stockProbes, r int64, prev uint32) uint32 {
	if r <= 0 {
		return 0
	}
	want := float64(xds.StockShareAll)
	if st.rate > 0 {
		perSecond := float64(r) / stockLagFraction / s.lag().Seconds()
		want = perSecond / st.rate * xds.StockShareAll
	}
	limit := float64(stockStartShare)
	if prev > 0 {
		limit = 2 * float64(prev)
	}
	if st.rate > 0 && prev == 0 {
		limit = xds.StockShareAll // the demand is known: no need to search
	}
	return uint32(max(1, min(want, limit, xds.StockShareAll)))
}

// tickStock samples the stock clients' demand and moves the HALF_OPEN
// shares toward their targets; it reports whether a share changed. It runs
// every report interval.
func (s *Sidecar) tickStock(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for callee, st := range s.stock {
		cr := s.records[callee]
		holder := cr != nil && cr.rec.State == breaker.HalfOpen && cr.rec.Probes[s.cfg.Instance] > 0 && cr.rec.Generation == st.gen
		if dt := now.Sub(st.since); dt >= s.loadInterval {
			// The share of attempted calls that the clients issued.
			pass := 0.0
			switch {
			case cr == nil || cr.rec.State == breaker.Closed:
				pass = 1
			case holder:
				pass = float64(st.share) / xds.StockShareAll
			}
			if pass > 0 {
				// D = calls issued / (time x share in force), both decayed
				// by stockDecay per sample: a sample without calls counts
				// as much as one with.
				st.issued = st.issued*stockDecay + float64(st.pending)
				st.exposure = st.exposure*stockDecay + pass*dt.Seconds()
				if st.issued > 0 && st.exposure > 0 {
					st.rate = st.issued / st.exposure
				}
			}
			idle := st.pending == 0
			st.pending, st.since = 0, now
			// A withdrawn share (0) opens again when the coordinator hands
			// this instance more permits in the same generation: those of a
			// holder whose probe timeout passed unused.
			if holder {
				next := s.targetShare(st, s.permitsLeftLocked(callee, st), st.share)
				if idle && st.rate == 0 && st.share > 0 && next > 0 {
					next = min(2*st.share, xds.StockShareAll) // searching for unknown demand
				}
				if next != st.share {
					st.share, changed = next, true
				}
			}
		}
		if !holder && cr == nil && st.pending == 0 && st.rate == 0 {
			delete(s.stock, callee) // nothing known, nothing held
		}
	}
	return changed
}
