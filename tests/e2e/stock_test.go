//go:build unix

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
)

// callerTotals is a stock caller's running totals, as it prints them.
type callerTotals struct {
	OK, Failed, Rejected int
	Last                 string
}

// parseTotals reads a line `totals ok=N failed=N rejected=N last="..."`.
func parseTotals(line string) (callerTotals, bool) {
	var t callerTotals
	rest, ok := strings.CutPrefix(line, "totals ")
	if !ok {
		return t, false
	}
	n, err := fmt.Sscanf(rest, "ok=%d failed=%d rejected=%d last=%q", &t.OK, &t.Failed, &t.Rejected, &t.Last)
	return t, err == nil && n == 4
}

// stockProc is a caller process written with no Colony code (the stock
// gRPC-Go caller of tests/e2e/stockcaller): it takes its xDS configuration
// from its own bootstrap naming its sidecar and prints its totals, which
// this follows.
type stockProc struct {
	*proc
	id string // service/instance, the x-test-caller tag its calls carry

	mu      sync.Mutex
	totals  callerTotals
	changed chan struct{} // closed and replaced at every totals line
}

// stockBootstrap is a standard gRPC xDS bootstrap (gRFC A27) naming the xDS
// server at server; the node id follows no Colony convention.
func stockBootstrap(server, nodeID, cluster string) string {
	return fmt.Sprintf(`{"xds_servers":[{"server_uri":%q,"channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],"node":{"id":%q,"cluster":%q}}`,
		server, nodeID, cluster)
}

// startStockProc runs bin with args and a bootstrap naming sidecar in its
// environment, logging its stderr to dir. Cleanup stops it.
func startStockProc(t *testing.T, dir, bin, id string, sidecar *sidecarProc, args ...string) *stockProc {
	t.Helper()
	service, instance, _ := strings.Cut(id, "/")
	p := &stockProc{id: id, changed: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP_CONFIG="+stockBootstrap(sidecar.addr, "stock-"+instance+"-of-"+service, service))
	p.proc = startProc(t, id, filepath.Join(dir, "stock-"+service+"-"+instance+".log"), 20, cmd, func(out io.Reader) {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if tot, ok := parseTotals(sc.Text()); ok {
				p.mu.Lock()
				p.totals = tot
				close(p.changed)
				p.changed = make(chan struct{})
				p.mu.Unlock()
			}
		}
	})
	return p
}

// current returns the last totals printed.
func (p *stockProc) current() callerTotals {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.totals
}

// waitTotals waits until the totals satisfy ok, failing the test at ctx's
// end or when the process exits.
func (p *stockProc) waitTotals(t *testing.T, ctx context.Context, what string, ok func(callerTotals) bool) callerTotals {
	t.Helper()
	for {
		p.mu.Lock()
		tot, changed := p.totals, p.changed
		p.mu.Unlock()
		if ok(tot) {
			return tot
		}
		select {
		case <-changed:
		case <-p.done:
			t.Fatalf("%s: %s exited; its last totals: %+v", what, p.id, p.current())
		case <-ctx.Done():
			t.Fatalf("%s: %s: not within the deadline; its last totals: %+v", what, p.id, tot)
		}
	}
}

// buildStockCaller builds tests/e2e/stockcaller into dir.
func buildStockCaller(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "stockcaller")
	out, err := exec.Command("go", "build", "-o", bin, "./stockcaller").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./stockcaller: %v\n%s", err, out)
	}
	return bin
}

// waitBreaker polls the pair until cond holds for its record and history,
// and returns what it saw then.
func waitBreaker(t *testing.T, ctx context.Context, admin *client.Client, caller, callee, what string, within time.Duration, cond func(*client.BreakerInfo) bool) *client.BreakerInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		info, err := admin.GetBreaker(ctx, caller, callee, 50)
		if err == nil && cond(info) {
			return info
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if info != nil {
				logHistory(t, caller+"->"+callee, info)
			}
			t.Fatalf("%s->%s: %s: not within %v (%v)", caller, callee, what, within, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func logHistory(t *testing.T, pair string, info *client.BreakerInfo) {
	t.Helper()
	t.Logf("%s now %v gen %d; live %+v", pair, info.Record.State, info.Record.Generation, info.Live)
	for _, h := range info.History {
		ev := ""
		if h.Evidence != nil {
			ev = fmt.Sprintf("calls=%d failed=%d instances=%d/%d probes ok=%d failed=%d",
				h.Evidence.Calls, h.Evidence.Failures, h.Evidence.FailingInstances, h.Evidence.ReportingInstances, h.Evidence.ProbeSuccesses, h.Evidence.ProbeFailures)
		}
		t.Logf("  %s %s %v->%v gen %d %s probes=%v %s", h.At.Format("15:04:05.000"), h.Kind, h.From, h.To, h.Generation, h.Cause, h.Probes, ev)
	}
}

// halfOpenPeriod is one HALF_OPEN period of a pair and what reached the
// callee in it.
type halfOpenPeriod struct {
	generation uint64
	from, to   time.Time      // HALF_OPEN's start; the next HALF_OPEN's, or CLOSED's
	decided    time.Time      // when the period's HALF_OPEN ended
	permits    map[string]int // instance -> probe permits
	budget     int            // the permits' sum
	outcome    breaker.State  // what the period ended in (OPEN or CLOSED)
	reached    map[string]int // instance -> calls the callee received
}

func (p halfOpenPeriod) total() int {
	n := 0
	for _, v := range p.reached {
		n += v
	}
	return n
}

// halfOpenPeriods splits the calls the callee received from caller's
// instances by the pair's HALF_OPEN periods. A period runs from its
// HALF_OPEN transition to the next HALF_OPEN, so the OPEN that a failed
// period ends in (which must let nothing through) counts with it; the last
// period ends at CLOSED.
func halfOpenPeriods(history []breaker.HistoryEntry, caller string, calls []calleeCall) []halfOpenPeriod {
	var periods []halfOpenPeriod
	for i, h := range history {
		if h.Kind != breaker.HistoryTransition || h.To != breaker.HalfOpen {
			continue
		}
		p := halfOpenPeriod{generation: h.Generation, from: h.At, permits: h.Probes, reached: map[string]int{}}
		for _, n := range h.Probes {
			p.budget += n
		}
		for _, next := range history[i+1:] {
			if next.Kind != breaker.HistoryTransition {
				continue
			}
			if p.outcome == 0 && next.From == breaker.HalfOpen {
				p.outcome, p.decided = next.To, next.At
			}
			if next.To == breaker.HalfOpen || next.To == breaker.Closed {
				p.to = next.At
				break
			}
		}
		if p.to.IsZero() {
			continue // not over yet
		}
		for _, c := range calls {
			svc, inst, _ := strings.Cut(c.caller, "/")
			if svc == caller && !c.at.Before(p.from) && !c.at.After(p.to) {
				p.reached[inst]++
			}
		}
		periods = append(periods, p)
	}
	return periods
}

// TestMeshStockCallersTripProbeAndRecover is the mesh with callers nobody
// wrote the breaker for: a 3-node coordinator cluster (processes), a callee
// "payments" (a real gRPC server) registered by its sidecar, and two caller
// instances of "checkout" (one dialing xds:///payments, the other
// xds:///Payments:50051), each a process on stock gRPC-Go alone
// (tests/e2e/stockcaller: no import of this module, no guard library) with
// its own xDS bootstrap naming its own sidecar. Their outcomes reach the
// breaker only through the load reports (LRS) gRPC sends the sidecar, and,
// in HALF_OPEN, through the sidecars' probe gates, where their routes send
// a permit holder's calls. The callee fails: the pair trips from the load
// reports alone; in HALF_OPEN the callee receives no more calls than the
// probe budget; with the callee still failing the pair re-opens, healed it
// closes.
func TestMeshStockCallersTripProbeAndRecover(t *testing.T) {
	// Built before the clock starts: on a new machine this compiles gRPC's
	// xDS client without -race, minutes beside the other packages' builds.
	dir := t.TempDir()
	stockBin := buildStockCaller(t, dir)
	c := NewCluster(t, 3)
	ctx := testContext(t, 180*time.Second)
	c.WaitLeader(t, ctx)
	var eps []string
	for _, n := range c.Nodes {
		eps = append(eps, n.GRPCAddr)
	}
	coords := strings.Join(eps, ",")
	admin, err := client.New(client.Config{Endpoints: eps, TLS: c.ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const budget = 3
	specs, err := client.ParsePolicyFile([]byte(fmt.Sprintf(`
policies:
  - callee: payments
    policy:
      window: 2s
      buckets: 4
      minimumCalls: 10
      failureRateThreshold: 0.5
      openDuration: 2s
      backoffMultiplier: 1
      jitter: 0
      probeBudget: %d
      successesToClose: %d
      probeTimeout: 5s
      minFailingInstances: 2
`, budget, budget)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ApplyPolicies(ctx, specs, "e2e", false); err != nil {
		t.Fatal(err)
	}

	callee := startCallee(t)
	startSidecarProc(t, dir, "payments-p1", append(c.SidecarArgs(t, "payments"),
		"--service", "payments", "--instance", "p1", "--address", callee.addr, "--coordinators", coords)...)
	// s1 dials the callee's name; s2 writes it as many gRPC users do, with
	// a port and another case, which the sidecar serves as the same callee.
	var callers []*stockProc
	for inst, target := range map[string]string{"s1": "xds:///payments", "s2": "xds:///Payments:50051"} {
		sc := startSidecarProc(t, dir, "checkout-"+inst, append(c.SidecarArgs(t, "checkout"),
			"--service", "checkout", "--instance", inst, "--address", "127.0.0.1:1", "--coordinators", coords,
			"--report-interval", "100ms")...)
		callers = append(callers, startStockProc(t, dir, stockBin, "checkout/"+inst, sc,
			"-target", target, "-tag", "checkout/"+inst, "-interval", "20ms", "-timeout", "1s", "-max-duration", "150s"))
	}

	// Traffic flows through xDS from both stock callers.
	flowCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	for _, p := range callers {
		p.waitTotals(t, flowCtx, "traffic flows", func(tot callerTotals) bool { return tot.OK >= 10 })
	}
	cancel()

	// 1. The callee fails: the pair trips on the stock callers' load
	// reports alone, and both enforce it.
	tripStart := time.Now()
	callee.failing.Store(true)
	opened := waitBreaker(t, ctx, admin, "checkout", "payments", "OPEN from the stock callers' reports", 30*time.Second,
		func(info *client.BreakerInfo) bool { return info.Record.State == breaker.Open })
	tripTook := time.Since(tripStart)
	trip := opened.Record.Evidence
	if trip.FailingInstances < 2 || trip.Failures == 0 {
		logHistory(t, "checkout->payments", opened)
		t.Fatalf("the trip's evidence %+v: want the failures of both stock callers", trip)
	}
	enforceCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	for _, p := range callers {
		before := p.current().Rejected
		p.waitTotals(t, enforceCtx, "OPEN enforced", func(tot callerTotals) bool { return tot.Rejected > before })
	}
	cancel()
	t.Logf("stock callers only: callee failing -> checkout->payments OPEN %v (trip evidence: %d calls, %d failed, %d failing instances); -> both callers rejecting %v",
		tripTook.Round(time.Millisecond), trip.Calls, trip.Failures, trip.FailingInstances, time.Since(tripStart).Round(time.Millisecond))

	// 2. Still failing: HALF_OPEN's probes fail and the pair re-opens.
	reopened := waitBreaker(t, ctx, admin, "checkout", "payments", "HALF_OPEN, then OPEN again with the callee still failing", 60*time.Second,
		func(info *client.BreakerInfo) bool {
			return info.Record.State == breaker.Open && info.Record.Generation >= opened.Record.Generation+2
		})

	// 3. Healed: the next HALF_OPEN's probes succeed and the pair closes.
	callee.failing.Store(false)
	closed := waitBreaker(t, ctx, admin, "checkout", "payments", "CLOSED with the callee healed", 60*time.Second,
		func(info *client.BreakerInfo) bool {
			return info.Record.State == breaker.Closed && info.Record.Generation > reopened.Record.Generation &&
				slices.ContainsFunc(info.History, func(h breaker.HistoryEntry) bool { return h.Generation == info.Record.Generation })
		})
	flowCtx, cancel = context.WithTimeout(ctx, 30*time.Second)
	for _, p := range callers {
		before := p.current().OK
		p.waitTotals(t, flowCtx, "traffic flows again", func(tot callerTotals) bool { return tot.OK >= before+10 })
	}
	cancel()

	// What reached the callee in each HALF_OPEN period, against the budget.
	periods := halfOpenPeriods(closed.History, "checkout", callee.received())
	var sawReopen, sawClose bool
	for _, p := range periods {
		if p.generation <= opened.Record.Generation {
			continue
		}
		var per []string
		for _, inst := range slices.Sorted(maps.Keys(p.permits)) {
			per = append(per, fmt.Sprintf("%s %d of %d", inst, p.reached[inst], p.permits[inst]))
		}
		t.Logf("HALF_OPEN gen %d: %v in HALF_OPEN, then %v (period %v): %d calls reached the callee against a budget of %d (%s)",
			p.generation, p.decided.Sub(p.from).Round(time.Millisecond), p.outcome, p.to.Sub(p.from).Round(time.Millisecond),
			p.total(), p.budget, strings.Join(per, ", "))
		if p.budget != budget {
			t.Errorf("HALF_OPEN gen %d: permits %v sum to %d, want the policy's budget %d", p.generation, p.permits, p.budget, budget)
		}
		// Each sidecar's probe gate admits at most its instance's
		// permits of the generation, so the stock callers' probes stay
		// within the fleet-wide budget.
		if total := p.total(); total > p.budget {
			t.Errorf("HALF_OPEN gen %d: %d calls from stock callers reached the callee, more than the probe budget %d", p.generation, total, p.budget)
		}
		sawReopen = sawReopen || p.outcome == breaker.Open
		sawClose = sawClose || p.outcome == breaker.Closed
	}
	if !sawReopen || !sawClose {
		logHistory(t, "checkout->payments", closed)
		t.Fatalf("HALF_OPEN periods %+v: want one that re-opened (callee failing) and one that closed (healed)", periods)
	}
	var closing breaker.HistoryEntry
	for _, h := range closed.History {
		if h.Kind == breaker.HistoryTransition && h.To == breaker.Closed {
			closing = h
		}
	}
	if closing.Evidence == nil || closing.Evidence.ProbeSuccesses < budget {
		logHistory(t, "checkout->payments", closed)
		t.Fatalf("the pair closed with evidence %+v: want %d probe successes from the stock callers' reports", closing.Evidence, budget)
	}
	var totals []string
	for _, p := range callers {
		tot := p.current()
		totals = append(totals, fmt.Sprintf("%s %d ok, %d failed, %d rejected", p.id, tot.OK, tot.Failed, tot.Rejected))
	}
	sort.Strings(totals)
	t.Logf("stock callers: %s", strings.Join(totals, "; "))
}
