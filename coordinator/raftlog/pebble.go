package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// ErrKeyNotFound is what the stable store's Get and GetUint64 return for a
// key never set. hashicorp/raft compares the message, "not found", as
// raft-boltdb spells it.
var ErrKeyNotFound = errors.New("not found")

// pebbleDir is the pebble store's directory inside a node's data dir.
const pebbleDir = "raft-pebble"

// pebbleCacheBytes bounds the block cache; the memtables add at most
// 2 x pebbleMemTableBytes (pebble stops writes beyond that until a flush).
// Raft reads recent entries from its own LogCache and from the memtable,
// so a small cache is enough.
const (
	pebbleCacheBytes    = 8 << 20
	pebbleMemTableBytes = 8 << 20
)

// PebbleStore is a raft log and stable store in one cockroachdb/pebble
// database: each StoreLogs batch is one pebble batch committed with one
// WAL fsync, as is each stable-store write (term and vote), so nothing is
// acknowledged before it is on disk. DeleteRange is one range tombstone;
// FirstIndex and LastIndex are kept in memory.
//
// A failed WAL write or fsync is fatal: pebble cannot tell which of the
// writes in flight reached the disk, so its commit pipeline gives up, and
// this store then ends the process (exitFatal) rather than
// acknowledge, or go on serving reads of, data the disk may not hold. A
// restart replays the WAL that is actually on disk.
type PebbleStore struct {
	db *pebble.DB
	wo *pebble.WriteOptions

	// wmu orders writes with the index bookkeeping: raft compacts the log
	// from its snapshot goroutine while the leader loop appends.
	wmu         sync.Mutex
	first, last atomic.Uint64 // 0, 0: empty log
}

var _ Store = (*PebbleStore)(nil)

// pebbleOptions are the knobs tests turn; the zero value is production.
type pebbleOptions struct {
	fs     vfs.FS       // nil: the OS file system
	noSync bool         // benchmarks only
	fatal  func(string) // nil: exitFatal
	// memTableBytes: 0 is pebbleMemTableBytes; tests shrink it so that
	// flushes and compactions happen with little data.
	memTableBytes uint64
}

// pebbleLogger keeps pebble's informational chatter out of the node's log
// and turns its fatal errors into the store's fatal hook.
type pebbleLogger struct{ fatal func(string) }

func (pebbleLogger) Infof(string, ...any) {}

func (pebbleLogger) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "raftlog: pebble: "+format+"\n", args...)
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.fatal(fmt.Sprintf(format, args...))
}

// exitFatal is the production fatal hook: like log.Fatal (and pebble's
// own default logger) it ends the process at once, as kill -9 would, so
// nothing the disk may not hold is acknowledged or read after the failure;
// the restart replays the WAL the disk does hold.
func exitFatal(msg string) {
	fmt.Fprintf(os.Stderr, "raftlog: pebble: fatal: %s; ending the process: a restart recovers from what the disk holds\n", msg)
	os.Exit(1)
}

// openPebble opens (creating if needed) the pebble store in dir.
func openPebble(dir string, o pebbleOptions) (*PebbleStore, error) {
	fatal := o.fatal
	if fatal == nil {
		fatal = exitFatal
	}
	memTable := o.memTableBytes
	if memTable == 0 {
		memTable = pebbleMemTableBytes
	}
	cache := pebble.NewCache(pebbleCacheBytes)
	defer cache.Unref()
	fs := o.fs
	if fs == nil {
		fs = vfs.Default
	}
	opts := &pebble.Options{
		FS:           eintrFS{fs},
		Cache:        cache,
		MemTableSize: memTable,
		Logger:       pebbleLogger{fatal: fatal},
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("opening raft log %s: %w", dir, err)
	}
	s := &PebbleStore{db: db, wo: pebble.Sync}
	if o.noSync {
		s.wo = pebble.NoSync
	}
	if err := s.loadIndexes(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening raft log %s: %w", dir, err)
	}
	return s, nil
}

// loadIndexes reads the first and last index from the database.
func (s *PebbleStore) loadIndexes() error {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{logPrefix},
		UpperBound: []byte{logPrefix + 1},
	})
	if err != nil {
		return err
	}
	var first, last uint64
	if it.First() {
		if first, err = logKeyIndex(it.Key()); err != nil {
			_ = it.Close()
			return err
		}
		it.Last()
		if last, err = logKeyIndex(it.Key()); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("reading log bounds: %w", err)
	}
	s.first.Store(first)
	s.last.Store(last)
	return nil
}

// FirstIndex returns the first index in the log, 0 if it is empty.
func (s *PebbleStore) FirstIndex() (uint64, error) { return s.first.Load(), nil }

// LastIndex returns the last index in the log, 0 if it is empty.
func (s *PebbleStore) LastIndex() (uint64, error) { return s.last.Load(), nil }

// GetLog reads the entry at index into l, raft.ErrLogNotFound if absent.
func (s *PebbleStore) GetLog(index uint64, l *raft.Log) error {
	var kb [logKeyLen]byte
	v, closer, err := s.db.Get(logKey(kb[:0], index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("reading log entry %d: %w", index, err)
	}
	defer closer.Close()
	return decodeLog(index, v, l)
}

// StoreLog stores one entry, synced.
func (s *PebbleStore) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

// StoreLogs stores the entries in one atomic batch with one fsync.
func (s *PebbleStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	var kb [logKeyLen]byte
	var vb []byte
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for _, l := range logs {
		vb = appendLog(vb[:0], l)
		if err := b.Set(logKey(kb[:0], l.Index), vb, nil); err != nil {
			return fmt.Errorf("batching log entry %d: %w", l.Index, err)
		}
		lo, hi = min(lo, l.Index), max(hi, l.Index)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := b.Commit(s.wo); err != nil {
		return fmt.Errorf("storing log entries %d-%d: %w", lo, hi, err)
	}
	if first := s.first.Load(); first == 0 || lo < first {
		s.first.Store(lo)
	}
	if hi > s.last.Load() {
		s.last.Store(hi)
	}
	return nil
}

// DeleteRange deletes the entries min through max, inclusive, with one
// range tombstone, synced.
func (s *PebbleStore) DeleteRange(lo, hi uint64) error {
	if lo > hi {
		return nil
	}
	start := logKey(nil, lo)
	end := []byte{logPrefix + 1}
	if hi < math.MaxUint64 {
		end = logKey(nil, hi+1)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.db.DeleteRange(start, end, s.wo); err != nil {
		return fmt.Errorf("deleting log entries %d-%d: %w", lo, hi, err)
	}
	first, last := s.first.Load(), s.last.Load()
	switch {
	case first == 0 || hi < first || lo > last:
		// nothing stored was in the range
	case lo <= first && hi >= last:
		s.first.Store(0)
		s.last.Store(0)
	case lo <= first:
		s.first.Store(hi + 1) // raft's compaction: the log is contiguous
	case hi >= last:
		s.last.Store(lo - 1) // raft's truncation of a conflicting tail
	default:
		// A hole in the middle: raft never makes one; bounds are unchanged.
	}
	return nil
}

// Set stores a stable-store value, synced.
func (s *PebbleStore) Set(k, v []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.db.Set(stableKey(k), v, s.wo); err != nil {
		return fmt.Errorf("storing %q: %w", k, err)
	}
	return nil
}

// Get returns a stable-store value, ErrKeyNotFound if never set.
func (s *PebbleStore) Get(k []byte) ([]byte, error) {
	v, closer, err := s.db.Get(stableKey(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", k, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// SetUint64 stores a stable-store integer, synced.
func (s *PebbleStore) SetUint64(k []byte, v uint64) error {
	return s.Set(k, binary.BigEndian.AppendUint64(nil, v))
}

// GetUint64 returns a stable-store integer, ErrKeyNotFound if never set.
func (s *PebbleStore) GetUint64(k []byte) (uint64, error) {
	v, err := s.Get(k)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("reading %q: %d bytes, want 8", k, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Close closes the database; every acknowledged write is already durable.
func (s *PebbleStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing raft log: %w", err)
	}
	return nil
}
