//go:build unix

package robustness

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Environment variables that configure TestRobustness (make robustness sets
// them; the defaults are the short fixed run of `go test`).
const (
	// envSeeds: comma-separated seeds, or "random:N" for N random ones.
	envSeeds = "ROBUSTNESS_SEEDS"
	// envDuration: how long faults are injected per seed (a Go duration).
	envDuration = "ROBUSTNESS_DURATION"
	// envFaults: comma-separated fault kinds to pick from (default: all).
	envFaults = "ROBUSTNESS_FAULTS"
	// envReportDir: where report folders go (default: the system temp dir).
	envReportDir = "ROBUSTNESS_REPORT_DIR"
	// envKeepReports: "1" keeps a report folder for passing seeds too.
	envKeepReports = "ROBUSTNESS_KEEP_REPORTS"
	// envNodes: the cluster size, 3 (default) or 5.
	envNodes = "ROBUSTNESS_NODES"
	// envCanary: a deliberately broken run that must fail, to show a
	// checker and the report work end to end: "stale-reads" makes the
	// clients' gets local reads (not linearizable); "ephemeral-delete"
	// makes the session holders delete an ephemeral themselves before
	// their session ends; "sidecar-cut" cuts one sidecar off from the
	// coordinators halfway through the faults, for good.
	envCanary = "ROBUSTNESS_CANARY"
	// envOverlap: the share of nemesis rounds that inject two faults at
	// once, 0..1 ("on" is 0.5); default 0 (the short default run overlaps
	// seed 2's).
	envOverlap = "ROBUSTNESS_OVERLAP"
	// envLogStore: the raft log store passed to --log-store (boltdb or
	// pebble) by the scenario, slow-disk, failing-fsync and power-loss
	// tests. Default: boltdb, but the last two run pebble (failing fsync)
	// or both (power loss).
	envLogStore = "ROBUSTNESS_LOG_STORE"
)

// The short default run: two fixed seeds, 12 s of faults each; seed 2
// overlaps two faults in half its rounds.
var (
	defaultSeeds    = []uint64{1, 2}
	defaultDuration = 12 * time.Second
	defaultOverlap  = map[uint64]float64{2: 0.5}
)

// canaries are the values ROBUSTNESS_CANARY accepts.
var canaries = []string{"stale-reads", "ephemeral-delete", "sidecar-cut", "no-fsync"}

// TestRobustness runs one randomised fault scenario per seed against a
// 3-node cluster of real processes and checks the recorded histories. A
// failing seed leaves a report folder (its path is logged) with the
// timeline of faults, the histories, the linearizability visualisation when
// that check failed, and the nodes' logs. Rerun one with
// ROBUSTNESS_SEEDS=<seed>.
func TestRobustness(t *testing.T) {
	seeds, err := parseSeeds(os.Getenv(envSeeds))
	if err != nil {
		t.Fatalf("%s: %v", envSeeds, err)
	}
	dur := defaultDuration
	if s := os.Getenv(envDuration); s != "" {
		if dur, err = time.ParseDuration(s); err != nil || dur <= 0 {
			t.Fatalf("%s=%q: want a positive Go duration", envDuration, s)
		}
	}
	faults, err := parseFaults(os.Getenv(envFaults))
	if err != nil {
		t.Fatalf("%s: %v", envFaults, err)
	}
	overlap, overlapSet, err := parseOverlap(os.Getenv(envOverlap))
	if err != nil {
		t.Fatalf("%s: %v", envOverlap, err)
	}
	if c := os.Getenv(envCanary); c != "" && !slices.Contains(canaries, c) {
		t.Fatalf("%s=%q: want one of %v", envCanary, c, canaries)
	}
	defaultRun := strings.TrimSpace(os.Getenv(envSeeds)) == ""
	nodes := 3
	if s := os.Getenv(envNodes); s != "" {
		if nodes, err = strconv.Atoi(s); err != nil || (nodes != 3 && nodes != 5) {
			t.Fatalf("%s=%q: want 3 or 5", envNodes, s)
		}
	}
	var mu sync.Mutex
	var outcomes []string
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			sc := newScenario(seed, dur, faults)
			sc.Nodes = nodes
			sc.Overlap = overlap
			if !overlapSet && defaultRun {
				sc.Overlap = defaultOverlap[seed]
			}
			if ls := os.Getenv(envLogStore); ls != "" {
				sc.LogStore = ls
			}
			start := time.Now()
			report := runScenario(t, sc)
			line := fmt.Sprintf("seed=%d %s in %v (%s)", seed, map[bool]string{true: "FAIL", false: "ok"}[t.Failed()],
				time.Since(start).Round(100*time.Millisecond), sc.describe())
			if report != "" {
				line += ", report: " + report
			}
			fmt.Fprintln(os.Stderr, "robustness:", line)
			mu.Lock()
			outcomes = append(outcomes, line)
			mu.Unlock()
		})
	}
	t.Logf("outcomes:\n  %s", strings.Join(outcomes, "\n  "))
}

// parseOverlap parses ROBUSTNESS_OVERLAP: empty (not set), "on", "off", or
// a share of rounds in [0, 1].
func parseOverlap(s string) (float64, bool, error) {
	switch s = strings.TrimSpace(s); s {
	case "":
		return 0, false, nil
	case "on":
		return 0.5, true, nil
	case "off":
		return 0, true, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v > 1 {
		return 0, false, fmt.Errorf("%q: want on, off or a share of rounds in [0, 1]", s)
	}
	return v, true, nil
}

func parseSeeds(s string) ([]uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return defaultSeeds, nil
	}
	if n, ok := strings.CutPrefix(s, "random:"); ok {
		k, err := strconv.Atoi(n)
		if err != nil || k <= 0 || k > 10000 {
			return nil, fmt.Errorf("random:N wants 1 <= N <= 10000, got %q", n)
		}
		out := make([]uint64, k)
		for i := range out {
			out[i] = rand.Uint64() % 1_000_000
		}
		return out, nil
	}
	var out []uint64
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seed %q: %w", f, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// scenario is what a seed decides beyond the fault schedule.
type scenario struct {
	Seed     uint64
	Nodes    int
	Duration time.Duration
	Faults   []faultKind
	// Overlap is the share of nemesis rounds with two faults at once.
	Overlap  float64
	Clients  int
	Keys     int
	LogStore string
	// LowSnapshots makes nodes snapshot and compact every few dozen
	// entries, so a lagging follower needs InstallSnapshot.
	LowSnapshots bool
	// UnsafeNoFsync runs the nodes without fsync of the raft log: only for
	// the power-loss canary, which must then fail.
	UnsafeNoFsync bool
}

func newScenario(seed uint64, d time.Duration, faults []faultKind) scenario {
	r := rand.New(rand.NewPCG(seed, 1))
	sc := scenario{
		Seed:         seed,
		Nodes:        3,
		Duration:     d,
		Faults:       faults,
		Clients:      3 + r.IntN(3),
		Keys:         2 + r.IntN(4),
		LogStore:     "boltdb",
		LowSnapshots: r.IntN(2) == 0 || slices.Contains(faults, faultLagFollower) && len(faults) == 1,
	}
	return sc
}

func (sc scenario) describe() string {
	return fmt.Sprintf("%d nodes, %v of faults, overlap %v, %d clients, %d keys, %s log, low snapshot thresholds %v",
		sc.Nodes, sc.Duration, sc.Overlap, sc.Clients, sc.Keys, sc.LogStore, sc.LowSnapshots)
}

// rerun is the command that runs this scenario again.
func (sc scenario) rerun() string {
	cmd := fmt.Sprintf("ROBUSTNESS_SEEDS=%d ROBUSTNESS_DURATION=%v ROBUSTNESS_NODES=%d ROBUSTNESS_OVERLAP=%v", sc.Seed, sc.Duration, sc.Nodes, sc.Overlap)
	if len(sc.Faults) != len(allFaults) {
		var fs []string
		for _, f := range sc.Faults {
			fs = append(fs, string(f))
		}
		cmd += " ROBUSTNESS_FAULTS=" + strings.Join(fs, ",")
	}
	if c := os.Getenv(envCanary); c != "" {
		cmd += " ROBUSTNESS_CANARY=" + c
	}
	return cmd + " make robustness"
}

func (sc scenario) nodeArgs() []string {
	// A leader whose log write hangs for 1s gives way (the slow-disk
	// fault's stalled-leader rounds hold it longer than that).
	// Idle watches hear from their node every second, so a stream whose
	// node went silent is given up after 3 s (watch_test.go).
	args := []string{"--log-store", sc.LogStore, "--min-session-ttl", "1s", "--disk-stall-timeout", "1s", "--watch-progress-interval", "1s"}
	if sc.LowSnapshots {
		args = append(args, "--snapshot-interval", "200ms", "--snapshot-threshold", "64", "--trailing-logs", "32")
	}
	if sc.UnsafeNoFsync {
		args = append(args, "--unsafe-no-fsync")
	}
	return args
}

// run is one scenario's state, for the checks and the report.
type run struct {
	t        *testing.T
	sc       scenario
	start    time.Time
	events   *eventLog
	c        *Cluster
	h        *history
	keys     []string
	watchers []*watchRecorder
	sessions *sessionWorkload
	careless *carelessActor
	breakers []*breakerWorkload
	sidecars *sidecarFleet
	locks    *lockWorkload
	final    map[string]regState
	failures []string
	files    map[string]string // report file name -> content
	linInfo  *porcupine.LinearizationInfo
	linOps   []porcupine.Operation
}

func (r *run) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.failures = append(r.failures, msg)
	r.t.Error(msg)
}

// runScenario runs one scenario and returns the report folder's path, if
// one was written.
func runScenario(t *testing.T, sc scenario) string {
	r := newRun(t, sc)
	t.Logf("scenario: seed %d, %s", sc.Seed, sc.describe())
	r.c = newCluster(t, t.TempDir(), clusterOptions{Nodes: sc.Nodes, Seed: sc.Seed, ExtraArgs: sc.nodeArgs()}, r.events)
	r.events.note("cluster", "%d nodes ready", sc.Nodes)
	for i := range sc.Keys {
		r.keys = append(r.keys, fmt.Sprintf("%sk%d", keyPrefix, i))
	}
	defer func() {
		if t.Failed() || os.Getenv(envKeepReports) == "1" {
			r.writeReport()
		}
	}()
	r.setup()
	if t.Failed() {
		return r.reportPath()
	}

	// Watches first, so they see every write of the workload.
	w := r.startWorkload(func(c *kvClient) { c.staleReads = os.Getenv(envCanary) == "stale-reads" })
	ctx, watchCtx, go1 := w.ctx, w.watchCtx, w.goRun
	eps, tlsCfg := r.c.ClientEndpoints(), r.c.ClientTLS()
	canary := os.Getenv(envCanary)
	var err error
	r.sessions, err = newSessionWorkload(eps, tlsCfg, sc.Seed, r.events, canary == "ephemeral-delete")
	if err != nil {
		t.Fatalf("sessions: %v", err)
	}
	defer r.sessions.close()
	go1(func() { r.sessions.run(ctx, watchCtx) })
	r.careless, err = newCarelessActor(eps, tlsCfg, sc.Seed, r.events)
	if err != nil {
		t.Fatalf("careless client: %v", err)
	}
	defer r.careless.close()
	go1(func() { r.careless.run(ctx, watchCtx) })
	for i, callee := range []string{rbCallee, rbCallee2} {
		ops := [][]string{rbOps, rbOps2}[i]
		b := newBreakerWorkload(t, eps, tlsCfg, sc.Seed+uint64(i), r.events, callee, ops)
		defer b.close()
		r.breakers = append(r.breakers, b)
		go1(func() { b.run(ctx, watchCtx) })
	}
	r.sidecars, err = newSidecarFleet(r.c, t.TempDir(), sidecarCount, sc.Seed, r.events)
	if err != nil {
		t.Fatalf("sidecars: %v", err)
	}
	defer r.sidecars.close()
	r.events.note("sidecars", "%s", r.sidecars.describe())
	go1(func() { r.sidecars.run(watchCtx) })
	if canary == "sidecar-cut" {
		go1(func() {
			if sleepUntil(ctx, sc.Duration/2) {
				sp := r.sidecars.procs[0]
				r.c.Hold(sp.proxies, modeBlackhole)
				r.events.note("canary", "sidecar %s cut off from every coordinator for good", sp.name)
			}
		})
	}
	r.locks = newLockWorkload(eps, tlsCfg, sc.Seed)
	defer r.locks.close()
	go1(func() { r.locks.run(ctx) })

	// Faults, then a healed cluster for a moment, then quiet.
	nctx, cancel := context.WithTimeout(context.Background(), sc.Duration)
	nm := newNemesis(r.c, sc.Seed, sc.Faults, r.events)
	nm.overlap, nm.sidecars = sc.Overlap, r.sidecars
	nm.run(nctx)
	cancel()
	r.events.note("healed", "every fault healed")
	for _, e := range nm.errors() {
		r.fail("harness: %s", e)
	}
	time.Sleep(time.Second)
	r.finishKV(w, func() {
		r.sessions.finish(r)
		r.careless.finish(r)
		for _, b := range r.breakers {
			b.finish(r)
		}
		r.sidecars.finish()
	})
	r.sessions.check(r)
	r.careless.check(r)
	for _, b := range r.breakers {
		b.check(r)
	}
	committed := map[string]map[uint64]breaker.State{}
	for _, b := range r.breakers {
		if recs, complete := b.committedRecords(); complete {
			committed[b.callee] = recs
		}
	}
	r.sidecars.check(r, committed)
	r.sidecars.checkLogs(r)
	r.locks.check(r)
	r.logStats(w.clients)
	if t.Failed() || os.Getenv(envKeepReports) == "1" {
		return r.reportPath()
	}
	return ""
}

// setup creates the workload's parents.
func (r *run) setup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range append([]string{"/rb", "/rb-eph", "/rb-lock", lockResource}, carelessPaths()...) {
		err := retryAdmin(ctx, r.c, func(ctx context.Context, n *Node) error {
			_, err := n.Tree().Create(ctx, &colonyv1.CreateRequest{Path: p, RequestId: "rb-setup-" + p})
			if status.Code(err) == codes.AlreadyExists {
				return nil
			}
			return err
		})
		if err != nil {
			r.t.Fatalf("creating %s: %v", p, err)
		}
	}
}

// retryAdmin calls f on live nodes in turn until it succeeds or fails with
// a definite error, or ctx ends.
func retryAdmin(ctx context.Context, c *Cluster, f func(context.Context, *Node) error) error {
	for i := 0; ; i++ {
		live := c.Live()
		var err error
		if len(live) == 0 {
			err = errors.New("no live node")
		} else {
			actx, cancel := context.WithTimeout(ctx, rpcTimeout)
			err = f(actx, live[i%len(live)])
			cancel()
			switch status.Code(err) {
			case codes.OK:
				return nil
			case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			default:
				return err
			}
		}
		if !sleepUntil(ctx, 100*time.Millisecond) {
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		}
	}
}

// checkConvergence waits until every node has applied the same index and
// holds the same tree (compared by a hash of a full walk, read on each node
// at exactly that index).
func (r *run) checkConvergence() {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var last string
	var mismatches int
	for ctx.Err() == nil {
		sts, err := r.c.Statuses(ctx)
		if err != nil {
			last = err.Error()
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		var applied []uint64
		for _, st := range sts {
			applied = append(applied, st.GetAppliedIndex())
		}
		if slices.Min(applied) != slices.Max(applied) {
			last = fmt.Sprintf("applied indexes differ: %v", statusSummary(sts))
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		idx := applied[0]
		hashes := map[string]string{}
		walks := map[string][]string{}
		changed := false
		for _, n := range r.c.Nodes {
			lines, err := walkTree(ctx, n.Tree(), idx)
			if errors.Is(err, errChanged) {
				changed = true
				break
			}
			if err != nil {
				last = fmt.Sprintf("walking %s: %v", n.ID, err)
				changed = true
				break
			}
			sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
			hashes[n.ID] = fmt.Sprintf("%x", sum[:8])
			walks[n.ID] = lines
		}
		if changed {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		same := true
		for _, h := range hashes {
			if h != hashes["n1"] {
				same = false
			}
		}
		if same {
			r.events.note("converged", "every node applied index %d, state hash %s (%d nodes in the tree)", idx, hashes["n1"], len(walks["n1"]))
			r.t.Logf("converged at applied index %d, state hash %s", idx, hashes["n1"])
			return
		}
		// Same index, different state: a real divergence, unless the walks
		// raced a write; look twice.
		mismatches++
		last = fmt.Sprintf("nodes at applied index %d hold different trees: hashes %v; first difference: %s", idx, hashes, firstDiff(walks))
		if mismatches >= 3 {
			break
		}
		sleepCtx(ctx, 300*time.Millisecond)
	}
	r.fail("nodes did not converge after healing: %s", last)
}

func statusSummary(sts map[string]*colonyv1.StatusResponse) string {
	var parts []string
	for id, st := range sts {
		parts = append(parts, fmt.Sprintf("%s: leader %s term %d commit %d applied %d", id, st.GetLeaderId(), st.GetTerm(), st.GetCommitIndex(), st.GetAppliedIndex()))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func firstDiff(walks map[string][]string) string {
	a := walks["n1"]
	for id, b := range walks {
		for i := range max(len(a), len(b)) {
			var x, y string
			if i < len(a) {
				x = a[i]
			}
			if i < len(b) {
				y = b[i]
			}
			if x != y {
				return fmt.Sprintf("n1 %q vs %s %q", x, id, y)
			}
		}
	}
	return "none"
}

var errChanged = errors.New("the tree changed during the walk")

// walkTree reads every znode on one node at exactly index idx (session
// consistency, so the node's own state), one line per node.
func walkTree(ctx context.Context, tree colonyv1.TreeClient, idx uint64) ([]string, error) {
	var lines []string
	var walk func(p string, depth int) error
	walk = func(p string, depth int) error {
		if depth > 64 || len(lines) > 200000 {
			return errors.New("tree too deep or too large")
		}
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		g, err := tree.Get(rctx, &colonyv1.GetRequest{Path: p, Consistency: colonyv1.Consistency_CONSISTENCY_SESSION, MinZxid: idx})
		cancel()
		if err != nil {
			return err
		}
		if g.GetHeader().GetZxid() != idx {
			return errChanged
		}
		st := g.GetStat()
		data := sha256.Sum256(g.GetData())
		lines = append(lines, fmt.Sprintf("%s data=%x czxid=%d mzxid=%d pzxid=%d ctime=%d mtime=%d v=%d cv=%d n=%d eph=%d kind=%v ttl=%d",
			p, data[:6], st.GetCzxid(), st.GetMzxid(), st.GetPzxid(), st.GetCtimeMs(), st.GetMtimeMs(), st.GetVersion(),
			st.GetCversion(), st.GetNumChildren(), st.GetEphemeralOwner(), st.GetKind(), st.GetTtlMs()))
		rctx, cancel = context.WithTimeout(ctx, rpcTimeout)
		ch, err := tree.Children(rctx, &colonyv1.ChildrenRequest{Path: p, Consistency: colonyv1.Consistency_CONSISTENCY_SESSION, MinZxid: idx})
		cancel()
		if err != nil {
			return err
		}
		if ch.GetHeader().GetZxid() != idx {
			return errChanged
		}
		for _, name := range ch.GetNames() {
			if err := walk(path.Join(p, name), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return lines, walk("/", 0)
}

// finalReads reads every key through every node (linearizable) and adds the
// reads to the history, so the checker sees the state the cluster settled
// on; it also keeps the state for the watch replay check.
func (r *run) finalReads() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.final = map[string]regState{}
	clientID := r.sc.Clients
	for _, n := range r.c.Nodes {
		for _, key := range r.keys {
			call := r.h.ts()
			var out kvOutput
			err := retryAdmin(ctx, r.c, func(ctx context.Context, _ *Node) error {
				g, err := n.Tree().Get(ctx, &colonyv1.GetRequest{Path: key})
				if status.Code(err) == codes.NotFound {
					out = kvOutput{}
					return nil
				}
				if err != nil {
					return err
				}
				out = kvOutput{Exists: true, Value: string(g.GetData()), Version: g.GetStat().GetVersion(), Zxid: g.GetStat().GetMzxid(), Node: g.GetHeader().GetMemberId()}
				return nil
			})
			if err != nil {
				r.fail("final read of %s through %s: %v", key, n.ID, err)
				continue
			}
			r.h.add(porcupine.Operation{ClientId: clientID, Input: kvInput{Kind: opGet, Key: key}, Call: call, Output: out, Return: r.h.ts()})
			r.final[key] = regState{Exists: out.Exists, Value: out.Value, Version: out.Version}
		}
	}
}

// waitWatchesCatchUp waits until every watch recorder has seen the last
// change under the keys' parent.
func (r *run) waitWatchesCatchUp() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var target uint64
	err := retryAdmin(ctx, r.c, func(ctx context.Context, n *Node) error {
		g, err := n.Tree().Get(ctx, &colonyv1.GetRequest{Path: strings.TrimSuffix(keyPrefix, "/")})
		if err != nil {
			return err
		}
		target = g.GetStat().GetPzxid()
		for _, key := range r.keys {
			if g, err := n.Tree().Get(ctx, &colonyv1.GetRequest{Path: key}); err == nil {
				target = max(target, g.GetStat().GetMzxid())
			} else if status.Code(err) != codes.NotFound {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.fail("reading the last change for the watch check: %v", err)
		return
	}
	for _, w := range r.watchers {
		for w.seen() < target && ctx.Err() == nil {
			sleepCtx(ctx, 50*time.Millisecond)
		}
		if w.seen() < target {
			r.fail("watch %s stalled: it has seen up to zxid %d, the last change is at %d", w.name, w.seen(), target)
		}
	}
}

// checkLinearizable checks the key-value history with porcupine.
func (r *run) checkLinearizable() {
	for _, v := range r.h.violations {
		r.fail("zxid order: %s", v)
	}
	ops := r.h.operations()
	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, 2*time.Minute)
	r.linInfo, r.linOps = &info, ops
	switch res {
	case porcupine.Ok:
		r.t.Logf("linearizable: %d operations", len(ops))
	case porcupine.Unknown:
		// Not a failure: the checker ran out of time, nothing was shown wrong.
		r.t.Logf("linearizability: the checker timed out on %d operations; inconclusive", len(ops))
		r.events.note("checker", "porcupine timed out: inconclusive")
	default:
		var bad []string
		for _, part := range registerModel.Partition(ops) {
			if porcupine.CheckOperationsTimeout(registerModel, part, time.Minute) == porcupine.Illegal {
				bad = append(bad, fmt.Sprintf("%s (%d operations)", part[0].Input.(kvInput).Key, len(part)))
			}
		}
		r.fail("the history of %d operations is not linearizable; keys %s (see linearizability.html in the report)", len(ops), strings.Join(bad, ", "))
	}
}

// checkWatches runs the watch checks on the recorders.
func (r *run) checkWatches() {
	acked := map[uint64]string{}
	for _, op := range r.h.operations() {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if out.Unknown || out.Err != errNone || out.Zxid == 0 {
			continue
		}
		switch in.Kind {
		case opSet, opCAS, opCreate:
			acked[out.Zxid] = fmt.Sprintf("%v %s=%q", in.Kind, in.Key, in.Value)
		}
	}
	for _, e := range checkWatches(r.watchers, acked, r.final) {
		r.fail("watch: %s", e)
	}
	resyncs := 0
	for _, w := range r.watchers {
		resyncs += len(w.snapshot()) - 1
	}
	all := slices.Clone(r.watchers)
	if r.sessions != nil { // TestSlowDisk runs no session workload
		all = append(all, r.sessions.recs...)
	}
	for _, b := range r.breakers {
		all = append(all, b.watch)
	}
	r.t.Logf("watches: %d recorders, %d acknowledged writes with a zxid, %d resyncs; %d streams of all %d recorders went silent and were resumed elsewhere",
		len(r.watchers), len(acked), resyncs, silentStreams(all), len(all))
	for _, line := range explainSilences(all, r.start, r.events.events()) {
		r.t.Logf("watches: silent stream: %s", line)
	}
}

func (r *run) logStats(clients []*kvClient) {
	counts := map[string]int{}
	for _, op := range r.h.operations() {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		switch {
		case out.Unknown:
			counts["unknown"]++
		case out.Err != errNone:
			counts[out.Err.String()]++
		default:
			counts[in.Kind.String()+"-ok"]++
		}
	}
	var faults []string
	for _, e := range r.events.events() {
		switch {
		case slices.Contains(allFaults, faultKind(e.Kind)) && e.Lane > 0:
			faults = append(faults, "+"+e.Kind) // overlapping the one before
		case slices.Contains(allFaults, faultKind(e.Kind)):
			faults = append(faults, e.Kind)
		}
	}
	r.t.Logf("operations: %v; faults: %v", counts, faults)
	r.files["timeline.txt"] = r.events.String()
}

// reportPath is the run's report folder.
func (r *run) reportPath() string {
	base := os.Getenv(envReportDir)
	if base == "" {
		base = filepath.Join(os.TempDir(), "colony-robustness")
	}
	return filepath.Join(base, fmt.Sprintf("seed-%d-%s", r.sc.Seed, r.start.Format("20060102-150405")))
}

// writeReport writes the report folder: summary, timeline, history,
// watches, the porcupine visualisation and the node logs.
func (r *run) writeReport() {
	dir := r.reportPath()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.t.Logf("report: %v", err)
		return
	}
	var sum strings.Builder
	fmt.Fprintf(&sum, "seed %d: %s\nrerun: %s\n\n", r.sc.Seed, r.sc.describe(), r.sc.rerun())
	if len(r.failures) == 0 {
		sum.WriteString("no failures\n")
	}
	for _, f := range r.failures {
		fmt.Fprintf(&sum, "FAIL: %s\n", f)
	}
	r.files["summary.txt"] = sum.String()
	r.files["timeline.txt"] = r.events.String()
	var hist strings.Builder
	ops := r.h.operations()
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	for _, op := range ops {
		fmt.Fprintf(&hist, "%9.3fs %9.3fs client %d: %s\n", float64(op.Call)/1e9, float64(op.Return)/1e9, op.ClientId,
			registerModel.DescribeOperation(op.Input, op.Output))
	}
	r.files["history.txt"] = hist.String()
	for _, w := range r.watchers {
		r.files["watch-"+w.name+".txt"] = w.dump()
	}
	for name, content := range r.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			r.t.Logf("report: %v", err)
		}
	}
	if r.linInfo != nil {
		info := *r.linInfo
		var anns []porcupine.Annotation
		for _, e := range r.events.events() {
			end := e.End
			if end < e.Start {
				end = e.Start
			}
			// One row per lane of faults (two overlapping faults on two
			// rows), one for the overlap windows, one for other events.
			tag, color := "harness", "#e2e3e5"
			switch {
			case e.Kind == "overlap":
				tag, color = "nemesis overlap", "#f8d7a0"
			case slices.Contains(allFaults, faultKind(e.Kind)) && e.Lane > 0:
				tag, color = "nemesis 2", "#f5c6cb"
			case slices.Contains(allFaults, faultKind(e.Kind)):
				tag, color = "nemesis", "#f5c6cb"
			}
			anns = append(anns, porcupine.Annotation{
				Tag: tag, Start: int64(e.Start), End: int64(end),
				Description: e.Kind, Details: e.What, BackgroundColor: color,
			})
		}
		info.AddAnnotations(anns)
		if err := porcupine.VisualizePath(registerModel, info, filepath.Join(dir, "linearizability.html")); err != nil {
			r.t.Logf("report: visualisation: %v", err)
		}
	}
	if err := r.c.copyLogs(dir); err != nil {
		r.t.Logf("report: logs: %v", err)
	}
	if r.sidecars != nil {
		if err := r.sidecars.copyLogs(dir); err != nil {
			r.t.Logf("report: sidecar logs: %v", err)
		}
	}
	r.t.Logf("report folder: %s", dir)
}
