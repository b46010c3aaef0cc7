package raftlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// boltDataDir makes a data dir whose raft.db holds entries 5-300 (the
// first four compacted away) and a term and vote, as a node that ran on
// raft-boltdb leaves it.
func boltDataDir(t *testing.T) (string, *model) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, Bolt, false)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel()
	for lo := uint64(1); lo <= 300; lo += 50 {
		ls := entries(lo, lo+49, 2)
		if err := s.StoreLogs(ls); err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			m.logs[l.Index] = l
		}
	}
	if err := s.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 4; i++ {
		delete(m.logs, i)
	}
	for k, v := range map[string]uint64{"CurrentTerm": 7, "LastVoteTerm": 7} {
		if err := s.SetUint64([]byte(k), v); err != nil {
			t.Fatal(err)
		}
		m.stable[k] = v
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-c")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

func checkMigrated(t *testing.T, dir string, m *model) {
	t.Helper()
	s, err := Open(dir, Pebble, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m.check(t, s, "migrated store")
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-c" {
		t.Fatalf("vote after migration: %q, %v", v, err)
	}
	if exists(t, filepath.Join(dir, boltFile)) || !exists(t, filepath.Join(dir, boltMigrated)) {
		t.Fatalf("after migration raft.db should be renamed %s", boltMigrated)
	}
	if exists(t, filepath.Join(dir, pebbleMigrating)) {
		t.Fatalf("%s left behind", pebbleMigrating)
	}
}

// Starting a raft-boltdb node with --log-store pebble carries its log,
// term and vote over, keeps raft.db as raft.db.migrated, and from then on
// the boltdb store refuses the data dir (its raft.db is stale) with the
// flag that opens it.
func TestOpenPebbleMigratesBoltDataDir(t *testing.T) {
	dir, m := boltDataDir(t)
	checkMigrated(t, dir, m)
	checkMigrated(t, dir, m) // a second open finds nothing to migrate

	_, err := Open(dir, Bolt, false)
	if err == nil || !strings.Contains(err.Error(), "--log-store pebble") {
		t.Fatalf("boltdb on a migrated data dir: %v, want a refusal naming --log-store pebble", err)
	}
	if exists(t, filepath.Join(dir, boltFile)) {
		t.Fatal("the refused boltdb open created raft.db")
	}
}

// A migration that crashed at any step is finished by the next open: a
// half-written copy is discarded and redone; a copy renamed into place
// (the commit point) with raft.db still beside it is the store, and raft.db
// is retired.
func TestOpenPebbleFinishesCrashedMigration(t *testing.T) {
	t.Run("crashed while copying", func(t *testing.T) {
		dir, m := boltDataDir(t)
		partial := filepath.Join(dir, pebbleMigrating)
		if err := os.MkdirAll(partial, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(partial, "000001.log"), []byte("torn"), 0o644); err != nil {
			t.Fatal(err)
		}
		checkMigrated(t, dir, m)
	})
	t.Run("crashed after the commit point", func(t *testing.T) {
		dir, m := boltDataDir(t)
		if err := copyBoltToPebble(filepath.Join(dir, boltFile), filepath.Join(dir, pebbleDir)); err != nil {
			t.Fatal(err)
		}
		checkMigrated(t, dir, m)
	})
}
