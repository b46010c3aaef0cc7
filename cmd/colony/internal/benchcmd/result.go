package benchcmd

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// ProjectTo is the fleet size the result projects its per-sidecar costs to.
const ProjectTo = 50_000

// FleetResult is what a fleet run measured.
type FleetResult struct {
	Sidecars         int      `json:"sidecars"`
	Services         int      `json:"services"`
	PairsPerSidecar  int      `json:"pairsPerSidecar"` // reported each period once the fleet trips
	ReportIntervalMs int64    `json:"reportIntervalMs"`
	Endpoints        []string `json:"endpoints"`
	FDLimit          uint64   `json:"fdLimit"`
	// LoadBefore and LoadAfter are the machine's load averages (1, 5,
	// 15 minutes) when the run started and ended: the simulator shares
	// the CPU with the coordinators when they run on this machine.
	LoadBefore string `json:"loadBefore"`
	LoadAfter  string `json:"loadAfter"`

	// Ready is how many sidecars registered and finished their first
	// reads; RampSeconds how long the fleet took to get there.
	Ready       int     `json:"ready"`
	RampSeconds float64 `json:"rampSeconds"`
	// ReportsPerSecond is the fleet's successful Report calls per second
	// while it was measured.
	ReportsPerSecond float64 `json:"reportsPerSecond"`

	Coordinators []ResourceRow `json:"coordinators,omitempty"`
	// CPUCores and RSSBytes are the coordinators' together, steady, and
	// IdleCPUCores their CPU before the fleet started; the per-sidecar
	// figures divide what the fleet added (CPU, memory) by the sidecars.
	CPUCores                float64 `json:"cpuCores"`
	IdleCPUCores            float64 `json:"idleCpuCores"`
	CPUMillicoresPerSidecar float64 `json:"cpuMillicoresPerSidecar"`
	RSSBytes                int64   `json:"rssBytes"`
	RSSBytesPerSidecar      int64   `json:"rssBytesPerSidecar"`
	// Projected is the coordinators' CPU and memory at ProjectTo sidecars,
	// from the per-sidecar figures: linear, which holds only while nothing
	// else saturates.
	ProjectedSidecars int     `json:"projectedSidecars"`
	ProjectedCPUCores float64 `json:"projectedCpuCores"`
	ProjectedRSSBytes int64   `json:"projectedRssBytes"`

	// SimulatorCPUCores and SimulatorRSSBytes are this process's own, for
	// telling its load apart from the coordinators'.
	SimulatorCPUCores  float64 `json:"simulatorCpuCores"`
	SimulatorWaitCores float64 `json:"simulatorWaitCores"`
	SimulatorRSSBytes  int64   `json:"simulatorRssBytes"`

	Trip TripResult `json:"trip"`
	// Errors counts every failed call of the fleet by operation and kind.
	Errors map[string]int64 `json:"errors"`
	// CleanupError is why deleting what the run created failed, if it did.
	CleanupError string `json:"cleanupError,omitempty"`
}

// TripResult is the trip: every service's pair to the shared callee.
type TripResult struct {
	Pairs    int `json:"pairs"`    // pairs that should trip (one per service)
	Decided  int `json:"decided"`  // pairs a sidecar saw OPEN
	Watchers int `json:"watchers"` // sidecars that should see their pair OPEN
	Seen     int `json:"seen"`     // sidecars that did
	// ReportToDecision: from a service's first failure report sent to
	// the leader's decision (the OPEN record's since), one per pair.
	ReportToDecision Latencies `json:"reportToDecision"`
	// DecisionToWatch: from the decision to each sidecar's watch
	// delivering the OPEN record, one per sidecar. It compares the
	// leader's clock with this machine's.
	DecisionToWatch Latencies `json:"decisionToWatch"`
	// TripToWatch: from the moment the fleet started failing (the next
	// report period of each sidecar sends the failures) to each sidecar
	// seeing OPEN, one per sidecar: all on this machine's clock.
	TripToWatch Latencies `json:"tripToWatch"`
}

// summarize fills the totals, per-sidecar figures and projection.
func (r *FleetResult) summarize(n int) {
	var before int64
	for _, row := range r.Coordinators {
		if row.Error != "" {
			continue
		}
		r.CPUCores += row.CPUCores
		r.IdleCPUCores += row.IdleCPUCores
		r.RSSBytes += row.RSSBytes
		before += row.RSSBeforeBytes
	}
	if len(r.Coordinators) == 0 {
		return
	}
	r.CPUMillicoresPerSidecar = 1000 * max(r.CPUCores-r.IdleCPUCores, 0) / float64(n)
	r.RSSBytesPerSidecar = (r.RSSBytes - before) / int64(n)
	r.ProjectedSidecars = ProjectTo
	r.ProjectedCPUCores = r.IdleCPUCores + r.CPUMillicoresPerSidecar*ProjectTo/1000
	r.ProjectedRSSBytes = before + r.RSSBytesPerSidecar*ProjectTo
}

// ErrorCount is the fleet's errors, all kinds.
func (r *FleetResult) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// Failures lists how the run missed the goal: every sidecar up, every
// sidecar seeing the trip, its decision-to-watch p99 within goal, no
// error. Empty: it met it.
func (r *FleetResult) Failures(goal time.Duration) []string {
	var out []string
	if r.Ready < r.Sidecars {
		out = append(out, fmt.Sprintf("only %d of %d sidecars registered and mirrored", r.Ready, r.Sidecars))
	} else {
		if r.Trip.Seen < r.Trip.Watchers {
			out = append(out, fmt.Sprintf("only %d of %d sidecars saw the trip", r.Trip.Seen, r.Trip.Watchers))
		}
		if p99 := time.Duration(r.Trip.DecisionToWatch.P99Ms * float64(time.Millisecond)); p99 > goal {
			out = append(out, fmt.Sprintf("decision-to-watch p99 %v is above %v", p99.Round(time.Millisecond), goal))
		}
	}
	if n := r.ErrorCount(); n > 0 {
		out = append(out, fmt.Sprintf("%d errors", n))
	}
	return out
}

// WriteTable writes the result for a terminal.
func (r *FleetResult) WriteTable(w io.Writer, goal time.Duration) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	p("sidecars", "%d (%d services, %d pairs each, report every %dms)", r.Sidecars, r.Services, r.PairsPerSidecar, r.ReportIntervalMs)
	p("endpoints", "%s", strings.Join(r.Endpoints, ","))
	p("load average", "%s before, %s after", orDash(r.LoadBefore), orDash(r.LoadAfter))
	p("ready", "%d of %d in %.1fs", r.Ready, r.Sidecars, r.RampSeconds)
	p("reports/s", "%.0f", r.ReportsPerSecond)
	for _, c := range r.Coordinators {
		if c.Error != "" {
			p("coordinator "+c.Name, "error: %s", c.Error)
			continue
		}
		p("coordinator "+c.Name, "%.2f cores (%.2f before), waited for CPU %.2f, RSS %s (%s before)", c.CPUCores, c.IdleCPUCores, c.WaitCores, mib(c.RSSBytes), mib(c.RSSBeforeBytes))
	}
	if len(r.Coordinators) > 0 {
		p("coordinators", "%.2f cores (%.2f before), RSS %s", r.CPUCores, r.IdleCPUCores, mib(r.RSSBytes))
		p("per sidecar", "%.3f millicores, %s RSS", r.CPUMillicoresPerSidecar, kib(r.RSSBytesPerSidecar))
		p(fmt.Sprintf("projected at %d", r.ProjectedSidecars), "%.1f cores, RSS %s (linear)", r.ProjectedCPUCores, mib(r.ProjectedRSSBytes))
	}
	p("simulator", "%.2f cores, waited for CPU %.2f, RSS +%s", r.SimulatorCPUCores, r.SimulatorWaitCores, mib(r.SimulatorRSSBytes))
	t := r.Trip
	p("trip", "%d of %d pairs OPEN, seen by %d of %d sidecars", t.Decided, t.Pairs, t.Seen, t.Watchers)
	lat := func(k string, l Latencies) {
		p(k, "p50 %.1f ms, p99 %.1f ms, max %.1f ms (n=%d)", l.P50Ms, l.P99Ms, l.MaxMs, l.N)
	}
	lat("report to decision", t.ReportToDecision)
	lat("decision to watch", t.DecisionToWatch)
	lat("trip to watch", t.TripToWatch)
	if len(r.Errors) == 0 {
		p("errors", "none")
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		p("errors", "%d %s", r.Errors[k], k)
	}
	if r.CleanupError != "" {
		p("cleanup", "%s", r.CleanupError)
	}
	if f := r.Failures(goal); len(f) > 0 {
		p("result", "FAIL: %s", strings.Join(f, "; "))
	} else {
		p("result", "PASS (every sidecar saw the trip, decision-to-watch p99 within %v, no errors)", goal)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func kib(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10)) }
