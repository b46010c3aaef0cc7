package ztree

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
)

// populatedTree returns a tree with nodes of every kind, sessions and
// remembered request ids, built by the command generator from seed.
func populatedTree(t testing.TB, seed uint64) *Tree {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 11))
	b := make([]byte, 6000)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	tr := New()
	g := newGen(b)
	idx := uint64(0)
	for g.more() {
		idx++
		tr.Apply([]Entry{{Index: idx, Cmd: g.next(tr.View())}})
	}
	if tr.View().s.nodes.Len() < 5 {
		t.Fatalf("seed %d: generator built only %d nodes", seed, tr.View().s.nodes.Len())
	}
	return tr
}

// baseSnapshot is the state every restore is attempted over.
var (
	baseOnce     sync.Once
	baseSnapshot []byte
)

// restoreOrUnchanged restores data into a populated tree and checks the
// contract: either a consistent state that survives its own round trip, or
// an error matching ErrBadSnapshot and the tree exactly as before.
func restoreOrUnchanged(t *testing.T, data []byte) error {
	baseOnce.Do(func() { baseSnapshot = snapshotBytes(t, populatedTree(t, 1).View()) })
	tr := New()
	if err := tr.Restore(bytes.NewReader(baseSnapshot)); err != nil {
		t.Fatalf("restoring the base state: %v", err)
	}
	before := baseSnapshot
	err := tr.Restore(bytes.NewReader(data))
	if err != nil {
		if !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("restore error %v does not match ErrBadSnapshot", err)
		}
		if !bytes.Equal(snapshotBytes(t, tr.View()), before) {
			t.Fatal("a failed restore changed the tree (half-restored)")
		}
		return err
	}
	if err := checkInvariants(tr.View().s); err != nil {
		t.Fatalf("restored state is inconsistent: %v", err)
	}
	again := snapshotBytes(t, tr.View())
	back := New()
	if err := back.Restore(bytes.NewReader(again)); err != nil {
		t.Fatalf("a restored state's own snapshot does not restore: %v", err)
	}
	if !bytes.Equal(snapshotBytes(t, back.View()), again) {
		t.Fatal("snapshot round trip of a restored state differs")
	}
	return nil
}

// TestRestoreTruncated cuts a snapshot at every byte: every prefix short of
// the end record is refused, and leaves the tree as it was.
func TestRestoreTruncated(t *testing.T) {
	snap := snapshotBytes(t, populatedTree(t, 2).View())
	for n := 0; n < len(snap); n += max(1, len(snap)/500) {
		if err := restoreOrUnchanged(t, snap[:n]); err == nil {
			t.Fatalf("a snapshot truncated to %d of %d bytes restored", n, len(snap))
		}
	}
	if err := restoreOrUnchanged(t, snap); err != nil {
		t.Fatalf("the whole snapshot: %v", err)
	}
}

// FuzzRestore feeds Restore truncated, corrupted and arbitrary snapshots.
func FuzzRestore(f *testing.F) {
	for seed := range uint64(3) {
		snap := snapshotBytes(f, populatedTree(f, seed).View())
		f.Add(snap)
		f.Add(snap[:len(snap)/2])
		flipped := bytes.Clone(snap)
		flipped[len(flipped)/3] ^= 0x40
		f.Add(flipped)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		restoreOrUnchanged(t, data)
	})
}
