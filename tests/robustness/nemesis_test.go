//go:build unix

package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// eventLog is the run's timeline: every fault with its window, and other
// harness events. Times are offsets from the run's start, on the same clock
// as the recorded histories, so faults can be drawn on the visualisation.
type eventLog struct {
	start time.Time
	mu    sync.Mutex
	evs   []*timelineEvent
}

type timelineEvent struct {
	Start, End time.Duration // End is zero for an instant, or a window still open
	Kind       string
	What       string
	// Lane is 0, or 1 for the second of two overlapping faults: the report
	// draws each lane on a row of its own.
	Lane int
}

func newEventLog(start time.Time) *eventLog { return &eventLog{start: start} }

// now is the time since the run started.
func (l *eventLog) now() time.Duration { return time.Since(l.start) }

// begin opens a window and returns the function that closes it.
func (l *eventLog) begin(kind, format string, args ...any) func() {
	return l.beginLane(0, kind, format, args...)
}

// beginLane is begin for a fault in the given lane (see timelineEvent).
func (l *eventLog) beginLane(lane int, kind, format string, args ...any) func() {
	ev := &timelineEvent{Start: l.now(), Kind: kind, What: fmt.Sprintf(format, args...), Lane: lane}
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		ev.End = l.now()
		l.mu.Unlock()
	}
}

// add records a finished event.
func (l *eventLog) add(e timelineEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, &e)
}

// note records an instant event.
func (l *eventLog) note(kind, format string, args ...any) {
	l.begin(kind, format, args...)()
}

// events returns a copy of the timeline.
func (l *eventLog) events() []timelineEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]timelineEvent, len(l.evs))
	for i, e := range l.evs {
		out[i] = *e
	}
	return out
}

// String is the timeline, by start time.
func (l *eventLog) String() string {
	var b strings.Builder
	evs := l.events()
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Start < evs[j].Start })
	for _, e := range evs {
		kind := e.Kind
		if e.Lane > 0 {
			kind += " [2]" // the second of two overlapping faults
		}
		fmt.Fprintf(&b, "%9.3fs %9.3fs  %-20s %s\n", e.Start.Seconds(), e.End.Seconds(), kind, e.What)
	}
	return b.String()
}

// faultKind names one kind of fault the nemesis injects.
type faultKind string

const (
	faultKill          faultKind = "kill"             // SIGKILL, then restart on the same data dir
	faultPause         faultKind = "pause"            // SIGSTOP past the election timeout (and at times past a session TTL), SIGCONT
	faultIsolate       faultKind = "isolate"          // a node cut off from both peers, both directions (minority | majority)
	faultAsymmetric    faultKind = "asymmetric"       // a node's raft connections one way only
	faultLatency       faultKind = "latency"          // delay with jitter on every raft link (and client links)
	faultTransferStorm faultKind = "transfer-storm"   // leadership transferred several times in a row
	faultClientCut     faultKind = "client-cut"       // clients' connections to a node cut and refused
	faultLagFollower   faultKind = "lagging-follower" // a follower isolated long enough to need a snapshot, with low thresholds
	faultPartition     faultKind = "partition"        // a random minority cut off from the majority (with 5 nodes: 2 of 5)
	faultMembership    faultKind = "membership"       // a follower removed, wiped and re-added with --join
	faultSidecar       faultKind = "sidecar"          // a sidecar process killed (and restarted) or paused
)

// allFaults is every fault the nemesis picks from.
var allFaults = []faultKind{
	faultKill, faultPause, faultIsolate, faultAsymmetric, faultLatency,
	faultTransferStorm, faultClientCut, faultLagFollower, faultPartition, faultMembership,
	faultSidecar,
}

// soloFaults never overlap another fault: removing and re-adding a member
// waits for it to be a voter again, which another fault could delay past
// the harness's bound; slow-disk's first round restarts every node onto
// its mount, and each round measures what the disk alone costs.
var soloFaults = []faultKind{faultMembership, faultSlowDisk}

// nemesis injects faults into a cluster from a seeded random schedule: one
// fault at a time, or with overlap two at once, each round healed before
// the next, so a majority is always available again between rounds.
type nemesis struct {
	c        *Cluster
	sidecars *sidecarFleet // nil: no sidecar faults
	rng      *rand.Rand
	events   *eventLog
	faults   []faultKind
	// overlap is the share of rounds that inject two faults at once (the
	// second starting within the first's window).
	overlap float64
	// lane is 0, or 1 in the copy that runs the second of two overlapping
	// faults (fork).
	lane   int
	shared *nemesisShared
}

// nemesisShared is what the two lanes of an overlapping round share.
type nemesisShared struct {
	mu sync.Mutex
	// errs collects harness failures (a node that will not restart, a
	// cluster that never recovers); they fail the run.
	errs []string
	// busy are the nodes a lane has killed or paused: the other lane
	// leaves their processes alone.
	busy map[int]bool
	// busySidecars likewise for sidecar processes.
	busySidecars map[int]bool
}

func newNemesis(c *Cluster, seed uint64, faults []faultKind, events *eventLog) *nemesis {
	return &nemesis{c: c, rng: rand.New(rand.NewPCG(seed, 0x5eed)), events: events, faults: faults,
		shared: &nemesisShared{busy: map[int]bool{}, busySidecars: map[int]bool{}}}
}

// errors returns the harness failures so far.
func (nm *nemesis) errors() []string {
	nm.shared.mu.Lock()
	defer nm.shared.mu.Unlock()
	return slices.Clone(nm.shared.errs)
}

// fork returns a copy of nm for one lane of an overlapping round, with a
// random source of its own drawn from nm's (so the schedule stays a
// function of the seed, whatever the goroutines' interleaving).
func (nm *nemesis) fork(lane int) *nemesis {
	cp := *nm
	cp.rng = rand.New(rand.NewPCG(nm.rng.Uint64(), nm.rng.Uint64()))
	cp.lane = lane
	return &cp
}

// begin opens a fault's window in nm's lane.
func (nm *nemesis) begin(kind faultKind, format string, args ...any) func() {
	return nm.events.beginLane(nm.lane, string(kind), format, args...)
}

// run injects faults until ctx ends, then heals everything and waits until
// the cluster serves again.
func (nm *nemesis) run(ctx context.Context) {
	for ctx.Err() == nil {
		f := nm.faults[nm.rng.IntN(len(nm.faults))]
		// The overlap draw is only made when overlap is on, so a seed
		// without it keeps the schedule it had before overlap existed.
		if g, ok := nm.second(f); ok {
			nm.injectTwo(ctx, f, g)
		} else {
			nm.inject(ctx, f)
		}
		nm.heal()
		// Let the cluster recover before the next fault: without this, two
		// faults in a row can take out a majority.
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := nm.c.WaitReady(rctx); err != nil {
			nm.fail("cluster did not recover after %s: %v", f, err)
			cancel()
			return
		}
		cancel()
		sleepCtx(ctx, nm.between(300*time.Millisecond, 1200*time.Millisecond))
	}
}

// second decides whether this round overlaps f with a second fault, and
// which.
func (nm *nemesis) second(f faultKind) (faultKind, bool) {
	if nm.overlap <= 0 || nm.rng.Float64() >= nm.overlap || slices.Contains(soloFaults, f) {
		return "", false
	}
	var pool []faultKind
	for _, g := range nm.faults {
		if !slices.Contains(soloFaults, g) {
			pool = append(pool, g)
		}
	}
	if len(pool) == 0 {
		return "", false
	}
	return pool[nm.rng.IntN(len(pool))], true
}

// injectTwo runs f and, starting 0-600 ms later (inside f's window: every
// fault lasts longer), g, each in a lane of its own, and returns when both
// ended. The timeline gets both windows and an "overlap" window from the
// first start to the last end, saying how long both were in force.
func (nm *nemesis) injectTwo(ctx context.Context, f, g faultKind) {
	a, b := nm.fork(0), nm.fork(1)
	delay := nm.between(0, 600*time.Millisecond)
	start := nm.events.now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		a.inject(ctx, f)
	}()
	go func() {
		defer wg.Done()
		sleepCtx(ctx, delay)
		b.inject(ctx, g)
	}()
	wg.Wait()
	// The two windows, as the lanes recorded them.
	var wins [2]*timelineEvent
	for _, e := range nm.events.events() {
		if e.Start >= start && (e.Kind == string(f) && e.Lane == 0 || e.Kind == string(g) && e.Lane == 1) {
			wins[e.Lane] = &e
		}
	}
	if wins[0] == nil || wins[1] == nil {
		nm.events.note("overlap", "%s with %s: one of them did not start", f, g)
		return
	}
	from, to := min(wins[0].Start, wins[1].Start), max(wins[0].End, wins[1].End)
	both := max(0, min(wins[0].End, wins[1].End)-max(wins[0].Start, wins[1].Start))
	nm.events.add(timelineEvent{Start: from, End: to, Kind: "overlap",
		What: fmt.Sprintf("%s, and %s from %v later; both in force for %v", f, g, (wins[1].Start - wins[0].Start).Round(time.Millisecond), both.Round(time.Millisecond))})
}

func (nm *nemesis) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	nm.shared.mu.Lock()
	nm.shared.errs = append(nm.shared.errs, msg)
	nm.shared.mu.Unlock()
	nm.events.note("harness-error", "%s", msg)
}

// claim picks the node to kill or pause: the leader (when one is known)
// with probability pLeader, else a random node, never one the other lane
// holds. It returns the node's index and the release, or ok false when
// every node is held.
func (nm *nemesis) claim(ctx context.Context, pLeader float64) (i int, release func(), ok bool) {
	i = nm.target(ctx, pLeader)
	nm.shared.mu.Lock()
	defer nm.shared.mu.Unlock()
	if nm.shared.busy[i] {
		var free []int
		for j := range nm.c.Nodes {
			if !nm.shared.busy[j] {
				free = append(free, j)
			}
		}
		if len(free) == 0 {
			return 0, nil, false
		}
		i = free[nm.rng.IntN(len(free))]
	}
	nm.shared.busy[i] = true
	return i, func() {
		nm.shared.mu.Lock()
		delete(nm.shared.busy, i)
		nm.shared.mu.Unlock()
	}, true
}

// between returns a uniform duration in [lo, hi).
func (nm *nemesis) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(nm.rng.Int64N(int64(hi-lo)))
}

// target picks the leader (when one is known) with probability pLeader,
// else a random node; it returns the node's index.
func (nm *nemesis) target(ctx context.Context, pLeader float64) int {
	if nm.rng.Float64() < pLeader {
		lctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		l, err := nm.c.LeaderOnce(lctx)
		cancel()
		if err == nil {
			return l.Index
		}
	}
	return nm.rng.IntN(len(nm.c.Nodes))
}

// leaderOrFollower describes which role the node at i has, for the log.
func (nm *nemesis) role(ctx context.Context, i int) string {
	lctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	if l, err := nm.c.LeaderOnce(lctx); err == nil {
		if l.Index == i {
			return "leader"
		}
		return "follower"
	}
	return "node"
}

// inject applies one fault for its duration. It returns early, having
// healed nothing, when ctx ends; heal undoes every kind of fault.
func (nm *nemesis) inject(ctx context.Context, f faultKind) {
	c := nm.c
	switch f {
	case faultKill:
		i, release, ok := nm.claim(ctx, 0.5)
		if !ok {
			return
		}
		defer release()
		n := c.Nodes[i]
		d := nm.between(200*time.Millisecond, 3*time.Second)
		end := nm.begin(f, "kill -9 %s %s, restart after %v", nm.role(ctx, i), n.ID, d.Round(time.Millisecond))
		defer end()
		if err := n.Kill(); err != nil {
			nm.fail("%v", err)
			return
		}
		sleepCtx(ctx, d)
		if err := n.Restart(context.Background()); err != nil {
			nm.fail("%v", err)
		}
	case faultPause:
		i, release, ok := nm.claim(ctx, 0.6)
		if !ok {
			return
		}
		defer release()
		n := c.Nodes[i]
		// Past the 500 ms election timeout always; at times past the 2 s
		// minimum session TTL too.
		d := nm.between(800*time.Millisecond, 4*time.Second)
		end := nm.begin(f, "SIGSTOP %s %s for %v", nm.role(ctx, i), n.ID, d.Round(time.Millisecond))
		defer end()
		if err := n.Pause(); err != nil {
			nm.fail("%v", err)
			return
		}
		sleepCtx(ctx, d)
		if err := n.Resume(); err != nil {
			nm.fail("%v", err)
		}
	case faultIsolate, faultLagFollower:
		var i int
		var d time.Duration
		if f == faultIsolate {
			i = nm.target(ctx, 0.6)
			d = nm.between(time.Second, 4*time.Second)
		} else {
			// A follower, long enough for the others to snapshot and
			// compact past it (the lagging-follower scenario runs with low
			// snapshot thresholds).
			l := nm.target(ctx, 1)
			i = (l + 1 + nm.rng.IntN(len(c.Nodes)-1)) % len(c.Nodes)
			d = nm.between(3*time.Second, 6*time.Second)
		}
		mode := nm.blockMode()
		end := nm.begin(f, "%s %s cut off from its peers (%s) for %v", nm.role(ctx, i), c.Nodes[i].ID, mode, d.Round(time.Millisecond))
		defer end()
		for j := range c.Nodes {
			if j != i {
				c.RaftProxy(i, j).SetMode(mode)
				c.RaftProxy(j, i).SetMode(mode)
			}
		}
		sleepCtx(ctx, d)
	case faultAsymmetric:
		i := nm.target(ctx, 0.6)
		out := nm.rng.IntN(2) == 0
		d := nm.between(time.Second, 4*time.Second)
		mode := nm.blockMode()
		dir := "cannot reach its peers, they reach it"
		if !out {
			dir = "is not reached by its peers, reaches them"
		}
		end := nm.begin(f, "%s %s %s (%s) for %v", nm.role(ctx, i), c.Nodes[i].ID, dir, mode, d.Round(time.Millisecond))
		defer end()
		for j := range c.Nodes {
			if j == i {
				continue
			}
			if out {
				c.RaftProxy(i, j).SetMode(mode)
			} else {
				c.RaftProxy(j, i).SetMode(mode)
			}
		}
		sleepCtx(ctx, d)
	case faultLatency:
		delay := nm.between(5*time.Millisecond, 80*time.Millisecond)
		jitter := nm.between(time.Millisecond, 60*time.Millisecond)
		d := nm.between(2*time.Second, 5*time.Second)
		clients := nm.rng.IntN(2) == 0
		end := nm.begin(f, "raft links +%v (jitter %v), client links too: %v, for %v",
			delay.Round(time.Millisecond), jitter.Round(time.Millisecond), clients, d.Round(time.Millisecond))
		defer end()
		for _, row := range c.raft {
			for _, p := range row {
				if p != nil {
					p.SetLatency(delay, jitter)
				}
			}
		}
		if clients {
			for _, p := range c.allClientProxies() {
				p.SetLatency(delay, jitter)
			}
		}
		sleepCtx(ctx, d)
	case faultTransferStorm:
		k := 2 + nm.rng.IntN(5)
		end := nm.begin(f, "%d leadership transfers", k)
		defer end()
		for range k {
			if ctx.Err() != nil {
				return
			}
			nm.transfer(ctx)
			sleepCtx(ctx, nm.between(50*time.Millisecond, 600*time.Millisecond))
		}
	case faultClientCut:
		i := nm.rng.IntN(len(c.Nodes))
		d := nm.between(500*time.Millisecond, 3*time.Second)
		mode := nm.blockMode()
		end := nm.begin(f, "clients (and sidecars) cut from %s (%s) for %v", c.Nodes[i].ID, mode, d.Round(time.Millisecond))
		defer end()
		for _, p := range c.ClientProxiesTo(i) {
			p.SetMode(mode)
		}
		sleepCtx(ctx, d)
	case faultPartition:
		perm := nm.rng.Perm(len(c.Nodes))
		minority := perm[:(len(c.Nodes)-1)/2]
		d := nm.between(time.Second, 4*time.Second)
		mode := nm.blockMode()
		var ids []string
		for _, i := range minority {
			ids = append(ids, c.Nodes[i].ID)
		}
		end := nm.begin(f, "minority %v cut off from the majority (%s) for %v", ids, mode, d.Round(time.Millisecond))
		defer end()
		for _, i := range minority {
			for j := range c.Nodes {
				if !slices.Contains(minority, j) {
					c.RaftProxy(i, j).SetMode(mode)
					c.RaftProxy(j, i).SetMode(mode)
				}
			}
		}
		sleepCtx(ctx, d)
	case faultMembership:
		nm.membership(ctx)
	case faultSlowDisk: // slowdisk_test.go (issue 7): disks on faultfs mounts
		nm.slowDisk(ctx)
	case faultSidecar:
		nm.sidecarFault(ctx)
	default:
		panic(fmt.Sprintf("unknown fault %q", f))
	}
}

// membership removes a follower from the cluster, wipes its data dir and
// starts it again with --join: it comes back as a new member (non-voter
// first, promoted once caught up, by snapshot if the log was compacted).
func (nm *nemesis) membership(ctx context.Context) {
	c := nm.c
	l := nm.target(ctx, 1)
	i := (l + 1 + nm.rng.IntN(len(c.Nodes)-1)) % len(c.Nodes)
	n := c.Nodes[i]
	end := nm.begin(faultMembership, "remove %s, wipe it, re-add it with --join", n.ID)
	defer end()
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tried := false
	err := retryAdmin(rctx, c, func(ctx context.Context, via *Node) error {
		if via == n {
			return status.Error(codes.Unavailable, "not through the node being removed")
		}
		_, err := via.Cluster().RemoveMember(ctx, &colonyv1.RemoveMemberRequest{Id: n.ID})
		if status.Code(err) == codes.NotFound && tried {
			// An earlier attempt that timed out was applied: the member is
			// gone, as asked (an operator's retry sees the same).
			return nil
		}
		tried = true
		return err
	})
	if err != nil {
		nm.fail("remove member %s: %v", n.ID, err)
		return
	}
	nm.events.note("member", "removed %s", n.ID)
	if err := n.Kill(); err != nil {
		nm.fail("%v", err)
		return
	}
	var join []string
	for _, o := range c.Nodes {
		if o != n {
			join = append(join, o.GRPCAddr)
		}
	}
	if err := n.Wipe(join); err != nil {
		nm.fail("%v", err)
		return
	}
	sleepCtx(ctx, nm.between(200*time.Millisecond, 2*time.Second))
	if err := n.Restart(context.Background()); err != nil {
		nm.fail("%v", err)
		return
	}
	// Wait until it is a voter again.
	for rctx.Err() == nil {
		sctx, scancel := context.WithTimeout(rctx, rpcTimeout)
		st, err := n.Cluster().Status(sctx, &colonyv1.StatusRequest{})
		scancel()
		if err == nil {
			for _, m := range st.GetMembers() {
				if m.GetId() == n.ID && m.GetSuffrage() == colonyv1.Suffrage_SUFFRAGE_VOTER {
					nm.events.note("member", "%s is a voter again", n.ID)
					return
				}
			}
		}
		sleepCtx(rctx, 200*time.Millisecond)
	}
	nm.fail("%s did not become a voter again within 30s of rejoining", n.ID)
}

// blockMode picks how a blocked link behaves: silently (blackhole) or
// refusing connections.
func (nm *nemesis) blockMode() proxyMode {
	if nm.rng.IntN(3) == 0 {
		return modeRefuse
	}
	return modeBlackhole
}

// transfer asks some node to transfer leadership, to a random other node or
// to whichever raft picks.
func (nm *nemesis) transfer(ctx context.Context) {
	live := nm.c.Live()
	if len(live) == 0 {
		return
	}
	via := live[nm.rng.IntN(len(live))]
	target := ""
	if nm.rng.IntN(2) == 0 {
		target = nm.c.Nodes[nm.rng.IntN(len(nm.c.Nodes))].ID
	}
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := via.Cluster().TransferLeadership(tctx, &colonyv1.TransferLeadershipRequest{TargetId: target})
	if err != nil {
		nm.events.note("transfer", "via %s to %q: %v", via.ID, target, err)
		return
	}
	nm.events.note("transfer", "via %s to %q: leader now %s", via.ID, target, resp.GetLeaderId())
}

// heal resumes paused nodes, restarts killed ones and lets every link pass.
func (nm *nemesis) heal() {
	for _, n := range nm.c.Nodes {
		if err := n.Resume(); err != nil {
			nm.fail("%v", err)
		}
		if !n.Running() {
			if err := n.Restart(context.Background()); err != nil {
				nm.fail("%v", err)
			}
		}
	}
	nm.c.HealNetwork()
	if nm.sidecars != nil {
		for _, e := range nm.sidecars.heal() {
			nm.fail("%v", e)
		}
	}
}

// sidecarFault kills a sidecar process with SIGKILL and restarts it 0.2-3 s
// later, or stops it with SIGSTOP for 1-4 s (past its 2 s session TTL at
// times): its registration goes and comes back, and it must converge again.
func (nm *nemesis) sidecarFault(ctx context.Context) {
	if nm.sidecars == nil || len(nm.sidecars.procs) == 0 {
		nm.events.note(string(faultSidecar), "no sidecars run")
		return
	}
	k := nm.rng.IntN(len(nm.sidecars.procs))
	nm.shared.mu.Lock()
	if nm.shared.busySidecars[k] {
		nm.shared.mu.Unlock()
		nm.events.note(string(faultSidecar), "sidecar %s is held by the other fault; skipped", nm.sidecars.procs[k].name)
		return
	}
	nm.shared.busySidecars[k] = true
	nm.shared.mu.Unlock()
	defer func() {
		nm.shared.mu.Lock()
		delete(nm.shared.busySidecars, k)
		nm.shared.mu.Unlock()
	}()
	sc := nm.sidecars.procs[k]
	if nm.rng.IntN(2) == 0 {
		d := nm.between(200*time.Millisecond, 3*time.Second)
		end := nm.begin(faultSidecar, "kill -9 sidecar %s, restart after %v", sc.name, d.Round(time.Millisecond))
		defer end()
		if err := sc.kill(); err != nil {
			nm.fail("%v", err)
			return
		}
		sleepCtx(ctx, d)
		if err := sc.restart(); err != nil {
			nm.fail("%v", err)
		}
		return
	}
	d := nm.between(time.Second, 4*time.Second)
	end := nm.begin(faultSidecar, "SIGSTOP sidecar %s for %v", sc.name, d.Round(time.Millisecond))
	defer end()
	if err := sc.pause(); err != nil {
		nm.fail("%v", err)
		return
	}
	sleepCtx(ctx, d)
	if err := sc.resume(); err != nil {
		nm.fail("%v", err)
	}
}

// parseFaults parses a comma-separated list of fault kinds; empty means all.
func parseFaults(s string) ([]faultKind, error) {
	if strings.TrimSpace(s) == "" {
		return allFaults, nil
	}
	var out []faultKind
	for f := range strings.SplitSeq(s, ",") {
		k := faultKind(strings.TrimSpace(f))
		if !slices.Contains(allFaults, k) && !slices.Contains(optInFaults, k) { // optInFaults: slowdisk_test.go
			return nil, fmt.Errorf("unknown fault %q (known: %v)", k, slices.Concat(allFaults, optInFaults))
		}
		out = append(out, k)
	}
	return out, nil
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
