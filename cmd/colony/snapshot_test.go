package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/coordinator/snapshotfile"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// TestSnapshotSaveStatusRestore saves a snapshot from a running node,
// restores it into a new data dir, starts a coordinator there and reads the
// same tree from it.
func TestSnapshotSaveStatusRestore(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()
	run := func(args ...string) string {
		t.Helper()
		out, err := colony(ctx, t, "", args...)
		if err != nil {
			t.Fatalf("colony %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	run("kv", "create", "/app", "v1", "--endpoints", addr)
	run("kv", "create", "/app/cfg", strings.Repeat("x", 200<<10), "--endpoints", addr) // several chunks
	run("policy", "apply", "-f", examplePolicies, "--endpoints", addr)
	stat := run("kv", "stat", "/app", "--endpoints", addr)

	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	out := run("snapshot", "save", file, "--endpoints", addr)
	mustContain(t, "snapshot save", out, "saved snapshot at index", "from n1", file, "znodes", "sha256")
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("save left %v beside the file", entries)
	}

	var info snapshotfile.Info
	if err := json.Unmarshal([]byte(run("snapshot", "status", file, "-o", "json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Index == 0 || info.Nodes < 6 || info.DataBytes < 200<<10 || len(info.SHA256) != 64 {
		t.Errorf("snapshot status = %+v", info)
	}
	mustContain(t, "snapshot status", run("snapshot", "status", file), "index:", "sha256:", info.SHA256, "znodes:")

	data := filepath.Join(t.TempDir(), "restored")
	raftAddr := freeAddr(t)
	out = run("snapshot", "restore", file, "--data-dir", data, "--id", "r1", "--raft-addr", raftAddr)
	mustContain(t, "snapshot restore", out, "restored snapshot at index", "into "+data, "r1="+raftAddr,
		"colony coordinator --id r1 --data-dir "+data+" --raft-addr "+raftAddr)

	srv := coordinatortest.StartNode(t, func(c *coordinator.Config) {
		c.NodeID, c.DataDir, c.RaftAddr = "r1", data, raftAddr
	})
	if got := run("kv", "stat", "/app", "--endpoints", srv.Addr()); got != stat {
		t.Errorf("restored /app:\n%s\nwant\n%s", got, stat)
	}
	if got := run("kv", "get", "/app/cfg", "--endpoints", srv.Addr()); len(got) != 200<<10 {
		t.Errorf("restored /app/cfg holds %d bytes", len(got))
	}
	mustContain(t, "restored policy", run("policy", "get", "payments", "--endpoints", srv.Addr()), "payments's own policy")

	// A second restore into the same dir is refused.
	_, err := colony(ctx, t, "", "snapshot", "restore", file, "--data-dir", data, "--id", "r1")
	if !errors.Is(err, snapshotfile.ErrDataDirNotEmpty) || !strings.Contains(err.Error(), "new directory") {
		t.Errorf("restore into a used data dir: %v", err)
	}
}

func TestSnapshotBadFiles(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()
	// A 4 KiB value makes the snapshot large enough that the cuts below land
	// in its body, whatever else a fresh coordinator holds.
	if _, err := colony(ctx, t, "", "kv", "create", "/bulk", strings.Repeat("b", 4<<10), "--endpoints", addr); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "good.snap")
	if _, err := colony(ctx, t, "", "snapshot", "save", file, "--local", "--endpoints", addr); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(good) < 4<<10 {
		t.Fatalf("the snapshot is %d bytes; it holds a 4 KiB value", len(good))
	}
	truncated := filepath.Join(t.TempDir(), "truncated.snap")
	corrupt := filepath.Join(t.TempDir(), "corrupt.snap")
	bad := append([]byte(nil), good...)
	bad[len(bad)/3] ^= 1
	if err := os.WriteFile(truncated, good[:len(good)-100], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(corrupt, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{truncated, corrupt} {
		_, err := colony(ctx, t, "", "snapshot", "status", f)
		if !errors.Is(err, snapshotfile.ErrCorrupt) || !strings.Contains(err.Error(), "checksum mismatch") ||
			!strings.Contains(err.Error(), "colony snapshot save") {
			t.Errorf("status %s: %v", filepath.Base(f), err)
		}
		parent := t.TempDir()
		_, err = colony(ctx, t, "", "snapshot", "restore", f, "--data-dir", filepath.Join(parent, "data"), "--id", "r1")
		if !errors.Is(err, snapshotfile.ErrCorrupt) {
			t.Errorf("restore %s: %v", filepath.Base(f), err)
		}
		if entries, _ := os.ReadDir(parent); len(entries) != 0 {
			t.Errorf("restore of %s left %v", filepath.Base(f), entries)
		}
	}

	// Nothing to save from: an error naming the endpoint, and no file.
	dir := t.TempDir()
	nobody := freeAddr(t)
	_, err = colony(ctx, t, "", "snapshot", "save", filepath.Join(dir, "x.snap"), "--endpoints", nobody, "--timeout", "500ms")
	if err == nil || !strings.Contains(err.Error(), nobody) {
		t.Errorf("save from nobody: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed save left %v", entries)
	}
	// The first endpoint that answers serves it.
	out, err := colony(ctx, t, "", "snapshot", "save", filepath.Join(dir, "y.snap"), "--endpoints", nobody+","+addr)
	if err != nil || !strings.Contains(out, "("+addr+")") {
		t.Errorf("save with a dead first endpoint: %q, %v", out, err)
	}
}

func TestSnapshotRestoreFlags(t *testing.T) {
	ctx := t.Context()
	file := filepath.Join(t.TempDir(), "f.snap") // never read: the flags are checked first
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--id", "n1"}, "--data-dir: required"},
		{[]string{"--data-dir", "d"}, "--id: required"},
		{[]string{"--data-dir", "d", "--id", "n1", "--peers", "n1"}, "--peers: want id=raft-addr"},
		{[]string{"--data-dir", "d", "--id", "n4", "--peers", "n1=a:1,n2=b:1"}, `--id: "n4" is not one of --peers`},
		{[]string{"--data-dir", "d", "--id", "n1", "--peers", "n1=a:1", "--raft-addr", "a:2"}, "--raft-addr: give it or --peers"},
	}
	for _, tt := range tests {
		_, err := colony(ctx, t, "", append([]string{"snapshot", "restore", file}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("restore %v: %v, want %q", tt.args, err, tt.want)
		}
	}
}
