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
	st, err = Open(dir, "", false) // empty means boltdb
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
