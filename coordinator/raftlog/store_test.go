package raftlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// A data dir written by the removed raft-wal store must be refused with an
// explanation, not opened as boltdb with an empty log (a node that forgot
// its log and votes could vote twice in a term).
func TestLogStoreRefusesWALDataDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Bolt, false)
	if err == nil || !strings.Contains(err.Error(), "raft-wal") || !strings.Contains(err.Error(), "wipe the dir") {
		t.Fatalf("opening a raft-wal data dir: %v, want an error naming raft-wal and the way out", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); !os.IsNotExist(err) {
		t.Errorf("refused data dir gained raft.db: %v", err)
	}
}

func TestLogStoreBoltKeepsEntries(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, Bolt, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = Open(dir, Auto, false) // a raft.db stays boltdb
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var l raft.Log
	if err := st.GetLog(1, &l); err != nil || string(l.Data) != "x" {
		t.Fatalf("entry after reopening: %v %q", err, l.Data)
	}
	for _, kind := range []string{"wal", "rocksdb"} {
		if _, err := Open(t.TempDir(), kind, false); err == nil {
			t.Errorf("log store %q accepted", kind)
		}
	}
}

// Auto, the default, never changes the store of a data dir that has one:
// an upgraded node keeps its raft.db; a new data dir gets pebble; a pebble
// data dir (or one whose migration stopped half way) stays pebble.
func TestOpenAutoKeepsTheDataDirsStore(t *testing.T) {
	entry := &raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")}
	open := func(dir, kind string) {
		t.Helper()
		st, err := Open(dir, kind, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.StoreLog(entry); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	has := func(dir, name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}

	fresh := t.TempDir()
	if got := Resolve(fresh, Auto); got != Pebble {
		t.Errorf("Resolve(new dir) = %q, want %q", got, Pebble)
	}
	open(fresh, Auto)
	if !has(fresh, pebbleDir) || has(fresh, boltFile) {
		t.Errorf("a new data dir opened with the default holds pebble %v, raft.db %v; want pebble only", has(fresh, pebbleDir), has(fresh, boltFile))
	}

	old := t.TempDir()
	open(old, Bolt)
	if got := Resolve(old, Auto); got != Bolt {
		t.Errorf("Resolve(dir with raft.db) = %q, want %q", got, Bolt)
	}
	open(old, Auto)
	if has(old, pebbleDir) {
		t.Errorf("the default migrated a boltdb data dir to pebble")
	}
	if got := Resolve(old, Pebble); got != Pebble {
		t.Errorf("Resolve(raft.db dir, pebble) = %q: asking by name must win", got)
	}

	if got := Resolve(fresh, Auto); got != Pebble {
		t.Errorf("Resolve(pebble dir) = %q, want %q", got, Pebble)
	}
}
