package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Opening a data dir with the pebble store migrates a raft-boltdb raft.db
// it finds there, crash-safely:
//
//  1. copy every log entry and every stable-store key from raft.db into a
//     new pebble database in raft-pebble.migrating (removed first if a
//     crashed migration left one), synced;
//  2. rename raft-pebble.migrating to raft-pebble and fsync the data dir:
//     the commit point, after which raft-pebble is the node's store;
//  3. rename raft.db to raft.db.migrated (kept as a backup, never read
//     again) and fsync the data dir.
//
// A crash before step 2 leaves raft.db the store (and redoes the copy); a
// crash after it leaves both, and the next open finishes step 3. The boltdb
// store refuses a data dir holding raft-pebble, since its raft.db (if any)
// is older than the log and votes the node has acknowledged since.
const (
	boltFile        = "raft.db"
	boltMigrated    = "raft.db.migrated"
	pebbleMigrating = "raft-pebble.migrating"
)

// migrateBatchBytes bounds the memory a migration holds at once.
const migrateBatchBytes = 4 << 20

// openPebbleDataDir opens the pebble store of dataDir, migrating raft.db
// first if the data dir has one and no pebble store yet.
func openPebbleDataDir(dataDir string, noSync bool) (*PebbleStore, error) {
	dir := filepath.Join(dataDir, pebbleDir)
	bolt := filepath.Join(dataDir, boltFile)
	_, pebbleErr := os.Stat(dir)
	_, boltErr := os.Stat(bolt)
	switch {
	case pebbleErr == nil && boltErr == nil:
		// A migration crashed after its commit point.
		if err := retireBolt(dataDir); err != nil {
			return nil, err
		}
	case errors.Is(pebbleErr, os.ErrNotExist) && boltErr == nil:
		if err := migrateBolt(dataDir); err != nil {
			return nil, fmt.Errorf("migrating raft log %s to %s: %w (raft.db is unchanged and still the node's store)", bolt, dir, err)
		}
	case pebbleErr != nil && !errors.Is(pebbleErr, os.ErrNotExist):
		return nil, fmt.Errorf("raft log %s: %w", dir, pebbleErr)
	}
	return openPebble(dir, pebbleOptions{noSync: noSync})
}

// migrateBolt does steps 1 to 3 above.
func migrateBolt(dataDir string) error {
	tmp := filepath.Join(dataDir, pebbleMigrating)
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := copyBoltToPebble(filepath.Join(dataDir, boltFile), tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, pebbleDir)); err != nil {
		return err
	}
	if err := syncDir(dataDir); err != nil {
		return err
	}
	return retireBolt(dataDir)
}

func retireBolt(dataDir string) error {
	if err := os.Rename(filepath.Join(dataDir, boltFile), filepath.Join(dataDir, boltMigrated)); err != nil {
		return fmt.Errorf("retiring the migrated raft.db: %w", err)
	}
	return syncDir(dataDir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// copyBoltToPebble copies raft.db's log and stable store into a new pebble
// store in dst, synced, in batches of at most migrateBatchBytes.
func copyBoltToPebble(boltPath, dst string) error {
	conf, err := readBoltConf(boltPath)
	if err != nil {
		return err
	}
	src, err := raftboltdb.New(raftboltdb.Options{
		Path:        boltPath,
		BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: time.Second},
	})
	if err != nil {
		return fmt.Errorf("opening %s: %w", boltPath, err)
	}
	defer src.Close()
	out, err := openPebble(dst, pebbleOptions{})
	if err != nil {
		return err
	}
	defer out.Close()

	b := out.db.NewBatch()
	for _, kv := range conf {
		if err := b.Set(stableKey(kv[0]), kv[1], nil); err != nil {
			_ = b.Close()
			return err
		}
	}
	err = b.Commit(pebble.NoSync)
	_ = b.Close()
	if err != nil {
		return fmt.Errorf("copying the stable store: %w", err)
	}

	first, err := src.FirstIndex()
	if err != nil {
		return err
	}
	last, err := src.LastIndex()
	if err != nil {
		return err
	}
	if first > 0 {
		var batch []*raft.Log
		size := 0
		flush := func() error {
			err := out.StoreLogs(batch)
			batch, size = batch[:0], 0
			return err
		}
		for i := first; i <= last; i++ {
			l := new(raft.Log)
			if err := src.GetLog(i, l); err != nil {
				return fmt.Errorf("reading entry %d of %d-%d: %w", i, first, last, err)
			}
			batch = append(batch, l)
			if size += len(l.Data) + len(l.Extensions); size >= migrateBatchBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	// The stable store's batch went unsynced; one synced write covers it
	// and everything before it in the WAL.
	if err := out.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("syncing the migrated log: %w", err)
	}
	if f, _ := out.FirstIndex(); f != first {
		return fmt.Errorf("migrated log starts at %d, raft.db at %d", f, first)
	}
	if l, _ := out.LastIndex(); l != last {
		return fmt.Errorf("migrated log ends at %d, raft.db at %d", l, last)
	}
	return verifyStable(src, out)
}

// readBoltConf returns every key and value of raft-boltdb's stable store
// (its "conf" bucket).
func readBoltConf(boltPath string) ([][2][]byte, error) {
	db, err := bbolt.Open(boltPath, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", boltPath, err)
	}
	defer db.Close()
	var kvs [][2][]byte
	err = db.View(func(tx *bbolt.Tx) error {
		conf := tx.Bucket([]byte("conf"))
		if conf == nil {
			return nil
		}
		return conf.ForEach(func(k, v []byte) error {
			kvs = append(kvs, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading the stable store of %s: %w", boltPath, err)
	}
	return kvs, nil
}

// verifyStable checks that raft's own stable keys read back alike.
func verifyStable(src *raftboltdb.BoltStore, out *PebbleStore) error {
	for _, k := range []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand"} {
		want, werr := src.Get([]byte(k))
		got, gerr := out.Get([]byte(k))
		if (werr == nil) != (gerr == nil) || !bytes.Equal(want, got) {
			return fmt.Errorf("stable key %s: raft.db has %q (%v), the copy %q (%v)", k, want, werr, got, gerr)
		}
	}
	return nil
}
