package engine

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/internal/telemetry"
)

// Metrics are the engine's event metrics, one set per node shared by the
// engines of its terms, counted as they happen (the pairs' states are read
// when scraped: NewStateCollector). Per-pair series exist only for pairs
// the engine tracks: a deleted or expired pair's go with it.
type Metrics struct {
	reportedCalls     *prometheus.CounterVec // caller, callee, outcome
	transitions       *prometheus.CounterVec // caller, callee, from, to, cause
	shadowTransitions *prometheus.CounterVec // caller, callee, from, to, cause
	recordWrite       prometheus.Histogram
}

// NewMetrics returns the engine's event metrics, to register with
// Collectors.
func NewMetrics() *Metrics {
	ns := telemetry.Namespace
	pairLabels := []string{"caller", "callee", "from", "to", "cause"}
	return &Metrics{
		reportedCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "breaker", Name: "reported_calls_total",
			Help: "Calls reported to the leader's breaker engine, by pair and outcome (success, failure, slow, rejected).",
		}, []string{"caller", "callee", "outcome"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "breaker", Name: "transitions_total",
			Help: "Enforced breaker state changes decided by this leader, by pair, states and cause (a condition such as failureRate or openElapsed, or override, cleared, expired).",
		}, pairLabels),
		shadowTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "breaker", Name: "shadow_transitions_total",
			Help: "Transitions a pair in shadow mode would have made (recorded, not enforced).",
		}, pairLabels),
		recordWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: "breaker", Name: "record_write_duration_seconds",
			Help:    "Time to write a changed breaker record through the raft log until the leader applied it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17), // 100µs to about 6.5s
		}),
	}
}

// Collectors returns the collectors to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.reportedCalls, m.transitions, m.shadowTransitions, m.recordWrite}
}

// countTransition counts an enforced (or shadow) state change of a pair.
func (m *Metrics) countTransition(k pairKey, from, to breaker.State, cause string, shadow bool) {
	if from == to {
		return
	}
	c := m.transitions
	if shadow {
		c = m.shadowTransitions
	}
	c.WithLabelValues(k.caller, k.callee, stateLabel(from), stateLabel(to), cause).Inc()
}

// forgetPair deletes a deleted pair's series, so per-pair series exist only
// for pairs the engine tracks (at most MaxPairs plus the override reserve).
func (m *Metrics) forgetPair(k pairKey) {
	l := prometheus.Labels{"caller": k.caller, "callee": k.callee}
	m.reportedCalls.DeletePartialMatch(l)
	m.transitions.DeletePartialMatch(l)
	m.shadowTransitions.DeletePartialMatch(l)
}

// countCalls counts one report's calls on the leader.
func (m *Metrics) countCalls(k pairKey, c breaker.Counts) {
	for _, o := range []struct {
		name string
		n    int64
	}{{"success", c.Successes}, {"failure", c.Failures}, {"slow", c.Slow}, {"rejected", c.Rejected}} {
		if o.n > 0 {
			m.reportedCalls.WithLabelValues(k.caller, k.callee, o.name).Add(float64(o.n))
		}
	}
}

// observeWrite records how long a record's write took.
func (m *Metrics) observeWrite(d time.Duration) { m.recordWrite.Observe(d.Seconds()) }

// stateLabel is a breaker state as a label value: closed, open, half_open.
func stateLabel(s breaker.State) string { return strings.ToLower(s.String()) }

var breakerStates = []breaker.State{breaker.Closed, breaker.Open, breaker.HalfOpen}

// StateCollector reads the running engine's pairs when scraped: their
// number, each one's enforced state and override.
type StateCollector struct {
	pairs, state, override *prometheus.Desc
	current                func() *Engine
}

var _ prometheus.Collector = (*StateCollector)(nil)

// NewStateCollector returns the collector of the pairs of the engine that
// current returns when scraped (nil: none runs, this node does not lead).
func NewStateCollector(current func() *Engine) *StateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(telemetry.Namespace, "breaker", name), help, labels, nil)
	}
	return &StateCollector{
		pairs:    d("pairs", "On the leader: caller -> callee pairs the breaker engine tracks."),
		state:    d("state", "On the leader: each pair's enforced breaker state, 1 for the current one (closed, open, half_open).", "caller", "callee", "state"),
		override: d("override", "On the leader: 1 for a pair under a manual override, by mode (force-open, force-closed, disabled, shadow).", "caller", "callee", "mode"),
		current:  current,
	}
}

func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pairs
	ch <- c.state
	ch <- c.override
}

func (c *StateCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.current()
	if e == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	// Under the engine's lock: the sends must be quick (the registry
	// drains ch as it collects).
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, p := range e.pairs {
		for _, bs := range breakerStates {
			v := 0.0
			if p.rec.State == bs {
				v = 1
			}
			gauge(c.state, v, k.caller, k.callee, stateLabel(bs))
		}
		if p.rec.Override != nil {
			gauge(c.override, 1, k.caller, k.callee, string(p.rec.Override.Mode))
		}
	}
	gauge(c.pairs, float64(len(e.pairs)))
}
