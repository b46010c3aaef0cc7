//go:build linux

package faultfs_test

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/colonymesh/colony/tests/support/faultfs"
)

// Every serve loop must have ended when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mount mounts a faultfs of a fresh backing dir for the test, and unmounts
// it when the test ends, failed or not. It skips the test where FUSE cannot
// be mounted.
func mount(t *testing.T) *faultfs.FS {
	t.Helper()
	base := t.TempDir() // removed after the unmount below: cleanups run last-in first-out
	backing, mnt := filepath.Join(base, "backing"), filepath.Join(base, "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := faultfs.Mount(backing, mnt, faultfs.WithSeed(1))
	if errors.Is(err, faultfs.ErrUnavailable) {
		t.Skipf("FUSE is not available here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		if mounted(t, mnt) {
			t.Errorf("%s is still mounted", mnt)
		}
	})
	return f
}

// mounted reports whether dir is a mount point in this process's namespace.
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer mi.Close()
	s := bufio.NewScanner(mi)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}

// writeSynced creates name under dir with data, fsyncs it and returns how
// long the fsync took.
func writeSynced(t *testing.T, dir, name, data string) time.Duration {
	t.Helper()
	fh, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString(data); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := fh.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	took := time.Since(start)
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	return took
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDataLandsInBackingDirAndSurvivesUnmount(t *testing.T) {
	f := mount(t)
	if err := os.MkdirAll(filepath.Join(f.Mountpoint(), "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeSynced(t, f.Mountpoint(), "a/b/plain", "no latency")
	f.SetLatency(20*time.Millisecond, time.Millisecond, 5*time.Millisecond)
	writeSynced(t, f.Mountpoint(), "a/b/slow", "with latency")
	// A rename and a directory fsync, as raft's snapshot store does them.
	if err := os.Rename(filepath.Join(f.Mountpoint(), "a/b/slow"), filepath.Join(f.Mountpoint(), "a/slow")); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(filepath.Join(f.Mountpoint(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Errorf("fsync of a directory: %v", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil || strings.Join(names, ",") != "b,slow" && strings.Join(names, ",") != "slow,b" {
		t.Errorf("readdir through the mount = %v, %v; want b and slow", names, err)
	}

	want := map[string]string{"a/b/plain": "no latency", "a/slow": "with latency"}
	for name, data := range want {
		if got := readFile(t, filepath.Join(f.BackingDir(), name)); got != data {
			t.Errorf("backing %s = %q, want %q", name, got, data)
		}
	}
	st := f.Stats()
	if st.Fsyncs < 3 || st.DelayedFsyncs < 2 || st.Writes < 2 {
		t.Errorf("stats %+v: want at least 3 fsyncs, 2 of them delayed, and 2 writes", st)
	}

	if err := f.Unmount(); err != nil {
		t.Fatal(err)
	}
	if mounted(t, f.Mountpoint()) {
		t.Fatal("still mounted after Unmount")
	}
	for name, data := range want {
		if got := readFile(t, filepath.Join(f.BackingDir(), name)); got != data {
			t.Errorf("after unmount: backing %s = %q, want %q", name, got, data)
		}
	}
	// Mounted again, the same data shows through.
	g, err := faultfs.Mount(f.BackingDir(), f.Mountpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Unmount()
	for name, data := range want {
		if got := readFile(t, filepath.Join(g.Mountpoint(), name)); got != data {
			t.Errorf("mounted again: %s = %q, want %q", name, got, data)
		}
	}
}

// The injected latency is a lower bound on how long the caller waits.
func TestLatencyIsObservable(t *testing.T) {
	f := mount(t)
	const fsyncDelay, writeDelay = 150 * time.Millisecond, 60 * time.Millisecond
	tests := []struct {
		name               string
		fsync, write, jitt time.Duration
	}{
		{"fsync", fsyncDelay, 0, 0},
		{"fsync with jitter", fsyncDelay, 0, 50 * time.Millisecond},
		{"write", 0, writeDelay, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.SetLatency(tt.fsync, tt.write, tt.jitt)
			defer f.SetLatency(0, 0, 0)
			name := "f" + string(rune('a'+i))
			fh, err := os.Create(filepath.Join(f.Mountpoint(), name))
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			start := time.Now()
			if _, err := fh.WriteString("payload"); err != nil {
				t.Fatal(err)
			}
			wrote := time.Since(start)
			start = time.Now()
			if err := fh.Sync(); err != nil {
				t.Fatal(err)
			}
			synced := time.Since(start)
			if wrote < tt.write {
				t.Errorf("write took %v, injected %v", wrote, tt.write)
			}
			if synced < tt.fsync {
				t.Errorf("fsync took %v, injected %v", synced, tt.fsync)
			}
			if got := readFile(t, filepath.Join(f.BackingDir(), name)); got != "payload" {
				t.Errorf("backing file = %q", got)
			}
		})
	}
}

func TestStallHoldsFsyncUntilRelease(t *testing.T) {
	f := mount(t)
	fh, err := os.Create(filepath.Join(f.Mountpoint(), "held"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString("x"); err != nil {
		t.Fatal(err)
	}
	f.Stall()
	done := make(chan error, 1)
	go func() { done <- fh.Sync() }()
	// Wait until the fsync is held (a state, not a time).
	for f.Stats().WaitingFsyncs == 0 {
		select {
		case err := <-done:
			t.Fatalf("fsync returned (%v) during a stall", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Other operations go on while the fsync is held.
	if err := os.WriteFile(filepath.Join(f.Mountpoint(), "other"), []byte("y"), 0o644); err != nil {
		t.Errorf("writing another file during the stall: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("fsync returned (%v) during a stall", err)
	default:
	}
	f.Release()
	if err := <-done; err != nil {
		t.Errorf("fsync after Release: %v", err)
	}
	if st := f.Stats(); st.StalledFsyncs != 1 || st.WaitingFsyncs != 0 {
		t.Errorf("stats %+v: want 1 stalled fsync, none waiting", st)
	}
}

func TestFsyncError(t *testing.T) {
	f := mount(t)
	fh, err := os.Create(filepath.Join(f.Mountpoint(), "eio"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f.SetFsyncError(syscall.EIO)
	if err := fh.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync = %v, want EIO", err)
	}
	f.SetFsyncError(0)
	if err := fh.Sync(); err != nil {
		t.Errorf("fsync after the error was cleared: %v", err)
	}
}

// Unmount ends a stall, and detaches a busy mount lazily: it leaves the
// mount table at once and serves the open file until it is closed.
func TestUnmountWhileStalledAndBusy(t *testing.T) {
	f := mount(t)
	fh, err := os.Create(filepath.Join(f.Mountpoint(), "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f.Stall()
	synced := make(chan error, 1)
	go func() { synced <- fh.Sync() }()
	for f.Stats().WaitingFsyncs == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	unmounted := make(chan error, 1)
	go func() { unmounted <- f.Unmount() }()
	if err := <-synced; err != nil {
		t.Errorf("a stalled fsync at unmount: %v", err)
	}
	for mounted(t, f.Mountpoint()) {
		select {
		case err := <-unmounted:
			t.Fatalf("Unmount returned %v with the mount still in the table", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Detached, but the open file still works.
	if _, err := fh.WriteString("after detach"); err != nil {
		t.Errorf("writing an open file after a lazy unmount: %v", err)
	}
	fh.Close()
	if err := <-unmounted; err != nil {
		t.Errorf("Unmount: %v", err)
	}
	if got := readFile(t, filepath.Join(f.BackingDir(), "open")); got != "after detach" {
		t.Errorf("backing file = %q", got)
	}
}
