// Package raftlog is a node's raft log and stable store: Open opens the
// one store a data dir holds (raft-boltdb's raft.db, or a pebble database
// in raft-pebble, into which it migrates a raft.db it finds) and refuses
// settings and data dirs it cannot serve with an explanation; WatchedStore times
// every write so a StallGuard can tell when the disk hangs, and the node
// then fails its AppendEntries until the write returns (see stall.go).
package raftlog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Log stores (the node's Config.LogStore).
const (
	// Bolt keeps the raft log and the stable store (term, vote) in
	// one bbolt file, raft.db: hashicorp/raft-boltdb/v2, the long-proven
	// store. A bbolt commit costs two fsyncs.
	Bolt = "boltdb"
	// Pebble keeps them in a cockroachdb/pebble database in raft-pebble:
	// one WAL fsync per append batch and per vote (PebbleStore). Opening a
	// data dir that holds a raft.db migrates it (see migrate.go).
	Pebble = "pebble"
	// wal named hashicorp/raft-wal, offered until v0.4.0's tail
	// truncation bug (raft-wal#31: after raft truncates a deposed leader's
	// log tail, the node panics on every restart) was found by
	// tests/robustness. The fix (#33) is in no release the module proxy
	// serves, and a store that can brick a node is not an option; the name
	// is kept so a wal data dir or flag gets an explanation, not a guess.
	wal = "wal"
)

// Store is what raft needs from its log and stable storage.
type Store interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// Auto ("", the default) opens the store a data dir already holds, and
// Pebble in a new one: an upgrade never migrates a data dir behind the
// operator's back (Pebble, asked for by name, does).
const Auto = ""

// Resolve is the store Open opens for kind in dataDir: kind itself, or for
// Auto, Pebble if dataDir holds a pebble store (a migration that did not
// finish included), Bolt if it holds a raft.db only, and Pebble if it
// holds neither.
func Resolve(dataDir, kind string) string {
	if kind != Auto {
		return kind
	}
	if _, err := os.Stat(filepath.Join(dataDir, pebbleDir)); err == nil {
		return Pebble
	}
	if _, err := os.Stat(filepath.Join(dataDir, boltFile)); err == nil {
		return Bolt
	}
	return Pebble
}

// Open opens the raft log and stable store of dataDir, of kind Auto, Bolt
// or Pebble (see Resolve); any other kind is refused as CheckKind says.
// Pebble migrates a raft.db in dataDir first; Bolt refuses a data dir that
// holds a pebble store. noSync drops fsyncs: benchmarks only.
func Open(dataDir, kind string, noSync bool) (Store, error) {
	kind = Resolve(dataDir, kind)
	boltPath := filepath.Join(dataDir, boltFile)
	walDir := filepath.Join(dataDir, "wal")
	if _, err := os.Stat(walDir); err == nil && CheckKind(kind) == nil {
		return nil, fmt.Errorf("data dir %s holds a raft-wal log store (%s), which this version no longer opens "+
			"(hashicorp/raft-wal#31 can make a node unable to restart); move the node to a new data dir: "+
			"remove it from the cluster, wipe the dir and add it back so it catches up from the others", dataDir, walDir)
	}
	switch kind {
	case Pebble:
		return openPebbleDataDir(dataDir, noSync)
	case Bolt:
		if _, err := os.Stat(filepath.Join(dataDir, pebbleDir)); err == nil {
			return nil, fmt.Errorf("data dir %s holds a pebble raft log (%s), and its log and votes are newer than any raft.db there; "+
				"start the node with --log-store %s (going back to boltdb: remove the node from the cluster, wipe the dir and add it back)",
				dataDir, filepath.Join(dataDir, pebbleDir), Pebble)
		}
		// NoSync applies to the whole file, so it also drops the durability
		// of votes: benchmarks only.
		store, err := raftboltdb.New(raftboltdb.Options{
			Path:   boltPath,
			NoSync: noSync,
			BoltOptions: &bbolt.Options{
				Timeout:      time.Second, // another process holding the file fails fast
				FreelistType: bbolt.FreelistMapType,
				// Do not write the freelist on every commit (etcd does the
				// same): after raft compacts the log, the freelist holds
				// thousands of pages, and sorting and writing it on every
				// append cost the leader loop more CPU than the append
				// itself, halving one member's write rate over a long run.
				// bbolt rebuilds it by scanning the file when it opens.
				NoFreelistSync: true,
			},
		})
		if err != nil {
			return nil, fmt.Errorf("opening raft log %s: %w", boltPath, err)
		}
		return store, nil
	default:
		return nil, CheckKind(kind)
	}
}

// CheckKind says what is wrong with a LogStore setting, or nil.
func CheckKind(kind string) error {
	switch kind {
	case Auto, Bolt, Pebble:
		return nil
	case wal:
		return errors.New(`LogStore: "wal" (raft-wal) was removed: v0.4.0 can leave a node unable to restart after a leader change (hashicorp/raft-wal#31); use "boltdb" or "pebble"`)
	default:
		return fmt.Errorf("LogStore: want %q or %q, got %q", Bolt, Pebble, kind)
	}
}
