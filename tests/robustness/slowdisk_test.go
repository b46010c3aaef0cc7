//go:build unix

package robustness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/faultfs"
)

// The slow-disk fault (issue 7): every node's directory on a faultfs mount
// (tests/support/faultfs, a FUSE loopback that delays, holds or fails fsync),
// and one disk fault per round, in turn:
//
//	slow leader:     the leader's fsync +150-250 ms, plus 50-100 ms jitter, for 3-4 s
//	stalled follower: a follower's fsync held 2-3 s (past the 500 ms election timeout), then released
//	slow disks:      every node's fsync +20-60 ms, plus 20 ms jitter, for 3-4 s
//	stalled leader:  the leader's fsync held 5-6 s, then released; the nodes
//	                 run with --disk-stall-timeout 1s, so the leader fails its
//	                 heartbeats after 1 s and a follower takes over
//
// raft-boltdb fsyncs bbolt twice per append, so these are the waits raft
// pays per log write. TestSlowDisk runs the four rounds on a fixed seed and
// reports availability per round; ROBUSTNESS_FAULTS=slow-disk mixes them
// into TestRobustness's schedule (the nemesis calls slowDisk), where the
// first round first moves the nodes onto their mounts, a restart each
// ("slow-disk-setup" in the timeline).

// faultSlowDisk is the nemesis's name of the fault.
const faultSlowDisk faultKind = "slow-disk"

// optInFaults are faults ROBUSTNESS_FAULTS may name that the default set
// (every fault) leaves out, because they need more of the machine:
// slow-disk mounts FUSE file systems (root, /dev/fuse).
var optInFaults = []faultKind{faultSlowDisk}

// diskVariant is one kind of slow-disk round.
type diskVariant int

const (
	slowLeader diskVariant = iota
	stallFollower
	slowAll
	stallLeader
	numDiskVariants
)

func (v diskVariant) String() string {
	return [...]string{"slow leader", "stalled follower", "slow disks", "stalled leader"}[v]
}

// diskSet is a cluster's faultfs mounts, one per node. A node's directory
// (its data dir and its log) moves onto the mount: the directory is renamed
// to <dir>.disk, which becomes the mount's backing dir, and the mount takes
// the directory's place, so every path the harness knows stays valid.
type diskSet struct {
	c *Cluster

	setup sync.Mutex // held while nodes move onto their mounts

	mu     sync.Mutex
	disks  []*faultfs.FS // by node index; nil until mounted
	homes  []string      // the mounted directories
	round  int           // rounds injected so far; picks the next variant
	rounds []diskRound
}

// diskRound is what one slow-disk round did and saw.
type diskRound struct {
	Variant    diskVariant
	Node       string        // the faulty disk's node; "" for every node
	What       string        // the fault, for the timeline
	Start, End time.Duration // the fault's window, on the run's clock

	LeaderBefore, LeaderAfter string
	TermBefore, TermAfter     uint64
	// Leaders are the (leader, term) changes seen while the fault was on,
	// sampled every 100 ms.
	Leaders []string
	// Disk is what the faulty disks did during the window (summed over
	// every disk for slow disks).
	Disk faultfs.Stats
	// CatchUp is, for a stalled follower, how long after the release it
	// applied the index the leader had committed at the release; -1 if it
	// did not within 10 s.
	CatchUp time.Duration
}

// The cluster's disk sets; the cleanup of the test that made a set removes
// it.
var diskSets = struct {
	sync.Mutex
	m map[*Cluster]*diskSet
}{m: map[*Cluster]*diskSet{}}

// disksOf returns the cluster's disk set, made on first use (nothing is
// mounted until mountAll).
func disksOf(c *Cluster) *diskSet {
	diskSets.Lock()
	defer diskSets.Unlock()
	ds := diskSets.m[c]
	if ds == nil {
		ds = &diskSet{c: c, disks: make([]*faultfs.FS, len(c.Nodes)), homes: make([]string, len(c.Nodes))}
		diskSets.m[c] = ds
		// Registered after the cluster's cleanup, so it runs first: it
		// kills the nodes itself (a mount in use can only be detached
		// lazily), then unmounts and puts every directory back where the
		// cluster's cleanup reads the logs.
		c.t.Cleanup(ds.close)
	}
	return ds
}

// mountAll moves every node that is not on a mount yet onto one, a node at
// a time (stop it, move its directory, mount, start it, wait until the
// cluster is ready), so a majority stays up. It fails with an error
// matching faultfs.ErrUnavailable where FUSE cannot be mounted.
func (ds *diskSet) mountAll(ctx context.Context, seed uint64, events *eventLog) error {
	ds.setup.Lock()
	defer ds.setup.Unlock()
	for i, n := range ds.c.Nodes {
		if ds.disk(i) != nil {
			continue
		}
		if err := ds.mountNode(ctx, i, seed); err != nil {
			return fmt.Errorf("moving %s onto a faultfs mount: %w", n.ID, err)
		}
		events.note("slow-disk-setup", "%s's directory is on a faultfs mount", n.ID)
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := ds.c.WaitReady(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("after moving %s onto a faultfs mount: %w", n.ID, err)
		}
	}
	return nil
}

func (ds *diskSet) disk(i int) *faultfs.FS {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.disks[i]
}

func (ds *diskSet) mountNode(ctx context.Context, i int, seed uint64) error {
	n := ds.c.Nodes[i]
	home := filepath.Dir(n.DataDir)
	// The directory must hold this node's files only: the mount hides
	// whatever else is in it.
	if filepath.Dir(n.LogPath) != home {
		return fmt.Errorf("the log %s is not beside the data dir %s", n.LogPath, n.DataDir)
	}
	entries, err := os.ReadDir(home)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != filepath.Base(n.DataDir) && e.Name() != filepath.Base(n.LogPath) {
			return fmt.Errorf("%s holds %s, not only the node's data dir and log", home, e.Name())
		}
	}
	running := n.Running()
	if running {
		if err := n.Kill(); err != nil {
			return err
		}
	}
	backing := home + ".disk"
	if err := os.Rename(home, backing); err != nil {
		return err
	}
	if err := os.Mkdir(home, 0o755); err != nil {
		os.Rename(backing, home)
		return err
	}
	fs, err := faultfs.Mount(backing, home, faultfs.WithSeed(seed+uint64(i)))
	if err != nil {
		os.Remove(home)
		os.Rename(backing, home)
		return err
	}
	ds.mu.Lock()
	ds.disks[i], ds.homes[i] = fs, home
	ds.mu.Unlock()
	if running {
		return n.Restart(ctx)
	}
	return nil
}

// close kills the nodes, unmounts every disk and moves every directory back.
func (ds *diskSet) close() {
	diskSets.Lock()
	delete(diskSets.m, ds.c)
	diskSets.Unlock()
	ds.mu.Lock()
	disks, homes := slices.Clone(ds.disks), slices.Clone(ds.homes)
	ds.mu.Unlock()
	if !slices.ContainsFunc(disks, func(d *faultfs.FS) bool { return d != nil }) {
		return
	}
	for _, n := range ds.c.Nodes {
		if n.Running() {
			// What the cluster's cleanup would report, had it killed the
			// node: a process that exited by itself.
			if err := n.Kill(); err != nil {
				ds.c.t.Errorf("%s: %v (it exited while the harness expected it to run)", n.ID, err)
			}
		}
	}
	for i, d := range disks {
		if d == nil {
			continue
		}
		if err := d.Unmount(); err != nil {
			ds.c.t.Errorf("unmounting %s's disk: %v", ds.c.Nodes[i].ID, err)
			continue
		}
		if err := os.Remove(homes[i]); err != nil {
			ds.c.t.Errorf("removing the mount point %s: %v", homes[i], err)
			continue
		}
		if err := os.Rename(d.BackingDir(), homes[i]); err != nil {
			ds.c.t.Errorf("moving %s back: %v", d.BackingDir(), err)
		}
	}
}

// heal removes every injected disk fault.
func (ds *diskSet) heal() {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for _, d := range ds.disks {
		if d != nil {
			d.Heal()
		}
	}
}

// stats sums the counters of the disks at idx (every disk if idx < 0).
func (ds *diskSet) stats(idx int) faultfs.Stats {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	var sum faultfs.Stats
	for i, d := range ds.disks {
		if d == nil || idx >= 0 && i != idx {
			continue
		}
		st := d.Stats()
		sum.Fsyncs += st.Fsyncs
		sum.Writes += st.Writes
		sum.DelayedFsyncs += st.DelayedFsyncs
		sum.StalledFsyncs += st.StalledFsyncs
		sum.FailedFsyncs += st.FailedFsyncs
		sum.WaitingFsyncs += st.WaitingFsyncs
		sum.InjectedFsyncs += st.InjectedFsyncs
		sum.MaxFsync = max(sum.MaxFsync, st.MaxFsync)
	}
	return sum
}

func statsDelta(after, before faultfs.Stats) faultfs.Stats {
	return faultfs.Stats{
		Fsyncs:         after.Fsyncs - before.Fsyncs,
		Writes:         after.Writes - before.Writes,
		DelayedFsyncs:  after.DelayedFsyncs - before.DelayedFsyncs,
		StalledFsyncs:  after.StalledFsyncs - before.StalledFsyncs,
		FailedFsyncs:   after.FailedFsyncs - before.FailedFsyncs,
		InjectedFsyncs: after.InjectedFsyncs - before.InjectedFsyncs,
		MaxFsync:       after.MaxFsync,
	}
}

func (ds *diskSet) nextVariant() diskVariant {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	v := diskVariant(ds.round % int(numDiskVariants))
	ds.round++
	return v
}

func (ds *diskSet) addRound(rd diskRound) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.rounds = append(ds.rounds, rd)
}

func (ds *diskSet) roundsSoFar() []diskRound {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return slices.Clone(ds.rounds)
}

// slowDisk is the nemesis's slow-disk fault: the next variant in turn, on
// the disks of the cluster (moved onto faultfs mounts on first use).
func (nm *nemesis) slowDisk(ctx context.Context) {
	c := nm.c
	ds := disksOf(c)
	// Not cut short by the end of the faults: a node half moved is down.
	if err := ds.mountAll(context.Background(), nm.rng.Uint64(), nm.events); err != nil {
		nm.fail("slow-disk: %v", err)
		return
	}
	v := ds.nextVariant()
	l := nm.target(ctx, 1) // the leader, when one is known
	follower := (l + 1 + nm.rng.IntN(len(c.Nodes)-1)) % len(c.Nodes)
	rd := diskRound{Variant: v, CatchUp: -1}
	idx := -1 // the faulty disk; -1 for every disk
	var d time.Duration
	var apply func()
	switch v {
	case slowLeader:
		idx = l
		delay, jitter := nm.between(150*time.Millisecond, 250*time.Millisecond), nm.between(50*time.Millisecond, 100*time.Millisecond)
		d = nm.between(3*time.Second, 4*time.Second)
		rd.What = fmt.Sprintf("%s %s fsync +%v (jitter %v) for %v", nm.role(ctx, idx), c.Nodes[idx].ID, delay.Round(time.Millisecond), jitter.Round(time.Millisecond), d.Round(time.Millisecond))
		apply = func() { ds.disk(idx).SetLatency(delay, 0, jitter) }
	case stallFollower, stallLeader:
		idx = follower
		d = nm.between(2*time.Second, 3*time.Second)
		if v == stallLeader {
			// Long enough that a write is answered inside the window in
			// the worst case: the guard's 1 s, a follower's heartbeat
			// timeout (raft draws 500 ms to 1 s), one lost election round
			// (up to 1 s more: a pre-vote refused by a follower that still
			// saw the leader), and a client attempt stuck on the old
			// leader (1.5 s) add up to 4.5 s. 3-4 s failed once on a
			// loaded CI machine.
			idx = l
			d = nm.between(5*time.Second, 6*time.Second)
		}
		rd.What = fmt.Sprintf("%s %s fsync held for %v, then released", nm.role(ctx, idx), c.Nodes[idx].ID, d.Round(time.Millisecond))
		apply = func() { ds.disk(idx).Stall() }
	case slowAll:
		delay := nm.between(20*time.Millisecond, 60*time.Millisecond)
		d = nm.between(3*time.Second, 4*time.Second)
		rd.What = fmt.Sprintf("every node's fsync +%v (jitter 20ms) for %v", delay.Round(time.Millisecond), d.Round(time.Millisecond))
		apply = func() {
			ds.mu.Lock()
			defer ds.mu.Unlock()
			for _, disk := range ds.disks {
				disk.SetLatency(delay, 0, 20*time.Millisecond)
			}
		}
	}
	if idx >= 0 {
		rd.Node = c.Nodes[idx].ID
	}
	rd.LeaderBefore, rd.TermBefore = leaderAndTerm(ctx, c)
	before := ds.stats(idx)

	end := nm.events.begin(string(faultSlowDisk), "%s: %s", v, rd.What)
	rd.Start = nm.events.now()
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan []string)
	go func() { sampled <- sampleLeaders(sctx, c, nm.events) }()
	apply()
	sleepCtx(ctx, d)
	// The rest is measurement: not cut short when the faults end.
	ctx = context.WithoutCancel(ctx)
	var target uint64
	if v == stallFollower {
		target = leaderCommitIndex(ctx, c)
	}
	ds.heal()
	released := time.Now()
	rd.End = nm.events.now()
	end()
	stopSampling()
	rd.Leaders = <-sampled
	rd.Disk = statsDelta(ds.stats(idx), before)
	if target > 0 {
		if catchUp(ctx, c.Nodes[idx], target) {
			rd.CatchUp = time.Since(released)
		}
	}
	rd.LeaderAfter, rd.TermAfter = leaderAndTerm(ctx, c)
	ds.addRound(rd)
	nm.events.note("slow-disk-seen", "%s", rd.summary())
	c.t.Logf("slow-disk: %s: %s; %s", v, rd.What, rd.summary())
}

// summary says what the round saw: leadership and the disk's counters.
func (rd diskRound) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "leader %s (term %d) before, %s (term %d) after", rd.LeaderBefore, rd.TermBefore, rd.LeaderAfter, rd.TermAfter)
	if len(rd.Leaders) > 0 {
		fmt.Fprintf(&b, ", changes seen during: %s", strings.Join(rd.Leaders, ", "))
	} else {
		b.WriteString(", no leader change seen during")
	}
	st := rd.Disk
	fmt.Fprintf(&b, "; disk: %d fsyncs, %d delayed, %d held", st.Fsyncs, st.DelayedFsyncs, st.StalledFsyncs)
	if n := st.DelayedFsyncs + st.StalledFsyncs; n > 0 {
		fmt.Fprintf(&b, ", %v injected per faulty fsync on average", (st.InjectedFsyncs / time.Duration(n)).Round(time.Millisecond))
	}
	if rd.Variant == stallFollower {
		if rd.CatchUp >= 0 {
			fmt.Fprintf(&b, "; %s caught up %v after the release", rd.Node, rd.CatchUp.Round(time.Millisecond))
		} else {
			fmt.Fprintf(&b, "; %s did not catch up within 10s of the release", rd.Node)
		}
	}
	return b.String()
}

// leaderAndTerm returns the leader the highest term names, and the term.
func leaderAndTerm(ctx context.Context, c *Cluster) (string, uint64) {
	leader, term := "", uint64(0)
	for _, n := range c.Live() {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := n.Cluster().Status(rctx, &colonyv1.StatusRequest{})
		cancel()
		if err == nil && (st.GetTerm() > term || st.GetTerm() == term && leader == "") {
			leader, term = st.GetLeaderId(), st.GetTerm()
		}
	}
	if leader == "" {
		leader = "none"
	}
	return leader, term
}

// sampleLeaders records every change of (leader, term) until ctx ends.
func sampleLeaders(ctx context.Context, c *Cluster, events *eventLog) []string {
	var out []string
	last := ""
	for ctx.Err() == nil {
		l, term := leaderAndTerm(ctx, c)
		if cur := fmt.Sprintf("%s@%d", l, term); ctx.Err() == nil && cur != last {
			if last != "" {
				out = append(out, fmt.Sprintf("%s at %.1fs", cur, events.now().Seconds()))
			}
			last = cur
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return out
}

// leaderCommitIndex is the commit index the leader reports, 0 if unknown.
func leaderCommitIndex(ctx context.Context, c *Cluster) uint64 {
	lctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	l, err := c.LeaderOnce(lctx)
	if err != nil {
		return 0
	}
	st, err := l.Cluster().Status(lctx, &colonyv1.StatusRequest{})
	if err != nil {
		return 0
	}
	return st.GetCommitIndex()
}

// catchUp waits up to 10 s until n has applied target.
func catchUp(ctx context.Context, n *Node, target uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := n.Cluster().Status(rctx, &colonyv1.StatusRequest{})
		rcancel()
		if err == nil && st.GetAppliedIndex() >= target {
			return true
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
	return false
}

// TestSlowDisk runs a 3-node cluster on faultfs disks with the key-value,
// watch and lock workloads, and one round of each slow-disk variant, in
// order, with a healed moment between rounds; then the usual checks:
// linearizability (with final reads through every node, so a lost
// acknowledged write fails it), watches, locks, convergence of applied
// index and tree. It also asserts that a slowed or stalled disk, leader's
// or follower's, does not stop the cluster from acknowledging writes for
// good, and logs availability per round (from the recorded history) and
// what leadership did.
func TestSlowDisk(t *testing.T) {
	const seed = 7
	sc := newScenario(seed, 0, []faultKind{faultSlowDisk})
	if ls := os.Getenv(envLogStore); ls != "" {
		sc.LogStore = ls
	}
	r, ds := newDiskRun(t, sc, "slow-disk")

	w := r.startWorkload(nil)
	r.locks = newLockWorkload(r.c.ClientEndpoints(), r.c.ClientTLS(), seed)
	defer r.locks.close()
	w.goRun(func() { r.locks.run(w.ctx) })

	// A baseline window without faults, then each variant once.
	baseStart := r.events.now()
	time.Sleep(2 * time.Second)
	baseline := diskRound{What: "no fault", Start: baseStart, End: r.events.now()}
	nm := newNemesis(r.c, seed, []faultKind{faultSlowDisk}, r.events)
	for range numDiskVariants {
		nm.slowDisk(context.Background())
		nm.heal()
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := r.c.WaitReady(rctx); err != nil {
			r.fail("cluster did not recover after a slow-disk round: %v", err)
		}
		cancel()
		time.Sleep(500 * time.Millisecond)
	}
	r.events.note("healed", "every fault healed")
	for _, e := range r.events.events() {
		if e.Kind == "harness-error" {
			r.fail("harness: %s", e.What)
		}
	}
	time.Sleep(time.Second)
	r.finishKV(w, nil)
	r.locks.check(r)
	r.logStats(w.clients)

	rounds := ds.roundsSoFar()
	if len(rounds) != int(numDiskVariants) {
		r.fail("%d slow-disk rounds ran, want %d", len(rounds), numDiskVariants)
	}
	var table []string
	table = append(table, r.availability("baseline", baseline).String())
	for _, rd := range rounds {
		av := r.availability(rd.Variant.String(), rd)
		table = append(table, av.String())
		// The fault bit: the disk was asked to sync while it was faulty.
		switch st := rd.Disk; rd.Variant {
		case slowLeader, slowAll:
			if st.DelayedFsyncs == 0 {
				r.fail("%s: no fsync was delayed (%+v)", rd.Variant, st)
			}
		case stallFollower, stallLeader:
			if st.StalledFsyncs == 0 {
				r.fail("%s: no fsync was held (%+v)", rd.Variant, st)
			}
		}
		// A slow disk, or a follower's hung disk, leaves a majority that
		// commits: writes are acknowledged during the window. So does a
		// hung leader disk, once the leader's disk-stall guard (1 s here)
		// fails its heartbeats and a follower takes over; without the
		// guard hashicorp/raft kept the leader and answered nothing until
		// the release.
		if av.AckedWrites == 0 {
			r.fail("%s (%s): no write answered in %v", rd.Variant, rd.What, (rd.End - rd.Start).Round(time.Millisecond))
		}
		if rd.Variant == stallLeader && rd.LeaderAfter == rd.LeaderBefore && rd.TermAfter == rd.TermBefore {
			r.fail("%s (%s): %s kept the leadership in term %d", rd.Variant, rd.What, rd.LeaderBefore, rd.TermBefore)
		}
	}
	t.Logf("availability per window (ops called in the window; write gap: the longest time without an answered write):\n  %s", strings.Join(table, "\n  "))
	r.files["availability.txt"] = strings.Join(table, "\n") + "\n"
}

// windowAvailability is what the clients saw in one window.
type windowAvailability struct {
	Name                     string
	Window                   time.Duration
	Ops, OK, Failed, Unknown int
	AckedWrites              int           // writes answered (done or failed definitely) in the window
	P50, P99, Max            time.Duration // latency of the operations answered
	WriteGap                 time.Duration // the longest time without an answered write
	// Recovery is the time from the window's end to the first write
	// answered after it; -1 if none was.
	Recovery time.Duration
}

func (a windowAvailability) String() string {
	return fmt.Sprintf("%-16s %5.1fs: %4d ops, %4d ok, %3d definite errors, %3d unknown; %4d writes answered, longest write gap %6v, next write %6v after; latency p50 %6v p99 %6v max %6v",
		a.Name, a.Window.Seconds(), a.Ops, a.OK, a.Failed, a.Unknown, a.AckedWrites, a.WriteGap.Round(time.Millisecond),
		a.Recovery.Round(time.Millisecond), a.P50.Round(time.Millisecond), a.P99.Round(time.Millisecond), a.Max.Round(time.Millisecond))
}

// availability summarises the operations called during rd's window.
func (r *run) availability(name string, rd diskRound) windowAvailability {
	a := windowAvailability{Name: name, Window: rd.End - rd.Start, Recovery: -1}
	from, to := int64(rd.Start), int64(rd.End)
	r.h.mu.Lock()
	ops := slices.Clone(r.h.ops)
	r.h.mu.Unlock()
	var lat []time.Duration
	var acks []int64
	for _, op := range ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if in.Kind != opGet && !out.Unknown {
			if op.Return >= from && op.Return < to {
				acks = append(acks, op.Return)
			}
			if op.Return >= to && (a.Recovery < 0 || time.Duration(op.Return-to) < a.Recovery) {
				a.Recovery = time.Duration(op.Return - to)
			}
		}
		if op.Call < from || op.Call >= to {
			continue
		}
		a.Ops++
		switch {
		case out.Unknown:
			a.Unknown++
			continue
		case out.Err != errNone:
			a.Failed++
		default:
			a.OK++
		}
		lat = append(lat, time.Duration(op.Return-op.Call))
	}
	a.AckedWrites = len(acks)
	sort.Slice(acks, func(i, j int) bool { return acks[i] < acks[j] })
	prev := from
	for _, t := range append(acks, to) {
		a.WriteGap = max(a.WriteGap, time.Duration(t-prev))
		prev = t
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		a.P50, a.P99, a.Max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	return a
}

// newDiskRun starts scenario sc on a cluster whose every node keeps its
// directory on a faultfs mount (the test is skipped where FUSE is not
// available, naming what needs it), and sets the cluster up for the
// workload. The run's report is written when the test fails or reports are
// kept.
func newDiskRun(t *testing.T, sc scenario, what string) (*run, *diskSet) {
	r := newRun(t, sc)
	r.c = newCluster(t, t.TempDir(), clusterOptions{Nodes: sc.Nodes, Seed: sc.Seed, ExtraArgs: sc.nodeArgs()}, r.events)
	ds := disksOf(r.c)
	mctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	err := ds.mountAll(mctx, sc.Seed, r.events)
	cancel()
	if errors.Is(err, faultfs.ErrUnavailable) {
		t.Skipf("%s needs FUSE: %v", what, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scenario: seed %d, %s; every node's directory on a faultfs mount", sc.Seed, sc.describe())
	for i := range sc.Keys {
		r.keys = append(r.keys, fmt.Sprintf("%sk%d", keyPrefix, i))
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv(envKeepReports) == "1" {
			r.writeReport()
		}
	})
	r.setup()
	return r, ds
}
