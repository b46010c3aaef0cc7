//go:build unix

package robustness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/framework"
)

// Sidecar processes of the breaker workloads' caller service.
const (
	sidecarCount      = 2
	sidecarSessionTTL = 2 * time.Second
	// sidecarDegradedAfter is short so the faults put sidecars in their
	// degraded modes, and the check sees them come back.
	sidecarDegradedAfter = 2 * time.Second
	// sidecarConvergeWithin bounds how long after healing (and the
	// cluster's convergence) a live sidecar may take to enforce the latest
	// committed records.
	sidecarConvergeWithin = 15 * time.Second
)

// sidecarFleet runs `colony sidecar` processes for rb-caller, the caller of
// the breaker workloads' pairs, each dialling the coordinators through
// client proxies of its own (client faults apply to them). A recorder per
// sidecar follows its WatchBreakers stream (the sidecar API that apps use),
// so every record it enforced is known. Checks: within one process's life a
// pair's generation never goes back, whatever the sidecar's mode; what it
// enforced in coordinator mode was committed with that state; and after
// healing, every live sidecar enforces, in coordinator mode, the latest
// committed record (state and generation) of every pair within
// sidecarConvergeWithin, both in Status and on WatchBreakers.
type sidecarFleet struct {
	c      *Cluster
	events *eventLog
	dir    string
	ctx    context.Context // ends in close; kills the processes
	stop   context.CancelFunc
	procs  []*sidecarProc

	mu        sync.Mutex
	usedPorts map[int]bool // a new process never gets an old one's API port
	errs      []string
	converged []string // per sidecar, how long convergence took
}

// sidecarProc is one sidecar: its arguments stay, its process and API
// address change with each restart (an incarnation).
type sidecarProc struct {
	f       *sidecarFleet
	name    string
	args    []string // without --listen
	logPath string
	proxies []*Proxy
	mode    string // its degraded mode

	mu          sync.Mutex
	proc        *framework.Process
	paused      bool
	incarnation int
	apiAddr     string
	updates     []sidecarUpdate
}

// sidecarUpdate is one record a sidecar's WatchBreakers stream delivered.
type sidecarUpdate struct {
	Incarnation int
	At          time.Duration // since the run started
	Callee      string
	State       breaker.State
	Generation  uint64
	Mode        string // "coordinator", or the degraded mode that decided it
	Cause       string
}

func (u sidecarUpdate) String() string {
	return fmt.Sprintf("%9.3fs run %d %s %v gen %d mode %s cause %q", u.At.Seconds(), u.Incarnation, u.Callee, u.State, u.Generation, u.Mode, u.Cause)
}

// newSidecarFleet starts n sidecars of rb-caller, each with a degraded mode
// drawn from the seed, and waits until each serves its API.
func newSidecarFleet(c *Cluster, dir string, n int, seed uint64, events *eventLog) (*sidecarFleet, error) {
	ctx, stop := context.WithCancel(context.Background())
	f := &sidecarFleet{c: c, events: events, dir: dir, ctx: ctx, stop: stop, usedPorts: map[int]bool{}}
	sec := c.PKI.ServerArgs()
	if c.PKI != nil {
		if _, err := c.PKI.Issue(trust.RoleSidecar, rbCaller); err != nil {
			stop()
			return nil, err
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x51dec))
	modes := []string{"last-known", "fail-open", "fail-closed"}
	for i := range n {
		name := fmt.Sprintf("sc%d", i+1)
		eps, proxies, err := c.AddClientProxies(name)
		if err != nil {
			f.close()
			return nil, err
		}
		sp := &sidecarProc{
			f: f, name: name, logPath: filepath.Join(dir, name+".log"), proxies: proxies,
			mode: modes[rng.IntN(len(modes))],
		}
		sp.args = []string{
			"sidecar",
			"--service", rbCaller,
			"--instance", name,
			"--address", fmt.Sprintf("127.0.0.1:%d", 9100+i), // registered, never dialled
			"--coordinators", strings.Join(eps, ","),
			"--session-ttl", sidecarSessionTTL.String(),
			"--degraded-after", sidecarDegradedAfter.String(),
			"--degraded-mode", sp.mode,
			"--log-level", "info",
		}
		sp.args = append(sp.args, sec...)
		f.procs = append(f.procs, sp)
		if err := sp.start(); err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

// close kills every sidecar process and waits for it.
func (f *sidecarFleet) close() {
	for _, sp := range f.procs {
		sp.kill()
	}
	f.stop()
}

func (f *sidecarFleet) describe() string {
	var parts []string
	for _, sp := range f.procs {
		parts = append(parts, sp.name+" "+sp.mode)
	}
	return strings.Join(parts, ", ")
}

// freePort returns a free port of 127.0.0.1 no earlier sidecar had.
func (f *sidecarFleet) freePort() (int, error) {
	for range 20 {
		ports, err := framework.FreePorts("127.0.0.1", 1)
		if err != nil {
			return 0, err
		}
		f.mu.Lock()
		used := f.usedPorts[ports[0]]
		f.usedPorts[ports[0]] = true
		f.mu.Unlock()
		if !used {
			return ports[0], nil
		}
	}
	return 0, errors.New("no fresh port for a sidecar")
}

// start starts a new incarnation of the sidecar on a fresh API port and
// waits until its API answers.
func (sp *sidecarProc) start() error {
	for attempt := 0; ; attempt++ {
		port, err := sp.f.freePort()
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		p, err := framework.StartProcess(sp.f.ctx, "robustness", colonyBin, append(slices.Clone(sp.args), "--listen", addr), sp.logPath)
		if err != nil {
			return fmt.Errorf("starting sidecar %s: %w", sp.name, err)
		}
		sp.mu.Lock()
		sp.proc, sp.paused = p, false
		sp.incarnation++
		sp.apiAddr = addr
		sp.mu.Unlock()
		err = waitSidecarAPI(sp.f.ctx, p, addr)
		if err == nil {
			return nil
		}
		sp.kill()
		if !errors.Is(err, errAddrInUse) || attempt == 4 {
			return fmt.Errorf("sidecar %s: %w", sp.name, err)
		}
	}
}

// waitSidecarAPI waits until the sidecar at addr answers Status.
func waitSidecarAPI(ctx context.Context, p *framework.Process, addr string) error {
	conn, err := dial(addr, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		_, err := colonyv1.NewSidecarClient(conn).Status(rctx, &colonyv1.SidecarStatusRequest{})
		rcancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited before serving (%v): %w", p.Describe(), errAddrInUse)
		case <-ctx.Done():
			return fmt.Errorf("API not serving: %w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kill kills the running incarnation with SIGKILL and waits for it.
func (sp *sidecarProc) kill() error {
	sp.mu.Lock()
	p := sp.proc
	sp.proc, sp.paused = nil, false
	sp.mu.Unlock()
	if p == nil {
		return nil
	}
	if p.Exited() {
		return fmt.Errorf("sidecar %s had exited by itself: %v", sp.name, p.Describe())
	}
	p.Kill()
	if !p.WaitExit(exitTimeout) {
		return fmt.Errorf("sidecar %s did not exit within %v of SIGKILL", sp.name, exitTimeout)
	}
	return nil
}

func (sp *sidecarProc) restart() error { return sp.start() }

func (sp *sidecarProc) pause() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.proc == nil || sp.paused {
		return fmt.Errorf("pause sidecar %s: not running, or paused already", sp.name)
	}
	if err := sp.proc.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP sidecar %s: %w", sp.name, err)
	}
	sp.paused = true
	return nil
}

func (sp *sidecarProc) resume() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.proc == nil || !sp.paused {
		return nil
	}
	sp.paused = false
	if err := sp.proc.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("SIGCONT sidecar %s: %w", sp.name, err)
	}
	return nil
}

// heal resumes paused sidecars and starts killed ones. A sidecar that
// exited without the harness killing it is an error (and started again).
func (f *sidecarFleet) heal() []error {
	var errs []error
	for _, sp := range f.procs {
		if err := sp.resume(); err != nil {
			errs = append(errs, err)
		}
		sp.mu.Lock()
		running := sp.proc != nil
		crashed := running && sp.proc.Exited()
		sp.mu.Unlock()
		if crashed {
			errs = append(errs, sp.kill())
			running = false
		}
		if !running {
			if err := sp.start(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// run records every sidecar's WatchBreakers stream until ctx ends.
func (f *sidecarFleet) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, sp := range f.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp.record(ctx)
		}()
	}
	wg.Wait()
}

// record follows the WatchBreakers stream of whichever incarnation runs.
// A stream is opened on the incarnation's own API port, so what it
// delivers is that incarnation's.
func (sp *sidecarProc) record(ctx context.Context) {
	for ctx.Err() == nil {
		sp.mu.Lock()
		inc, addr, running := sp.incarnation, sp.apiAddr, sp.proc != nil
		sp.mu.Unlock()
		if running {
			sp.stream(ctx, inc, addr)
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

func (sp *sidecarProc) stream(ctx context.Context, inc int, addr string) {
	conn, err := dial(addr, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := colonyv1.NewSidecarClient(conn).WatchBreakers(sctx, &colonyv1.WatchBreakersRequest{})
	if err != nil {
		return
	}
	for {
		u, err := st.Recv()
		if err != nil {
			return
		}
		if u.GetSnapshotDone() {
			continue
		}
		var rec breaker.PairRecord
		if err := json.Unmarshal(u.GetRecord(), &rec); err != nil {
			sp.f.record("sidecar %s: undecodable record on WatchBreakers: %v", sp.name, err)
			continue
		}
		sp.mu.Lock()
		sp.updates = append(sp.updates, sidecarUpdate{Incarnation: inc, At: sp.f.events.now(), Callee: rec.Callee,
			State: rec.State, Generation: rec.Generation, Mode: u.GetMode(), Cause: rec.Cause})
		sp.mu.Unlock()
	}
}

func (f *sidecarFleet) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (sp *sidecarProc) snapshot() (updates []sidecarUpdate, inc int, addr string, running bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return slices.Clone(sp.updates), sp.incarnation, sp.apiAddr, sp.proc != nil && !sp.paused && !sp.proc.Exited()
}

// latestRecords reads every committed record of rb-caller's pairs
// (linearizable), callee -> record.
func latestRecords(ctx context.Context, c *Cluster) (map[string]breaker.PairRecord, error) {
	out := map[string]breaker.PairRecord{}
	root := "/colony/breakers/" + rbCaller
	err := retryAdmin(ctx, c, func(ctx context.Context, n *Node) error {
		clear(out)
		ch, err := n.Tree().Children(ctx, &colonyv1.ChildrenRequest{Path: root})
		if status.Code(err) == codes.NotFound {
			return nil
		}
		if err != nil {
			return err
		}
		for _, name := range ch.GetNames() {
			g, err := n.Tree().Get(ctx, &colonyv1.GetRequest{Path: root + "/" + name})
			if err != nil {
				return err
			}
			var rec breaker.PairRecord
			if err := json.Unmarshal(g.GetData(), &rec); err != nil {
				return status.Errorf(codes.DataLoss, "record %s: %v", name, err) // a definite error: not retried
			}
			out[name] = rec
		}
		return nil
	})
	return out, err
}

// finish waits, after healing, until every live sidecar enforces the
// latest committed record of every pair (Status and WatchBreakers agree),
// for at most sidecarConvergeWithin; a sidecar that does not fails the run.
func (f *sidecarFleet) finish() {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), sidecarConvergeWithin)
	defer cancel()
	pending := map[string][]string{}
	for _, sp := range f.procs {
		pending[sp.name] = []string{"not checked yet"}
		sp.mu.Lock()
		if p := sp.proc; p != nil && p.Exited() {
			f.record("sidecar %s exited by itself: %v", sp.name, p.Describe())
		}
		sp.mu.Unlock()
	}
	for len(pending) > 0 && ctx.Err() == nil {
		latest, err := latestRecords(ctx, f.c)
		if err != nil {
			for name := range pending {
				pending[name] = []string{fmt.Sprintf("reading the committed records: %v", err)}
			}
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		for _, sp := range f.procs {
			if _, ok := pending[sp.name]; !ok {
				continue
			}
			updates, inc, addr, running := sp.snapshot()
			if !running {
				// Not live: nothing to converge (heal restarted every
				// sidecar, so one that is not running crashed: the logs
				// check reports it).
				delete(pending, sp.name)
				continue
			}
			st, err := sidecarStatus(ctx, addr)
			if err != nil {
				pending[sp.name] = []string{fmt.Sprintf("Status: %v", err)}
				continue
			}
			if errs := checkSidecarConverged(st, lastUpdates(updates, inc), latest); len(errs) > 0 {
				pending[sp.name] = errs
				continue
			}
			delete(pending, sp.name)
			f.mu.Lock()
			f.converged = append(f.converged, fmt.Sprintf("%s (run %d) in %v", sp.name, inc, time.Since(start).Round(10*time.Millisecond)))
			f.mu.Unlock()
			f.events.note("sidecar", "%s enforces the latest records of %d pairs", sp.name, len(latest))
		}
		if len(pending) > 0 {
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pending)) {
		f.record("sidecar %s does not enforce the latest committed records %v after healing: %s", name, sidecarConvergeWithin, strings.Join(pending[name], "; "))
	}
}

func sidecarStatus(ctx context.Context, addr string) (*colonyv1.SidecarStatusResponse, error) {
	conn, err := dial(addr, nil)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	return colonyv1.NewSidecarClient(conn).Status(rctx, &colonyv1.SidecarStatusRequest{})
}

// lastUpdates is the newest WatchBreakers record per callee of incarnation
// inc.
func lastUpdates(updates []sidecarUpdate, inc int) map[string]sidecarUpdate {
	out := map[string]sidecarUpdate{}
	for _, u := range updates {
		if u.Incarnation == inc {
			out[u.Callee] = u
		}
	}
	return out
}

// checkSidecarConverged says how a sidecar's enforced state (Status, and
// the newest record its WatchBreakers stream gave) differs from the latest
// committed records; nil when it enforces every one of them, in
// coordinator mode.
func checkSidecarConverged(st *colonyv1.SidecarStatusResponse, watched map[string]sidecarUpdate, latest map[string]breaker.PairRecord) []string {
	var errs []string
	if st.GetDegraded() || st.GetMode() != "coordinator" {
		errs = append(errs, fmt.Sprintf("in mode %q (degraded %v, coordinator silent for %d ms)", st.GetMode(), st.GetDegraded(), st.GetStaleMs()))
	}
	pairs := map[string]*colonyv1.PairStatus{}
	for _, ps := range st.GetPairs() {
		pairs[ps.GetCallee()] = ps
	}
	for _, callee := range slices.Sorted(maps.Keys(latest)) {
		rec := latest[callee]
		ps := pairs[callee]
		switch {
		case ps == nil:
			errs = append(errs, fmt.Sprintf("%s: no pair in Status, committed %v generation %d", callee, rec.State, rec.Generation))
		case ps.GetState() != rec.State.String() || ps.GetGeneration() != rec.Generation || ps.GetSource() != "coordinator":
			errs = append(errs, fmt.Sprintf("%s: Status enforces %s generation %d (source %s), committed %v generation %d",
				callee, ps.GetState(), ps.GetGeneration(), ps.GetSource(), rec.State, rec.Generation))
		}
		w, ok := watched[callee]
		switch {
		case !ok:
			errs = append(errs, fmt.Sprintf("%s: nothing on WatchBreakers, committed %v generation %d", callee, rec.State, rec.Generation))
		case w.State != rec.State || w.Generation != rec.Generation || w.Mode != "coordinator":
			errs = append(errs, fmt.Sprintf("%s: WatchBreakers last gave %v generation %d (mode %s), committed %v generation %d",
				callee, w.State, w.Generation, w.Mode, rec.State, rec.Generation))
		}
	}
	for callee, ps := range pairs {
		if _, ok := latest[callee]; !ok && ps.GetGeneration() != 0 {
			errs = append(errs, fmt.Sprintf("%s: enforces generation %d of a pair with no committed record", callee, ps.GetGeneration()))
		}
	}
	return errs
}

// checkSidecarHistory checks one sidecar's WatchBreakers records: within
// an incarnation a pair's generation never goes back (in any mode: a
// degraded mode keeps the last generation), and a record enforced in
// coordinator mode was committed with that state (for the callees in
// committed: every record of theirs is known).
func checkSidecarHistory(name string, updates []sidecarUpdate, committed map[string]map[uint64]breaker.State) []string {
	var errs []string
	type key struct {
		inc    int
		callee string
	}
	last := map[key]sidecarUpdate{}
	for _, u := range updates {
		k := key{u.Incarnation, u.Callee}
		if prev, ok := last[k]; ok && u.Generation < prev.Generation {
			errs = append(errs, fmt.Sprintf("sidecar %s went back from generation %d to %d: %v, then %v", name, prev.Generation, u.Generation, prev, u))
		}
		last[k] = u
		if committed[u.Callee] == nil || u.Mode != "coordinator" || u.Generation == 0 {
			continue
		}
		if st, ok := committed[u.Callee][u.Generation]; !ok {
			errs = append(errs, fmt.Sprintf("sidecar %s enforced %v generation %d, which the coordinator never committed: %v", name, u.State, u.Generation, u))
		} else if st != u.State {
			errs = append(errs, fmt.Sprintf("sidecar %s enforced %v at generation %d, committed as %v: %v", name, u.State, u.Generation, st, u))
		}
	}
	return errs
}

// check reports the fleet's failures: convergence (finish), and each
// sidecar's history against the records the breaker watch saw committed.
func (f *sidecarFleet) check(r *run, committed map[string]map[uint64]breaker.State) {
	f.mu.Lock()
	errs := slices.Clone(f.errs)
	converged := slices.Clone(f.converged)
	f.mu.Unlock()
	for _, e := range errs {
		r.fail("sidecars: %s", e)
	}
	total, incs := 0, 0
	for _, sp := range f.procs {
		updates, inc, _, _ := sp.snapshot()
		total += len(updates)
		incs += inc
		for _, e := range checkSidecarHistory(sp.name, updates, committed) {
			r.fail("sidecars: %s", e)
		}
		var b strings.Builder
		for _, u := range updates {
			fmt.Fprintln(&b, u)
		}
		r.files["sidecar-"+sp.name+".txt"] = b.String()
	}
	sort.Strings(converged)
	r.t.Logf("sidecars: %d (%s), %d processes started, %d records delivered on WatchBreakers, converged: %s",
		len(f.procs), f.describe(), incs, total, strings.Join(converged, ", "))
}

// checkLogs reports races and panics the sidecars logged.
func (f *sidecarFleet) checkLogs(r *run) {
	for _, sp := range f.procs {
		b, err := os.ReadFile(sp.logPath)
		if err != nil {
			continue
		}
		for _, marker := range []string{"WARNING: DATA RACE", "\npanic: "} {
			if i := bytes.Index(b, []byte(marker)); i >= 0 {
				r.fail("sidecar %s logged %q:\n%s", sp.name, strings.TrimSpace(marker), framework.Excerpt(b, i, 40))
			}
		}
	}
}

// copyLogs copies every sidecar's log into dir.
func (f *sidecarFleet) copyLogs(dir string) error {
	var errs []error
	for _, sp := range f.procs {
		if err := framework.CopyFile(sp.logPath, filepath.Join(dir, "sidecar-"+sp.name+".log")); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
