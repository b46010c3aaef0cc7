package breaker

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// holder is one caller instance's share of the HALF_OPEN probe budget.
type holder struct {
	permits int       // probe calls it may make in this generation
	used    int       // permits its reported results have consumed
	heard   time.Time // when it got permits or last reported a probe result
}

// probes is the HALF_OPEN accounting: who holds permits and what the
// probes returned. It is soft state except for the permits, which the
// engine persists as Record.Probes.
type probes struct {
	holders             map[string]*holder
	successes, failures int64
}

func (p *probes) reset() {
	p.holders = make(map[string]*holder)
	p.successes, p.failures = 0, 0
}

// apply counts a holder's probe results. Failures always count (any one
// re-opens); successes count only up to the holder's unused permits, so the
// fleet can never close on more successes than the budget admits.
func (p *probes) apply(now time.Time, h *holder, successes, failures int64) {
	if successes+failures == 0 {
		return // a report of rejected or excluded calls only: still silent
	}
	h.heard = now
	free := int64(h.permits - h.used)
	ok := min(successes, free)
	p.successes += ok
	p.failures += failures
	h.used += int(min(ok+failures, free))
}

func (p *probes) evidence(now, since time.Time) Evidence {
	return Evidence{At: now, WindowStart: since, ProbeSuccesses: p.successes, ProbeFailures: p.failures}
}

// ProbeResult counts probe outcomes reported by instance at now; Report
// does the same for a holder's counts while HALF_OPEN. Failures always
// count; successes only up to the instance's unused permits. It returns
// ErrNotHalfOpen or ErrNotProbeHolder when there is nothing to count them
// against, and an error wrapping ErrInvalidCounts for negative numbers.
func (b *Breaker) ProbeResult(now time.Time, instance string, successes, failures int64) error {
	if err := validID(instance); err != nil {
		return err
	}
	if err := (Counts{Successes: successes, Failures: failures}).Validate(); err != nil {
		return fmt.Errorf("instance %q: %w", instance, err)
	}
	if b.state != HalfOpen {
		return fmt.Errorf("%w: breaker is %v", ErrNotHalfOpen, b.state)
	}
	h := b.probe.holders[instance]
	if h == nil {
		return fmt.Errorf("%w: %q", ErrNotProbeHolder, instance)
	}
	b.probe.apply(b.clamp(now), h, successes, failures)
	return nil
}

// AssignProbes shares the probe budget out over instances (the live caller
// instances; duplicates and invalid ids are dropped) and returns the
// assignment: instance -> permits. Permits go round-robin over the sorted
// instances, starting at an offset that moves with the generation, so that
// with more instances than permits successive HALF_OPEN periods probe from
// different instances; instances that already hold a (used) permit come
// last. The result depends only on the inputs. The permits
// always add up to exactly ProbeBudget when instances is not empty.
// Permits already used in this generation stay with their holders and count
// against the budget; unused ones are taken back and shared out again.
// Only in HALF_OPEN; otherwise it returns nil.
func (b *Breaker) AssignProbes(now time.Time, instances []string) map[string]int {
	if b.state != HalfOpen {
		return nil
	}
	now = b.clamp(now)
	for id, h := range b.probe.holders {
		b.probe.revoke(id, h)
	}
	b.distribute(now, candidates(instances, nil))
	return b.assignment()
}

// ReassignProbes takes back the unused permits of holders that are no
// longer in live (their instance is gone) or have reported no probe result
// for ProbeTimeout, and shares them, with any permits not yet assigned, out
// over the other live instances as AssignProbes does (instances holding no
// permit first). It returns the new
// assignment and whether it changed (the engine then persists the
// Snapshot). Only in HALF_OPEN; otherwise it returns nil, false.
func (b *Breaker) ReassignProbes(now time.Time, live []string) (map[string]int, bool) {
	if b.state != HalfOpen {
		return nil, false
	}
	now = b.clamp(now)
	alive := make(map[string]bool, len(live))
	for _, id := range live {
		alive[id] = true
	}
	revoked := make(map[string]bool)
	for id, h := range b.probe.holders {
		if h.used < h.permits && (!alive[id] || now.Sub(h.heard) >= b.p.ProbeTimeout) {
			b.probe.revoke(id, h)
			revoked[id] = true
		}
	}
	n := b.distribute(now, candidates(live, revoked))
	return b.assignment(), len(revoked) > 0 || n > 0
}

// revoke takes back a holder's unused permits.
func (p *probes) revoke(id string, h *holder) {
	h.permits = h.used
	if h.permits == 0 {
		delete(p.holders, id)
	}
}

// distribute shares the unassigned permits out over cands (sorted) and
// returns how many it gave. Instances that hold no permit come first, in
// sorted order rotated by the generation, then current holders: probes
// spread over as many callers as the budget allows.
func (b *Breaker) distribute(now time.Time, cands []string) int {
	pool := b.p.ProbeBudget - b.assigned()
	if pool <= 0 || len(cands) == 0 {
		return 0
	}
	var fresh, holding []string
	for _, id := range cands {
		if b.probe.holders[id] == nil {
			fresh = append(fresh, id)
		} else {
			holding = append(holding, id)
		}
	}
	order := holding
	if len(fresh) > 0 {
		off := int(b.gen % uint64(len(fresh)))
		order = slices.Concat(fresh[off:], fresh[:off], holding)
	}
	for i := range pool {
		id := order[i%len(order)]
		h := b.probe.holders[id]
		if h == nil {
			h = &holder{}
			b.probe.holders[id] = h
		}
		h.permits++
		h.heard = now
	}
	return pool
}

// trimProbes takes unused permits back, last instances first, until the
// assignment fits the budget.
func (b *Breaker) trimProbes() {
	excess := b.assigned() - b.p.ProbeBudget
	ids := sortedKeys(b.probe.holders)
	for i := len(ids) - 1; i >= 0 && excess > 0; i-- {
		h := b.probe.holders[ids[i]]
		take := min(excess, h.permits-h.used)
		h.permits -= take
		excess -= take
		if h.permits == 0 {
			delete(b.probe.holders, ids[i])
		}
	}
}

func (b *Breaker) assigned() int {
	n := 0
	for _, h := range b.probe.holders {
		n += h.permits
	}
	return n
}

// assignment returns a copy of the permits per holder.
func (b *Breaker) assignment() map[string]int {
	m := make(map[string]int, len(b.probe.holders))
	for id, h := range b.probe.holders {
		m[id] = h.permits
	}
	return m
}

// candidates returns the valid ids of ids not in exclude, sorted, once each.
func candidates(ids []string, exclude map[string]bool) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if validID(id) == nil && !exclude[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
