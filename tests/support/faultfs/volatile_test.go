//go:build linux

package faultfs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestPowerLossKeepsWhatWasSynced: with volatile writes, a power loss
// leaves each file as it was at its last fsync (content and size), keeps
// what was written with O_DSYNC or synced, and the next reader sees that
// even where the kernel had cached the lost content; until then the
// program reads back what it wrote.
func TestPowerLossKeepsWhatWasSynced(t *testing.T) {
	f := mount(t)
	f.SetVolatile(true)
	mnt := f.Mountpoint()
	path := func(name string) string { return filepath.Join(mnt, name) }
	synced := bytes.Repeat([]byte("a"), 10_000)

	// a: synced, then overwritten in the middle and appended to.
	a := openFile(t, path("a"), os.O_RDWR|os.O_CREATE)
	write(t, a, synced, 0)
	sync(t, a)
	write(t, a, bytes.Repeat([]byte("b"), 5000), 3000)
	write(t, a, []byte("tail"), 10_000)
	// b: written, never synced.
	b := openFile(t, path("b"), os.O_RDWR|os.O_CREATE)
	write(t, b, []byte("never synced"), 0)
	// c: written, then synced (fdatasync).
	c := openFile(t, path("c"), os.O_RDWR|os.O_CREATE)
	write(t, c, []byte("synced"), 0)
	if err := syscall.Fdatasync(int(c.Fd())); err != nil {
		t.Fatal(err)
	}
	// d: O_DSYNC, every write durable.
	d := openFile(t, path("d"), os.O_RDWR|os.O_CREATE|syscall.O_DSYNC)
	write(t, d, []byte("dsync"), 0)
	// e: synced, then truncated.
	e := openFile(t, path("e"), os.O_RDWR|os.O_CREATE)
	write(t, e, synced, 0)
	sync(t, e)
	if err := e.Truncate(100); err != nil {
		t.Fatal(err)
	}
	// log: unsynced, but kept by the caller's filter.
	lg := openFile(t, path("log"), os.O_RDWR|os.O_CREATE)
	write(t, lg, []byte("console line"), 0)

	// Read back before the power loss: the program sees its writes (and
	// the kernel caches them).
	wantA := slices.Concat(synced[:3000], bytes.Repeat([]byte("b"), 5000), synced[8000:], []byte("tail"))
	readIs(t, path("a"), wantA)
	readIs(t, path("b"), []byte("never synced"))
	readIs(t, path("e"), synced[:100])
	for _, fl := range []*os.File{a, b, c, d, e, lg} {
		fl.Close()
	}

	restored, err := f.PowerLoss(func(rel string) bool { return rel == "log" })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(restored)
	if want := []string{"a", "b", "e"}; !slices.Equal(restored, want) {
		t.Errorf("PowerLoss put back %v, want %v", restored, want)
	}
	readIs(t, path("a"), synced)
	readIs(t, path("b"), nil)
	readIs(t, path("c"), []byte("synced"))
	readIs(t, path("d"), []byte("dsync"))
	readIs(t, path("e"), synced)
	readIs(t, path("log"), []byte("console line"))
	if st := f.Stats(); st.PowerLosses != 1 || st.RestoredFiles != 3 {
		t.Errorf("stats %+v: want 1 power loss and 3 restored files", st)
	}

	// After the power loss, writes are volatile again from the new state.
	a = openFile(t, path("a"), os.O_RDWR)
	write(t, a, []byte("zz"), 0)
	a.Close()
	if _, err := f.PowerLoss(nil); err != nil {
		t.Fatal(err)
	}
	readIs(t, path("a"), synced)
}

// TestVolatileOffKeepsEverything: without SetVolatile (the default), a
// power loss changes nothing: every write counts as durable.
func TestVolatileOffKeepsEverything(t *testing.T) {
	f := mount(t)
	p := filepath.Join(f.Mountpoint(), "x")
	if err := os.WriteFile(p, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if restored, err := f.PowerLoss(nil); err != nil || len(restored) != 0 {
		t.Fatalf("PowerLoss = %v, %v; want nothing put back", restored, err)
	}
	readIs(t, p, []byte("kept"))
}

func openFile(t *testing.T, p string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func write(t *testing.T, f *os.File, b []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func sync(t *testing.T, f *os.File) {
	t.Helper()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func readIs(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s holds %d bytes %.40q..., want %d bytes %.40q...", filepath.Base(p), len(got), got, len(want), want)
	}
}
