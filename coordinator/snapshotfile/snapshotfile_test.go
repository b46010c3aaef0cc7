package snapshotfile

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/colonymesh/colony/internal/ztree"
)

// writeFile writes an empty tree's snapshot file (index 0) and returns its
// path and contents.
func writeFile(t *testing.T) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := ztree.New().View().WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	b := append(buf.Bytes(), sum[:]...)
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, b
}

func TestReadDescribesAndChecks(t *testing.T) {
	path, b := writeFile(t)
	info, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(b)) || info.Nodes != 1 || len(info.SHA256) != 2*SumLen {
		t.Errorf("Read = %+v; want %d bytes, the root alone, a %d-byte checksum", info, len(b), SumLen)
	}
	cut := filepath.Join(t.TempDir(), "cut.db")
	if err := os.WriteFile(cut, b[:len(b)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(cut); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("Read of a truncated file = %v; want ErrCorrupt, checksum mismatch", err)
	}
	// A snapshot at index 0 holds no raft state to restore.
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := Restore(path, RestoreConfig{DataDir: dir, NodeID: "n1", RaftAddr: "127.0.0.1:7401"}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "index 0") {
		t.Errorf("Restore of an index-0 snapshot = %v; want ErrCorrupt naming index 0", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a refused restore left %s: %v", dir, err)
	}
}

func TestRestoreConfiguration(t *testing.T) {
	tests := []struct {
		name string
		cfg  RestoreConfig
		want string // "": valid
	}{
		{"alone", RestoreConfig{DataDir: "d", NodeID: "n1", RaftAddr: "h:1"}, ""},
		{"peers", RestoreConfig{DataDir: "d", NodeID: "n2", Peers: map[string]string{"n1": "h:1", "n2": "h:2"}}, ""},
		{"no data dir", RestoreConfig{NodeID: "n1", RaftAddr: "h:1"}, "DataDir is required"},
		{"no id", RestoreConfig{DataDir: "d", RaftAddr: "h:1"}, "NodeID is required"},
		{"no address", RestoreConfig{DataDir: "d", NodeID: "n1"}, "RaftAddr is required"},
		{"not a peer", RestoreConfig{DataDir: "d", NodeID: "n3", Peers: map[string]string{"n1": "h:1"}}, "not one of the peers"},
		{"peer without address", RestoreConfig{DataDir: "d", NodeID: "n1", Peers: map[string]string{"n1": "h:1", "n2": ""}}, "want an id and a raft address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := restoreConfiguration(tt.cfg)
			if tt.want == "" {
				if err != nil || len(conf.Servers) == 0 {
					t.Fatalf("restoreConfiguration = %v, %v; want voters", conf, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("restoreConfiguration = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
