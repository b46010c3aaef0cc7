// Package guard is the app side of Colony's shared breakers: it follows the
// breakers the local sidecar enforces (WatchBreakers) and checks every call
// against them in-process, then reports the call's outcome back to the
// sidecar in batches. The check is a map lookup and an atomic add: no
// allocation, no I/O, no lock.
//
// In HALF_OPEN the guard is what makes the fleet-wide probe budget exact:
// only an instance the coordinator gave probe permits lets that many calls
// through per generation, and it marks them with the ProbeHeader so the data
// plane's routes (which abort everything else in HALF_OPEN) let them pass.
// The header's value is a secret of the generation that the sidecar hands
// only to its guards, so a client cannot mark its own calls as probes.
//
//	g, err := guard.New(guard.Config{Sidecar: "127.0.0.1:7500"})
//	defer g.Close()
//	conn, err := grpc.NewClient("xds:///payments",
//		grpc.WithChainUnaryInterceptor(g.UnaryClientInterceptor("payments")), ...)
package guard

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// ProbeHeader marks a probe call in HALF_OPEN; its value is the probe
// secret the sidecar gave the guard for the generation (Permit.ProbeValue).
// The sidecar's routes let calls carrying it through; a guard sets it only
// on calls its permits cover.
const ProbeHeader = "x-colony-probe"

// XDSNodeMetadataKey is the xDS node metadata field an app that uses the
// guard on proxyless gRPC channels (xds:///) sets to true in its bootstrap:
//
//	"node": {"id": "checkout/c1", "metadata": {"colony.guard": true}}
//
// gRPC's xDS client also reports its calls' load to the sidecar (LRS); the
// sidecar counts a stock client's load as its outcomes, and ignores the
// load of a node so marked, whose outcomes the guard already reports with
// latencies and status codes. Without the mark such calls count twice.
const XDSNodeMetadataKey = "colony.guard"

// ErrOpen is matched (errors.Is) by the error of a call the breaker rejects.
var ErrOpen = errors.New("colony: breaker open")

// RejectedError is a call the breaker rejected: it names the pair, the state
// and the generation of the decision.
type RejectedError struct {
	Caller, Callee string
	State          breaker.State
	Generation     uint64
	// Traceparent is the W3C trace context of the coordinator's write of the
	// decision (empty when the coordinator does not trace): the rejected
	// call's span links to it.
	Traceparent string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("colony: breaker %s->%s is %v (generation %d): call rejected", e.Caller, e.Callee, e.State, e.Generation)
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *RejectedError) Is(target error) bool { return target == ErrOpen }

// Config configures a Guard.
type Config struct {
	// Sidecar is the local sidecar's API address (default 127.0.0.1:7500).
	Sidecar string
	// TLS secures the connection to a sidecar that serves its API with TLS
	// (colony sidecar with a certificate and a non-loopback listener): it
	// presents this app's certificate, of the sidecar's CA, and verifies
	// the sidecar's. Nil: plaintext, for a sidecar on loopback.
	TLS *tls.Config
	// Instance is this instance's id, as the sidecar registered it; the
	// guard learns it from the records' probe assignments otherwise not at
	// all, so set it (the sidecar's --instance).
	Instance string
	// ReportInterval is how often outcomes go to the sidecar (default 100ms).
	ReportInterval time.Duration
	// SlowCall is the duration above which a call through the guard's
	// interceptor or RoundTripper counts as slow. Zero: no call is slow
	// (the default policy has no slow-call condition); set it to your
	// policy's slowCallDuration. It is read, never written, while calls
	// run: the Guard keeps its own copy of the Config.
	SlowCall time.Duration
	Logger   *slog.Logger
}

// pair is one callee's breaker as the guard enforces it. Replaced as a
// whole on every change; only the counters mutate.
type pair struct {
	state   breaker.State
	gen     uint64
	permits int64
	probe   string        // the ProbeHeader value of this generation's probes
	used    *atomic.Int64 // probe permits used in this generation
	reject  *RejectedError
	counts  *counters
}

// counters are one callee's outcomes since the last report.
type counters struct {
	successes, failures, slow, rejected, excluded, trailing atomic.Int64
	latency                                                 [breaker.LatencyBuckets]atomic.Int64
}

// Guard checks calls against the local sidecar's breakers.
type Guard struct {
	cfg   Config
	log   *slog.Logger
	conn  *grpc.ClientConn
	api   colonyv1.SidecarClient
	pairs atomic.Pointer[map[string]*pair]

	mu      sync.Mutex // serialises updates of pairs
	caller  string
	outcome map[string]*counters // callee -> counters, kept across generations

	ready  chan struct{} // closed after the first snapshot
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New connects to the sidecar and follows its breakers in the background.
// Until the first snapshot arrives (see Ready), every call is allowed.
func New(cfg Config) (*Guard, error) {
	if cfg.Sidecar == "" {
		cfg.Sidecar = "127.0.0.1:7500"
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Instance != "" {
		if err := breaker.ValidateInstanceID(cfg.Instance); err != nil {
			return nil, fmt.Errorf("guard: instance: %w", err)
		}
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	conn, err := grpc.NewClient(cfg.Sidecar, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("guard: sidecar %q: %w", cfg.Sidecar, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Guard{
		cfg: cfg, log: cfg.Logger, conn: conn, api: colonyv1.NewSidecarClient(conn),
		outcome: map[string]*counters{}, ready: make(chan struct{}), ctx: ctx, cancel: cancel,
	}
	empty := map[string]*pair{}
	g.pairs.Store(&empty)
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.follow() }()
	go func() { defer g.wg.Done(); g.runReports() }()
	return g, nil
}

// Ready is closed once the guard has the sidecar's current breakers.
func (g *Guard) Ready() <-chan struct{} { return g.ready }

// Close stops following and reporting (sending the last outcomes first).
func (g *Guard) Close() error {
	g.cancel()
	g.wg.Wait()
	g.flush(context.Background())
	return g.conn.Close()
}

// Permit is an admitted call. Report its outcome with Done.
type Permit struct {
	c *counters
	// Probe is set for a HALF_OPEN probe call: send the ProbeHeader with
	// ProbeValue.
	Probe      bool
	ProbeValue string
	used       *atomic.Int64 // the generation's permit counter, for Refund
}

// Refund gives a probe permit back when its call was rejected before it
// reached the callee (the data plane had not applied HALF_OPEN yet): only
// calls that reach the callee use the fleet's probe budget.
func (p Permit) Refund() {
	if p.Probe && p.used != nil {
		p.used.Add(-1)
	}
}

// Allow checks a call to callee: nil error and a Permit when it may go,
// a *RejectedError (errors.Is ErrOpen) when the breaker rejects it. A
// rejected call is counted as rejected; an admitted one must be finished
// with Done.
func (g *Guard) Allow(callee string) (Permit, error) {
	p := (*g.pairs.Load())[callee]
	if p == nil {
		return Permit{c: g.countersFor(callee)}, nil
	}
	switch p.state {
	case breaker.Closed:
		return Permit{c: p.counts}, nil
	case breaker.HalfOpen:
		if p.permits > 0 && p.used.Add(1) <= p.permits {
			return Permit{c: p.counts, Probe: true, ProbeValue: p.probe, used: p.used}, nil
		}
	}
	p.counts.rejected.Add(1)
	return Permit{}, p.reject
}

// Done records the outcome of an admitted call: failed says whether it
// counts as a failure (classify it with the pair's policy, e.g. with a
// breaker.Classifier), slow whether it was slow.
func (p Permit) Done(failed, slow bool) {
	if p.c == nil {
		return
	}
	if failed {
		p.c.failures.Add(1)
		p.c.trailing.Add(1)
	} else {
		p.c.successes.Add(1)
		p.c.trailing.Store(0)
	}
	if slow {
		p.c.slow.Add(1)
	}
}

// DoneAfter is Done for a call that took took: the duration also enters
// the pair's latency histogram, from which the coordinator reports the
// pair's latency percentiles.
func (p Permit) DoneAfter(failed, slow bool, took time.Duration) {
	if p.c == nil {
		return
	}
	p.Done(failed, slow)
	p.c.latency[breaker.LatencyBucket(took)].Add(1)
}

// Exclude records an admitted call that counts neither way.
func (p Permit) Exclude() {
	if p.c != nil {
		p.c.excluded.Add(1)
	}
}

// countersFor returns the counters of a callee with no breaker yet (calls
// to it are still reported, so the coordinator can create one).
func (g *Guard) countersFor(callee string) *counters {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.outcome[callee]
	if c == nil {
		if len(g.outcome) >= 10000 {
			return nil // not reported: a guard follows at most 10000 callees
		}
		c = &counters{}
		g.outcome[callee] = c
	}
	return c
}

// follow mirrors the sidecar's breakers, reconnecting until Close.
func (g *Guard) follow() {
	backoff := 50 * time.Millisecond
	for g.ctx.Err() == nil {
		err := g.followOnce()
		if g.ctx.Err() != nil {
			return
		}
		g.log.Warn("guard: following the sidecar's breakers failed; keeping the last state", "err", err, "retry in", backoff)
		select {
		case <-g.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (g *Guard) followOnce() error {
	stream, err := g.api.WatchBreakers(g.ctx, &colonyv1.WatchBreakersRequest{})
	if err != nil {
		return err
	}
	for {
		u, err := stream.Recv()
		if err != nil {
			return err
		}
		if u.SnapshotDone {
			g.once.Do(func() { close(g.ready) })
			continue
		}
		var rec breaker.PairRecord
		if err := json.Unmarshal(u.Record, &rec); err != nil {
			g.log.Error("guard: unreadable breaker record", "err", err)
			continue
		}
		g.apply(rec, u.GetProbeSecret())
	}
}

// apply installs a record (copy-on-write of the pairs map). probeSecret
// marks the record's probes; a sidecar from before probe secrets sends none
// and matches the generation instead.
func (g *Guard) apply(rec breaker.PairRecord, probeSecret string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.caller = rec.Caller
	c := g.outcome[rec.Callee]
	if c == nil {
		c = &counters{}
		g.outcome[rec.Callee] = c
	}
	old := *g.pairs.Load()
	next := make(map[string]*pair, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	p := &pair{
		state: rec.State, gen: rec.Generation, probe: probeSecret,
		permits: int64(rec.Probes[g.cfg.Instance]), used: &atomic.Int64{}, counts: c,
		reject: &RejectedError{Caller: rec.Caller, Callee: rec.Callee, State: rec.State, Generation: rec.Generation, Traceparent: rec.Traceparent},
	}
	if p.probe == "" {
		p.probe = fmt.Sprint(rec.Generation)
	}
	if prev := old[rec.Callee]; prev != nil && prev.gen == rec.Generation {
		p.used = prev.used // permits are per generation: a reassignment keeps what was used
	}
	next[rec.Callee] = p
	g.pairs.Store(&next)
}

// runReports sends the outcome counters to the sidecar every interval.
func (g *Guard) runReports() {
	t := time.NewTicker(g.cfg.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
			g.flush(g.ctx)
		}
	}
}

func (g *Guard) flush(ctx context.Context) {
	g.mu.Lock()
	var req colonyv1.SidecarReportRequest
	for callee, c := range g.outcome {
		oc := &colonyv1.OutcomeCounts{
			Successes: c.successes.Swap(0), Failures: c.failures.Swap(0), Slow: c.slow.Swap(0),
			Rejected: c.rejected.Swap(0), Excluded: c.excluded.Swap(0),
		}
		oc.TrailingFailures = min(c.trailing.Load(), oc.Failures)
		if oc.Successes+oc.Failures+oc.Rejected+oc.Excluded == 0 {
			continue
		}
		oc.Slow = min(oc.Slow, oc.Successes+oc.Failures)
		var lat breaker.Latency
		for i := range c.latency {
			lat[i] = c.latency[i].Swap(0)
		}
		// A call finishing between the swaps above may land in the next
		// period's counts but this period's histogram: keep it within.
		oc.Latency = lat.Trim(oc.Successes + oc.Failures).Slice()
		req.Outcomes = append(req.Outcomes, &colonyv1.CalleeOutcome{Callee: callee, Counts: oc})
	}
	g.mu.Unlock()
	for len(req.Outcomes) > 0 {
		n := min(len(req.Outcomes), contract.MaxOutcomesPerReport)
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := g.api.Report(rctx, &colonyv1.SidecarReportRequest{Outcomes: req.Outcomes[:n]})
		cancel()
		if err != nil && ctx.Err() == nil {
			g.log.Debug("guard: outcome report dropped", "err", err)
		}
		req.Outcomes = req.Outcomes[n:]
	}
}
