package benchcmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
)

// FleetConfig configures a fleet run. A zero field takes the default its
// comment gives.
type FleetConfig struct {
	// Endpoints are the coordinators' gRPC addresses. Simulated sidecar i
	// lists them rotated by i, so the fleet spreads its connections over
	// the members as sidecars configured with different first endpoints
	// would.
	Endpoints []string
	// TLS is the certificate every simulated sidecar presents: it must be
	// allowed to register instances and report outcomes for every
	// simulated service (an admin certificate; a sidecar certificate is
	// for one service only). Nil: plaintext.
	TLS *tls.Config
	// Sidecars is how many sidecars to simulate; each has its own client,
	// hence its own connection. Must be at least 2.
	Sidecars int
	// PerService is how many instances (sidecars) each simulated service
	// has. Zero: 20.
	PerService int
	// Callees is how many other simulated services each sidecar calls:
	// it reports outcomes on those pairs every ReportInterval and mirrors
	// their registrations. Zero: 3.
	Callees int
	// ReportInterval is how often each sidecar reports. Zero: 250ms, the
	// sidecar's default.
	ReportInterval time.Duration
	// SessionTTL is each sidecar's session TTL. Zero: 6s, the sidecar's
	// default.
	SessionTTL time.Duration
	// StartRate is how many sidecars start per second. Zero: 200.
	StartRate int
	// ReadyTimeout bounds the wait for the whole fleet to be registered and
	// mirroring, after the last sidecar started. Zero: 60s.
	ReadyTimeout time.Duration
	// Measure is how long the steady fleet is measured (coordinator CPU,
	// report rate) before the trip. Zero: 10s.
	Measure time.Duration
	// TripTimeout bounds the wait for every sidecar to see the trip. Zero: 30s.
	TripTimeout time.Duration
	// Prefix starts every simulated service's name. Zero: "fleetsim".
	Prefix string
	// Resources sample the coordinator processes. Empty: no CPU and
	// memory figures.
	Resources []Sampler
	// Keep leaves what the run created in the cluster (breaker pairs,
	// service directories, the trip callee's policy). False: deleted.
	Keep bool
	// Progress receives a line at each phase. Nil: none.
	Progress func(string)
}

func (cfg *FleetConfig) withDefaults() {
	if cfg.PerService == 0 {
		cfg.PerService = 20
	}
	if cfg.Callees == 0 {
		cfg.Callees = 3
	}
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = 250 * time.Millisecond
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 6 * time.Second
	}
	if cfg.StartRate == 0 {
		cfg.StartRate = 200
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = time.Minute
	}
	if cfg.Measure == 0 {
		cfg.Measure = 10 * time.Second
	}
	if cfg.TripTimeout == 0 {
		cfg.TripTimeout = 30 * time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "fleetsim"
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string) {}
	}
}

// Limits of a fleet run.
const (
	maxSidecars = 100_000
	// fdReserve is the descriptors kept for everything but the sidecars'
	// connections (the process, the cleanup client, samplers).
	fdReserve = 128
	// reportCalls is the calls per report period a simulated sidecar
	// reports on each pair.
	reportCalls = 20
	// idleMeasure is how long the coordinators' CPU is measured before
	// the fleet starts.
	idleMeasure = 3 * time.Second
)

// Validate reports the first problem with cfg (after defaults), naming the
// field and its limit.
func (cfg FleetConfig) Validate() error {
	switch {
	case len(cfg.Endpoints) == 0:
		return errors.New("endpoints: at least one coordinator address is needed")
	case cfg.Sidecars < 2 || cfg.Sidecars > maxSidecars:
		return fmt.Errorf("sidecars: %d is outside 2..%d", cfg.Sidecars, maxSidecars)
	case cfg.PerService < 2 || cfg.PerService > cfg.Sidecars:
		return fmt.Errorf("per-service: %d is outside 2..%d (the sidecars); a trip needs two failing instances by default", cfg.PerService, cfg.Sidecars)
	case cfg.Callees < 0 || cfg.Callees > contract.MaxOutcomesPerReport-1:
		return fmt.Errorf("callees: %d is outside 0..%d", cfg.Callees, contract.MaxOutcomesPerReport-1)
	case cfg.ReportInterval < 10*time.Millisecond || cfg.ReportInterval > time.Minute:
		return fmt.Errorf("report-interval: %v is outside 10ms..1m", cfg.ReportInterval)
	case cfg.SessionTTL < time.Second:
		return fmt.Errorf("session-ttl: %v is below 1s", cfg.SessionTTL)
	case cfg.StartRate < 1:
		return fmt.Errorf("start-rate: %d is below 1 per second", cfg.StartRate)
	case cfg.Measure < time.Second:
		return fmt.Errorf("measure: %v is below 1s", cfg.Measure)
	case cfg.TripTimeout < time.Second:
		return fmt.Errorf("trip-timeout: %v is below 1s", cfg.TripTimeout)
	}
	if err := breaker.ValidateServiceName(serviceName(cfg.Prefix, cfg.Sidecars)); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

// serviceName is the name of simulated service i.
func serviceName(prefix string, i int) string { return fmt.Sprintf("%s-%04d", prefix, i) }

// tripCallee is the callee every simulated service calls and that fails
// at the trip: a shared dependency (a database) going down.
func tripCallee(prefix string) string { return prefix + "-trip" }

// fleet is one run: its sidecars and what they measured.
type fleet struct {
	cfg      FleetConfig
	services int

	ready    atomic.Int64 // sidecars registered and done with their first reads
	readyCh  chan struct{}
	tripping atomic.Bool // sidecars report failures to the trip callee
	tripAt   time.Time   // set before tripping is

	mu       sync.Mutex
	errs     map[string]int64
	reports  int64                // successful Report calls
	firstBad map[string]time.Time // caller service -> first failure report sent
	decided  map[string]time.Time // caller service -> the OPEN record's Since
	seen     []time.Duration      // decision-to-watch, one per sidecar
	seenAll  []time.Duration      // trip start to watch, one per sidecar
	seenBy   map[int]bool         // sidecar index -> saw OPEN
	allSeen  chan struct{}
}

// fail counts one error of op, by kind.
func (f *fleet) fail(op string, err error) {
	k := op + ": " + errorKind(err)
	f.mu.Lock()
	f.errs[k]++
	f.mu.Unlock()
}

// errorKind names an error's kind: the client's sentinel it matches, else
// its gRPC code, else its text.
func errorKind(err error) string {
	for _, k := range []error{
		client.ErrSessionExpired, client.ErrUnavailable, client.ErrResync, client.ErrPermissionDenied,
		client.ErrUnauthenticated, client.ErrInvalidArgument, client.ErrNoNode, client.ErrNodeExists,
		client.ErrNotFound, context.DeadlineExceeded,
	} {
		if errors.Is(err, k) {
			return strings.TrimPrefix(k.Error(), "client: ")
		}
	}
	if st, ok := status.FromError(err); ok {
		return st.Code().String()
	}
	return err.Error()
}

// noteFailureSent records that a failure report of caller's reached the
// coordinator.
func (f *fleet) noteFailureSent(caller string, at time.Time) {
	f.mu.Lock()
	if t, ok := f.firstBad[caller]; !ok || at.Before(t) {
		f.firstBad[caller] = at
	}
	f.mu.Unlock()
}

// noteOpen records that sidecar idx of caller saw the trip callee's
// record OPEN, decided at since.
func (f *fleet) noteOpen(idx int, caller string, since, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seenBy[idx] {
		return
	}
	f.seenBy[idx] = true
	if _, ok := f.decided[caller]; !ok {
		f.decided[caller] = since
	}
	f.seen = append(f.seen, at.Sub(since))
	f.seenAll = append(f.seenAll, at.Sub(f.tripAt))
	if len(f.seenBy) == f.cfg.Sidecars {
		close(f.allSeen)
	}
}

// RunFleet simulates cfg.Sidecars sidecars against the cluster at
// cfg.Endpoints: it starts them at cfg.StartRate, waits until every one is
// registered and mirroring, measures the steady fleet for cfg.Measure,
// then makes every sidecar report failures to one shared callee and
// measures until every sidecar sees its pair OPEN. It stops the fleet
// (closing every session) before it returns. The error is for a run that
// could not be made; what went wrong during the run is in the result.
func RunFleet(ctx context.Context, cfg FleetConfig) (*FleetResult, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fds, err := ensureFDs(uint64(cfg.Sidecars + fdReserve))
	if err != nil {
		return nil, err
	}
	f := &fleet{
		cfg: cfg, services: (cfg.Sidecars + cfg.PerService - 1) / cfg.PerService,
		readyCh: make(chan struct{}), errs: map[string]int64{},
		firstBad: map[string]time.Time{}, decided: map[string]time.Time{},
		seenBy: map[int]bool{}, allSeen: make(chan struct{}),
	}
	res := &FleetResult{
		Sidecars: cfg.Sidecars, Services: f.services, PairsPerSidecar: cfg.Callees + 1,
		ReportIntervalMs: cfg.ReportInterval.Milliseconds(), Endpoints: cfg.Endpoints,
		FDLimit: fds, LoadBefore: loadAvg(),
	}
	ctl, err := client.New(client.Config{Endpoints: cfg.Endpoints, TLS: cfg.TLS})
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = setup(sctx, ctl, cfg.Prefix)
	cancel()
	if err != nil {
		return nil, err
	}
	// The coordinators' own cost, without the fleet: what the per-sidecar
	// figures are counted from.
	base := sampleAll(ctx, cfg.Resources)
	if len(cfg.Resources) > 0 && !sleepCtx(ctx, idleMeasure) {
		return nil, ctx.Err()
	}
	idle := sampleAll(ctx, cfg.Resources)
	self0, _ := SelfSampler().Sample(ctx)

	// The fleet's own context: canceling it stops reports and mirrors; the
	// sessions close after it, as a sidecar's Close does.
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	sims := make([]*sim, cfg.Sidecars)
	start := time.Now()
	cfg.Progress(fmt.Sprintf("starting %d sidecars (%d services) at %d/s", cfg.Sidecars, f.services, cfg.StartRate))
	// Start every sidecar that is due at each tick, rather than one per
	// tick: a starved process wakes up less often than the rate asks.
	tick := time.NewTicker(10 * time.Millisecond)
	started := 0
	for started < len(sims) && ctx.Err() == nil {
		due := min(len(sims), 1+int(time.Since(start)*time.Duration(cfg.StartRate)/time.Second))
		for ; started < due; started++ {
			sm := newSim(f, started)
			sims[started] = sm
			wg.Go(func() { sm.run(fctx) })
		}
		if started < len(sims) {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}
	tick.Stop()
	finish := func() {
		stop()
		wg.Wait()
		res.LoadAfter = loadAvg()
		f.mu.Lock()
		res.Errors = maps.Clone(f.errs)
		f.mu.Unlock()
		if !cfg.Keep {
			cfg.Progress("deleting what the run created")
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			if err := cleanup(cctx, ctl, cfg.Prefix, f.services); err != nil {
				res.CleanupError = err.Error()
			}
			cancel()
		}
	}
	select {
	case <-f.readyCh:
	case <-ctx.Done():
	case <-time.After(time.Until(start.Add(time.Duration(cfg.Sidecars)*time.Second/time.Duration(cfg.StartRate) + cfg.ReadyTimeout))):
	}
	res.Ready = int(f.ready.Load())
	res.RampSeconds = time.Since(start).Seconds()
	if ctx.Err() != nil {
		finish()
		return res, ctx.Err()
	}
	// A fleet that did not all come up is measured and tripped all the
	// same: what part of it sees the trip, and how late, is the finding.
	cfg.Progress(fmt.Sprintf("%d of %d sidecars up in %.1fs; measuring for %v", res.Ready, cfg.Sidecars, res.RampSeconds, cfg.Measure))

	up := sampleAll(ctx, cfg.Resources)
	f.mu.Lock()
	reports0 := f.reports
	f.mu.Unlock()
	self1, _ := SelfSampler().Sample(ctx)
	select {
	case <-ctx.Done():
		finish()
		return res, ctx.Err()
	case <-time.After(cfg.Measure):
	}
	steady := sampleAll(ctx, cfg.Resources)
	self2, _ := SelfSampler().Sample(ctx)
	f.mu.Lock()
	res.ReportsPerSecond = float64(f.reports-reports0) / cfg.Measure.Seconds()
	f.mu.Unlock()
	res.Coordinators = resourceRows(cfg.Resources, base, idle, up, steady, cfg.Measure)
	res.summarize(cfg.Sidecars)
	res.SimulatorCPUCores = (self2.CPUSeconds - self1.CPUSeconds) / cfg.Measure.Seconds()
	res.SimulatorWaitCores = max(self2.WaitSeconds-self1.WaitSeconds, 0) / cfg.Measure.Seconds()
	res.SimulatorRSSBytes = self2.RSSBytes - self0.RSSBytes

	cfg.Progress("tripping: every sidecar reports failures to " + tripCallee(cfg.Prefix))
	f.tripAt = time.Now()
	f.tripping.Store(true)
	select {
	case <-f.allSeen:
	case <-ctx.Done():
	case <-time.After(cfg.TripTimeout):
	}
	f.mu.Lock()
	res.Trip = f.tripResult()
	f.mu.Unlock()
	cfg.Progress("stopping the fleet")
	finish()
	return res, ctx.Err()
}

// tripResult summarizes the trip (under mu).
func (f *fleet) tripResult() TripResult {
	t := TripResult{Pairs: f.services, Decided: len(f.decided), Watchers: f.cfg.Sidecars, Seen: len(f.seenBy)}
	var r2d []time.Duration
	for caller, since := range f.decided {
		if sent, ok := f.firstBad[caller]; ok {
			r2d = append(r2d, since.Sub(sent))
		}
	}
	t.ReportToDecision = latencies(r2d)
	t.DecisionToWatch = latencies(f.seen)
	t.TripToWatch = latencies(f.seenAll)
	return t
}

// Latencies are a distribution's nearest-rank percentiles, in ms.
type Latencies struct {
	N     int     `json:"n"`
	P50Ms float64 `json:"p50Ms"`
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

func latencies(ds []time.Duration) Latencies {
	if len(ds) == 0 {
		return Latencies{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return float64(s[max(i, 0)].Microseconds()) / 1000
	}
	return Latencies{N: len(s), P50Ms: rank(0.5), P99Ms: rank(0.99), MaxMs: rank(1)}
}

// ensureFDs makes sure the process may open need descriptors, raising its
// soft limit toward the hard one if it must, and returns the limit.
func ensureFDs(need uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading the open-files limit: %w", err)
	}
	if lim.Cur >= need {
		return lim.Cur, nil
	}
	if lim.Max < need {
		return 0, fmt.Errorf("sidecars: each simulated sidecar holds its own connection, so %d need %d open files, above this process's hard limit of %d (ulimit -Hn); simulate fewer or raise it", need-fdReserve, need, lim.Max)
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raising the open-files limit to %d: %w", need, err)
	}
	return need, nil
}

// loadAvg is the machine's load average (/proc/loadavg), or "" where there
// is none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return ""
	}
	return strings.Join(fs[:3], " ")
}
