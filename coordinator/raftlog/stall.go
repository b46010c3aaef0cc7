package raftlog

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// A leader whose disk hangs keeps its leadership in hashicorp/raft: the
// heartbeats come from per-follower goroutines that never touch the disk,
// so the followers never time out, while the leader loop waits on the log
// write and nothing commits (tests/robustness TestSlowDisk measured 8 s
// without a write, same leader and term after). The disk-stall guard
// notices a log or stable-store write that has not returned within the
// node's DiskStallTimeout and fails the leader's AppendEntries (heartbeats, and
// the pipeline that carries the commit index every CommitTimeout) until it
// returns, as a partition would: the followers elect a
// leader whose disk works, and the old one steps down when its write
// returns and it sees the newer term. Failing RPCs is always safe in raft;
// the entries the stuck leader had not committed were never acknowledged.

// WatchedStore is the raft log and stable store, timing the write in
// progress. raft writes from one goroutine at a time; should two overlap,
// the older start is kept, which only makes the stall look longer.
type WatchedStore struct {
	Store
	since atomic.Int64 // unix nanos the write in progress started; 0: none
}

var _ Store = (*WatchedStore)(nil)

func (w *WatchedStore) track() func() {
	if w.since.CompareAndSwap(0, time.Now().UnixNano()) {
		return func() { w.since.Store(0) }
	}
	return func() {}
}

func (w *WatchedStore) StoreLog(l *raft.Log) error {
	defer w.track()()
	return w.Store.StoreLog(l)
}

func (w *WatchedStore) StoreLogs(ls []*raft.Log) error {
	defer w.track()()
	return w.Store.StoreLogs(ls)
}

func (w *WatchedStore) DeleteRange(min, max uint64) error {
	defer w.track()()
	return w.Store.DeleteRange(min, max)
}

func (w *WatchedStore) Set(k, v []byte) error {
	defer w.track()()
	return w.Store.Set(k, v)
}

func (w *WatchedStore) SetUint64(k []byte, v uint64) error {
	defer w.track()()
	return w.Store.SetUint64(k, v)
}

// StalledFor is how long the write in progress has been running at now;
// zero when none is.
func (w *WatchedStore) StalledFor(now time.Time) time.Duration {
	s := w.since.Load()
	if s == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, s))
}

// StallGuard decides, per outgoing AppendEntries, whether this node's disk
// has hung long enough that it must stop asserting its leadership.
type StallGuard struct {
	store   *WatchedStore
	timeout time.Duration // <= 0: never
	log     *slog.Logger
	muted   atomic.Bool
}

// NewStallGuard returns a guard that fails Check while a write of store has
// not returned for longer than timeout (<= 0: never), logging to log when
// that starts and ends.
func NewStallGuard(store *WatchedStore, timeout time.Duration, log *slog.Logger) *StallGuard {
	return &StallGuard{store: store, timeout: timeout, log: log}
}

// Check returns an error while the store's write in progress is older than
// the timeout, logging when that starts and ends. A nil guard never fails.
func (g *StallGuard) Check() error {
	if g == nil || g.timeout <= 0 {
		return nil
	}
	d := g.store.StalledFor(time.Now())
	if d > g.timeout {
		if g.muted.CompareAndSwap(false, true) {
			g.log.Error("a raft log write has not returned; failing heartbeats so the followers elect a leader with a working disk",
				"stalled", d.Round(time.Millisecond), "limit", g.timeout)
		}
		return fmt.Errorf("disk stall: this node's raft log write has not returned for %v (DiskStallTimeout %v)", d.Round(time.Millisecond), g.timeout)
	}
	if g.muted.CompareAndSwap(true, false) {
		g.log.Warn("raft log writes return again; heartbeats resume")
	}
	return nil
}
