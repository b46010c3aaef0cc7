package breaker

import (
	"math"
	"time"
)

// never is the epoch of something that never happened.
const never = math.MinInt64

// slot is one bucket of the fleet-wide ring: the sums of every report that
// arrived during its epoch, and how many instances had their latest call
// (failure, slow call) in it. Counting each instance only in the bucket of
// its latest event makes distinct-instance counts a sum over live buckets.
type slot struct {
	epoch                                         int64
	successes, failures, slow, rejected, excluded int64
	run                                           int64      // this bucket's part of the fleet-wide failure run
	latest                                        [kinds]int // instances whose latest event of each kind is here
	latency                                       Latency    // the durations reported with this bucket's calls
}

// Kinds of instance events counted for distinct instances.
const (
	kindCall    = iota // reported calls (successes or failures)
	kindFailure        // reported failures
	kindSlow           // reported slow calls
	kinds
)

// seen is what the window remembers of one caller instance: the epoch of
// its latest event of each kind.
type seen [kinds]int64

// window aggregates reports over the policy window. Epochs are absolute
// (Unix time / bucket width), so the ring needs no timer: a slot whose epoch
// is older than the window is skipped, and cleared on its next use.
type window struct {
	width    int64 // bucket width, ns
	start    time.Time
	slots    []slot
	runEpoch int64 // epoch of the last success; runs in older slots are over
	inst     map[string]*seen
}

func newWindow(p Policy, start time.Time) window {
	w := window{width: p.bucketWidth(), slots: make([]slot, p.Buckets)}
	w.reset(start)
	return w
}

// reset starts a fresh window at start.
func (w *window) reset(start time.Time) {
	w.start = start
	for i := range w.slots {
		w.slots[i] = slot{epoch: never}
	}
	w.runEpoch = never
	w.inst = make(map[string]*seen)
}

func (w *window) epoch(t time.Time) int64 {
	n := t.UnixNano()
	e := n / w.width
	if n%w.width < 0 {
		e-- // floor, for times before 1970
	}
	return e
}

func (w *window) slot(e int64) *slot {
	i := e % int64(len(w.slots))
	if i < 0 {
		i += int64(len(w.slots))
	}
	return &w.slots[i]
}

// move records that an instance's latest event of kind k is now in slot s.
// The slot of its previous one loses it, unless that slot has since been
// reused for a newer epoch (then the old count went with it).
func (w *window) move(in *seen, k int, s *slot) {
	old := in[k]
	if old == s.epoch {
		return
	}
	if old != never {
		if prev := w.slot(old); prev.epoch == old {
			prev.latest[k]--
		}
	}
	s.latest[k]++
	in[k] = s.epoch
}

// add counts one report, attributed to the bucket of now. now never goes
// backwards (the Breaker clamps it).
func (w *window) add(now time.Time, id string, c Counts) {
	e := w.epoch(now)
	s := w.slot(e)
	if s.epoch != e {
		*s = slot{epoch: e}
	}
	s.successes += c.Successes
	s.failures += c.Failures
	s.slow += c.Slow
	s.rejected += c.Rejected
	s.excluded += c.Excluded
	if c.Latency != (Latency{}) {
		for k, n := range c.Latency {
			s.latency[k] = min(s.latency[k]+n, MaxCount)
		}
	}
	if c.Successes > 0 {
		// A success ends the fleet's run; what follows it in this report
		// starts the next one.
		w.runEpoch = e
		s.run = c.TrailingFailures
	} else {
		s.run += c.Failures
	}
	if c.Calls() == 0 {
		return
	}
	in := w.inst[id]
	if in == nil {
		in = &seen{never, never, never}
		w.inst[id] = in
	}
	w.move(in, kindCall, s)
	if c.Failures > 0 {
		w.move(in, kindFailure, s)
	}
	if c.Slow > 0 {
		w.move(in, kindSlow, s)
	}
}

// latency sums the latency histograms of the window ending at now. Apart
// from evidence, which Evaluate runs on every tick: only a reading
// (Breaker.Evidence) and a trip need it.
func (w *window) latency(now time.Time) Latency {
	e := w.epoch(now)
	lo := e - int64(len(w.slots)) + 1
	var l Latency
	for i := range w.slots {
		s := &w.slots[i]
		if s.epoch < lo || s.epoch > e {
			continue
		}
		for k, n := range s.latency {
			l[k] += n
		}
	}
	return l
}

// evidence sums the window ending at now. With prune, it forgets instances
// that have no calls left in the window, when they are many.
func (w *window) evidence(now time.Time, prune bool) Evidence {
	e := w.epoch(now)
	lo := e - int64(len(w.slots)) + 1
	ev := Evidence{At: now, WindowStart: w.start}
	if ws := time.Unix(0, lo*w.width).In(now.Location()); ws.After(ev.WindowStart) {
		ev.WindowStart = ws
	}
	for i := range w.slots {
		s := &w.slots[i]
		if s.epoch < lo || s.epoch > e {
			continue
		}
		ev.Successes += s.successes
		ev.Failures += s.failures
		ev.Slow += s.slow
		ev.Rejected += s.rejected
		ev.Excluded += s.excluded
		if s.epoch >= w.runEpoch {
			ev.ConsecutiveFailures += s.run
		}
		ev.ReportingInstances += s.latest[kindCall]
		ev.FailingInstances += s.latest[kindFailure]
		ev.SlowInstances += s.latest[kindSlow]
	}
	ev.Calls = ev.Successes + ev.Failures
	if ev.Calls > 0 {
		ev.FailureRate = float64(ev.Failures) / float64(ev.Calls)
		ev.SlowCallRate = float64(ev.Slow) / float64(ev.Calls)
	}
	// Sweep instances gone quiet once they outnumber the live ones, so the
	// sweep's cost is spread over the reports that made them.
	if prune && len(w.inst) > 2*ev.ReportingInstances+64 {
		for id, in := range w.inst {
			if in[kindCall] < lo {
				delete(w.inst, id)
			}
		}
	}
	return ev
}
