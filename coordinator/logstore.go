package coordinator

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"
)

// Log stores (Config.LogStore).
const (
	// LogStoreBolt keeps the raft log and the stable store (term, vote) in
	// one bbolt file, raft.db: hashicorp/raft-boltdb/v2, the long-proven
	// default. A bbolt commit costs two fsyncs.
	LogStoreBolt = "boltdb"
	// LogStoreWAL keeps them in hashicorp/raft-wal, an append-only segment
	// log with one fsync per append (about 1.5x the write throughput here,
	// see tests/bench). Its authors still call it experimental; Consul
	// offers it as an opt-in. A data dir cannot switch stores.
	LogStoreWAL = "wal"
)

// walStore closes the WAL's meta database too: raft-wal v0.4.0's Close
// leaves it open, and with it the file lock, so the same process could not
// open the data dir again.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

func (s *walStore) Close() error {
	return errors.Join(s.WAL.Close(), s.meta.Close())
}

// logStore is what raft needs from its log and stable storage.
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// openLogStore opens the raft log and stable store of dataDir. A data dir
// written by one kind of store refuses to open as the other, so a flag
// change cannot silently start a node with an empty log.
func openLogStore(dataDir, kind string, noSync bool, logger hclog.Logger) (logStore, error) {
	boltPath := filepath.Join(dataDir, "raft.db")
	walDir := filepath.Join(dataDir, "wal")
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	switch kind {
	case "", LogStoreBolt:
		if exists(walDir) {
			return nil, fmt.Errorf("data dir %s holds a %q log store, not %q", dataDir, LogStoreWAL, LogStoreBolt)
		}
		// NoSync applies to the whole file, so it also drops the durability
		// of votes: benchmarks only.
		store, err := raftboltdb.New(raftboltdb.Options{
			Path:   boltPath,
			NoSync: noSync,
			BoltOptions: &bbolt.Options{
				Timeout:      time.Second, // another process holding the file fails fast
				FreelistType: bbolt.FreelistMapType,
			},
		})
		if err != nil {
			return nil, fmt.Errorf("opening raft log %s: %w", boltPath, err)
		}
		return store, nil
	case LogStoreWAL:
		if exists(boltPath) {
			return nil, fmt.Errorf("data dir %s holds a %q log store, not %q", dataDir, LogStoreBolt, LogStoreWAL)
		}
		if noSync {
			return nil, errors.New("NoSync is only supported with the boltdb log store")
		}
		if err := os.MkdirAll(walDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", walDir, err)
		}
		meta := &metadb.BoltMetaDB{}
		w, err := wal.Open(walDir, wal.WithLogger(logger.Named("wal")), wal.WithMetaStore(meta))
		if err != nil {
			meta.Close()
			return nil, fmt.Errorf("opening raft log %s: %w", walDir, err)
		}
		return &walStore{WAL: w, meta: meta}, nil
	default:
		return nil, fmt.Errorf("LogStore: want %q or %q, got %q", LogStoreBolt, LogStoreWAL, kind)
	}
}
