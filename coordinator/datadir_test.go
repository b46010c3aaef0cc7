package coordinator

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDataDirInUse: a second node on a data dir a running node holds fails
// at once, saying so, and the first keeps its lock until it closes.
func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, "n1", dir)
	cfg.Bootstrap = true
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg)
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), dir) ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second node on %s: %v; want ErrDataDirInUse naming the dir and the holder's pid", dir, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := New(cfg)
	if err != nil {
		t.Fatalf("restart after Close: %v", err)
	}
	again.Close()
}

// TestFailedStartRemovesTheDirsItMade: a start that fails (here: the gRPC
// port is taken) leaves no empty data dir or snapshots dir behind, and
// leaves a data dir that existed before.
func TestFailedStartRemovesTheDirsItMade(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	parent := t.TempDir()
	dir := filepath.Join(parent, "a", "node")
	cfg := testConfig(t, "n1", dir)
	cfg.GRPCAddr = busy.Addr().String()
	if _, err := New(cfg); err == nil {
		t.Fatal("started on a taken port")
	}
	if _, err := os.Stat(filepath.Join(parent, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed start left %s behind (stat: %v)", filepath.Join(parent, "a"), err)
	}

	existing := t.TempDir()
	cfg.DataDir = existing
	if _, err := New(cfg); err == nil {
		t.Fatal("started on a taken port")
	}
	if _, err := os.Stat(existing); err != nil {
		t.Errorf("failed start removed a data dir that existed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(existing, "snapshots")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed start left an empty snapshots dir (stat: %v)", err)
	}
}
