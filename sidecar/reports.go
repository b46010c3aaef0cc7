package sidecar

// Reports: outcome counts from the data plane and apps, summed per callee
// and sent to the coordinator every report interval.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/outcome"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Report adds outcome counts for calls to callee (from the data plane or an
// app) to the current report period. In Local mode they also feed the local
// breaker.
func (s *Sidecar) Report(callee string, c breaker.Counts) error {
	return s.report(callee, c, true)
}

// report adds c to the period; spends, when the calls are not counted as
// spent already (the probe gate's are, when admitted), counts them against
// this instance's HALF_OPEN permits at the probe gate.
func (s *Sidecar) report(callee string, c breaker.Counts, spends bool) error {
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
	a.Latency = a.Latency.Plus(c.Latency).Trim(a.Calls())
	if lb := s.local[callee]; lb != nil && s.degraded {
		lb.feed(c)
	}
	if cr := s.records[callee]; spends && cr != nil && cr.rec.State == breaker.HalfOpen && cr.rec.Probes[s.cfg.Instance] > 0 {
		s.gate.spend(callee, cr.rec.Generation, c.Calls())
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
			ctx, span := s.traceReport(ctx, reports[:n])
			err := s.c.Report(ctx, reports[:n]...)
			endReportSpan(span, err)
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
