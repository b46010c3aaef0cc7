package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/raft"
)

func entry(i, term uint64) *raft.Log {
	l := &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry %d term %d", i, term))}
	if i%3 == 0 {
		l.Extensions = []byte{byte(i), 0, 1}
		l.AppendedAt = time.Unix(1_700_000_000, int64(i)).UTC()
	}
	return l
}

func entries(lo, hi, term uint64) []*raft.Log {
	var ls []*raft.Log
	for i := lo; i <= hi; i++ {
		ls = append(ls, entry(i, term))
	}
	return ls
}

func sameLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) && a.AppendedAt.Equal(b.AppendedAt)
}

// model is what a store must hold: the entries and stable keys it acked.
type model struct {
	logs   map[uint64]*raft.Log
	stable map[string]uint64
}

func newModel() *model { return &model{logs: map[uint64]*raft.Log{}, stable: map[string]uint64{}} }

func (m *model) clone() *model {
	c := newModel()
	for k, v := range m.logs {
		c.logs[k] = v
	}
	for k, v := range m.stable {
		c.stable[k] = v
	}
	return c
}

func (m *model) bounds() (first, last uint64) {
	for i := range m.logs {
		if first == 0 || i < first {
			first = i
		}
		last = max(last, i)
	}
	return first, last
}

// check fails t unless s holds exactly what m says, bounds included.
func (m *model) check(t *testing.T, s Store, what string) {
	t.Helper()
	first, last := m.bounds()
	gf, _ := s.FirstIndex()
	gl, _ := s.LastIndex()
	if gf != first || gl != last {
		t.Fatalf("%s: bounds %d-%d, want %d-%d", what, gf, gl, first, last)
	}
	for i := first; i <= last && first > 0; i++ {
		var got raft.Log
		want, ok := m.logs[i]
		err := s.GetLog(i, &got)
		switch {
		case !ok && !errors.Is(err, raft.ErrLogNotFound):
			t.Fatalf("%s: entry %d: %v, want ErrLogNotFound", what, i, err)
		case ok && err != nil:
			t.Fatalf("%s: entry %d: %v", what, i, err)
		case ok && !sameLog(&got, want):
			t.Fatalf("%s: entry %d is %+v, want %+v", what, i, got, *want)
		}
	}
	for k, want := range m.stable {
		if got, err := s.GetUint64([]byte(k)); err != nil || got != want {
			t.Fatalf("%s: stable %s = %d, %v; want %d", what, k, got, err, want)
		}
	}
}

func openMem(t *testing.T, fs vfs.FS, o pebbleOptions) *PebbleStore {
	t.Helper()
	o.fs = fs
	s, err := openPebble("db", o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The store keeps what raft relies on: entries by index with every field,
// bounds that follow appends, compaction from the front and truncation of
// a conflicting tail, and a stable store that answers "not found" (raft
// compares that message) for keys never set; all of it across a reopen.
func TestPebbleStoreKeepsLogAndVotes(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Pebble, false)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel()
	m.check(t, s, "empty")
	if _, err := s.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("unset key: %v, want \"not found\"", err)
	}
	if _, err := s.Get([]byte("LastVoteCand")); err == nil || err.Error() != "not found" {
		t.Fatalf("unset key: %v, want \"not found\"", err)
	}
	add := func(ls ...*raft.Log) {
		t.Helper()
		if err := s.StoreLogs(ls); err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			m.logs[l.Index] = l
		}
	}
	del := func(lo, hi uint64) {
		t.Helper()
		if err := s.DeleteRange(lo, hi); err != nil {
			t.Fatal(err)
		}
		for i := lo; i <= hi; i++ {
			delete(m.logs, i)
		}
	}
	add(entries(1, 100, 1)...)
	if err := s.StoreLog(entry(101, 2)); err != nil {
		t.Fatal(err)
	}
	m.logs[101] = entry(101, 2)
	m.check(t, s, "after appends")
	del(1, 40) // compaction after a snapshot
	m.check(t, s, "after compaction")
	del(90, 101) // a deposed leader's tail
	add(entries(90, 120, 3)...)
	m.check(t, s, "after truncating and rewriting the tail")
	for k, v := range map[string]uint64{"CurrentTerm": 3, "LastVoteTerm": 3} {
		if err := s.SetUint64([]byte(k), v); err != nil {
			t.Fatal(err)
		}
		m.stable[k] = v
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-b")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, Pebble, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m.check(t, s, "after reopening")
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-b" {
		t.Fatalf("vote after reopening: %q, %v", v, err)
	}
	del(41, 120)
	m.check(t, s, "after deleting everything")
	add(entries(500, 510, 4)...) // a snapshot installed past the old log
	m.check(t, s, "after a snapshot restore")
}

// A simulated power loss keeps exactly the synced writes: every batch the
// store acked survives, whole, and a batch in flight survives whole or not
// at all. The crash-clone file system drops (some or all) data that was
// never fsynced, as a disk losing power does; pebble's own background
// flushes and compactions run meanwhile and are cut at random points.
// RAFTLOG_POWER_LOSS_SEEDS=N runs seeds 1..N (default 6).
func TestPebbleStoreSurvivesPowerLoss(t *testing.T) {
	seeds := int64(6)
	if v := os.Getenv("RAFTLOG_POWER_LOSS_SEEDS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			t.Fatalf("RAFTLOG_POWER_LOSS_SEEDS=%q: want a positive number", v)
		}
		seeds = n
	}
	for seed := int64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 0))
			fs := vfs.NewCrashableMem()
			small := pebbleOptions{memTableBytes: 64 << 10} // flushes and compactions every few rounds
			s := openMem(t, fs, small)
			m := newModel()
			next, term := uint64(1), uint64(1)
			for round := 0; round < 12; round++ {
				for op := 0; op < 20; op++ {
					switch r := rng.IntN(10); {
					case r < 6:
						n := uint64(1 + rng.IntN(64))
						ls := entries(next, next+n-1, term)
						for _, l := range ls { // some large entries, to push memtable flushes
							if rng.IntN(8) == 0 {
								l.Data = bytes.Repeat([]byte{byte(l.Index)}, 4<<10)
							}
						}
						if err := s.StoreLogs(ls); err != nil {
							t.Fatal(err)
						}
						for _, l := range ls {
							m.logs[l.Index] = l
						}
						next += n
					case r < 7:
						first, last := m.bounds()
						if first > 0 && last > first {
							hi := first + uint64(rng.Int64N(int64(last-first)))
							if err := s.DeleteRange(first, hi); err != nil {
								t.Fatal(err)
							}
							for i := first; i <= hi; i++ {
								delete(m.logs, i)
							}
						}
					case r < 8:
						_, last := m.bounds()
						if last > 1 {
							lo := last - uint64(rng.IntN(8))
							if err := s.DeleteRange(lo, last); err != nil {
								t.Fatal(err)
							}
							for i := lo; i <= last; i++ {
								delete(m.logs, i)
							}
							next, term = lo, term+1
						}
					default:
						term++
						if err := s.SetUint64([]byte("CurrentTerm"), term); err != nil {
							t.Fatal(err)
						}
						m.stable["CurrentTerm"] = term
					}
				}
				// Power loss with one more batch in flight.
				inflight := entries(next, next+uint64(rng.IntN(32)), term)
				done := make(chan error, 1)
				go func() { done <- s.StoreLogs(inflight) }()
				if rng.IntN(2) == 0 {
					time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
				}
				crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
				if err := <-done; err != nil {
					t.Fatal(err)
				}

				after := openMem(t, crashed, small)
				withInflight := m.clone()
				for _, l := range inflight {
					withInflight.logs[l.Index] = l
				}
				if last, _ := after.LastIndex(); last == inflight[len(inflight)-1].Index {
					withInflight.check(t, after, fmt.Sprintf("round %d, after power loss (in-flight batch kept)", round))
				} else {
					m.check(t, after, fmt.Sprintf("round %d, after power loss (in-flight batch lost)", round))
				}
				if err := after.Close(); err != nil {
					t.Fatal(err)
				}
				m = withInflight
				next = inflight[len(inflight)-1].Index + 1
			}
			if met := s.db.Metrics(); met.Flush.Count == 0 || met.Compact.Count == 0 {
				t.Fatalf("%d memtable flushes and %d compactions: the crashes never cut one", met.Flush.Count, met.Compact.Count)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The control for the power-loss test: with fsync off, the same crash
// loses acknowledged entries, so the test above can tell a store that
// syncs from one that does not.
func TestPebbleStoreNoSyncLosesWritesOnPowerLoss(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openMem(t, fs, pebbleOptions{noSync: true})
	defer s.Close()
	if err := s.StoreLogs(entries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	after := openMem(t, fs.CrashClone(vfs.CrashCloneCfg{}), pebbleOptions{})
	defer after.Close()
	if last, _ := after.LastIndex(); last != 0 {
		t.Fatalf("unsynced entries 1-10 survived a power loss (last index %d): the crash file system keeps unsynced data", last)
	}
}

// A failed WAL fsync never acknowledges the write and does not let the
// store go on: the disk may have dropped the data while the page cache
// still shows it (the PostgreSQL "fsyncgate" lesson). The store hands the
// failure to its fatal hook, which in production ends the process, and a
// restart recovers exactly the synced writes.
func TestPebbleStoreFsyncFailureIsFatal(t *testing.T) {
	mem := vfs.NewCrashableMem()
	failing := new(errorfs.Toggle)
	failing.Injector = errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if strings.HasSuffix(op.Path, ".log") {
				return errors.New("injected EIO")
			}
		}
		return nil
	})
	var (
		mu     sync.Mutex
		fatals []string
	)
	fatal := func(msg string) {
		mu.Lock()
		fatals = append(fatals, msg)
		mu.Unlock()
		panic(fatalPanic(msg))
	}
	s := openMem(t, errorfs.Wrap(mem, failing), pebbleOptions{fatal: fatal})
	if err := s.StoreLogs(entries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}

	failing.On()
	type result struct {
		err      error
		panicked any
	}
	res := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				res <- result{panicked: r}
			}
		}()
		err := s.StoreLogs(entries(11, 20, 1))
		res <- result{err: err}
	}()
	r := <-res
	if r.err == nil && r.panicked == nil {
		t.Fatal("StoreLogs acknowledged a batch whose fsync failed")
	}
	if r.panicked == nil {
		t.Fatalf("StoreLogs returned %v after a failed fsync and the store went on; want the fatal hook", r.err)
	}
	mu.Lock()
	if len(fatals) == 0 || !strings.Contains(fatals[0], "injected EIO") {
		t.Fatalf("fatal hook calls %q, want one naming the fsync error", fatals)
	}
	mu.Unlock()
	// The broken database is abandoned as the process would be; its
	// memory goes with the test binary.

	after := openMem(t, mem.CrashClone(vfs.CrashCloneCfg{}), pebbleOptions{})
	defer after.Close()
	m := newModel()
	for _, l := range entries(1, 10, 1) {
		m.logs[l.Index] = l
	}
	m.stable["CurrentTerm"] = 1
	m.check(t, after, "after restarting from the synced state")
}

// fatalPanic is what the tests' fatal hook panics with.
type fatalPanic string

func TestLogCodecRejectsCorruptEntries(t *testing.T) {
	good := appendLog(nil, entry(3, 7))
	var l raft.Log
	if err := decodeLog(3, good, &l); err != nil || !sameLog(&l, entry(3, 7)) {
		t.Fatalf("round trip: %v %+v", err, l)
	}
	for n := 0; n < len(good); n++ {
		if err := decodeLog(3, good[:n], &l); !errors.Is(err, errCorruptEntry) {
			t.Fatalf("entry cut to %d of %d bytes: %v, want errCorruptEntry", n, len(good), err)
		}
	}
	bad := append([]byte{9}, good[1:]...)
	if err := decodeLog(3, bad, &l); !errors.Is(err, errCorruptEntry) {
		t.Fatalf("unknown version: %v", err)
	}
}
