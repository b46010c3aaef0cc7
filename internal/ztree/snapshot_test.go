package ztree

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// richHarness builds a tree using every kind of state: nodes of every kind,
// sessions with ephemerals, dedup entries and members.
func richHarness(t testing.TB) *harness {
	h := newHarness(t)
	s1 := h.openSession(10_000)
	s2 := h.openSession(20_000)
	h.openSession(30_000) // no ephemerals
	h.must(create("/colony", "root"), create("/colony/services", ""),
		createEphemeral("/colony/services/b", s1), createEphemeral("/colony/services/a", s2),
		createTTL("/ttl", 5000), createKind("/box", colonyv1.NodeKind_NODE_KIND_CONTAINER),
		create("/box/x", "x"), createSeq("/colony/seq-"))
	h.must(del("/box/x"), set("/colony", "v2"))
	h.one(withID("req-1", txn(createSeq("/colony/seq-"))))
	h.one(withID("req-2", closeSession(999)))
	h.apply(&peerv1.Command{Op: &peerv1.Command_RegisterMember{RegisterMember: &peerv1.RegisterMember{Id: "n1", RaftAddress: "r1", GrpcAddress: "g1", NonvoterOnly: true}}})
	return h
}

func TestSnapshotRoundTrip(t *testing.T) {
	h := richHarness(t)
	src := h.tree.View()
	data := snapshotBytes(t, src)

	dst := New()
	if err := dst.Restore(bytes.NewReader(data)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	got := dst.View()

	t.Run("same bytes", func(t *testing.T) {
		if again := snapshotBytes(t, got); !bytes.Equal(again, data) {
			t.Error("snapshot of the restored tree differs")
		}
	})
	t.Run("same reads", func(t *testing.T) {
		if got.Index() != src.Index() || got.TimeMs() != src.TimeMs() {
			t.Errorf("index/time %d/%d, want %d/%d", got.Index(), got.TimeMs(), src.Index(), src.TimeMs())
		}
		if a, b := dumpNodes(got), dumpNodes(src); a != b {
			t.Errorf("nodes:\n%s\nwant:\n%s", a, b)
		}
		if !equalProtos(got.Sessions(), src.Sessions()) {
			t.Errorf("sessions %v, want %v", got.Sessions(), src.Sessions())
		}
		if !equalProtos(got.Members(), src.Members()) {
			t.Errorf("members %v", got.Members())
		}
		later := src.TimeMs() + 10_000
		if !equalProtos(got.ReapCandidates(later, 0), src.ReapCandidates(later, 0)) || len(src.ReapCandidates(later, 0)) != 2 {
			t.Errorf("reap candidates %v, want %v", got.ReapCandidates(later, 0), src.ReapCandidates(later, 0))
		}
		if err := checkInvariants(got.s); err != nil {
			t.Error(err)
		}
	})
	t.Run("same future", func(t *testing.T) {
		// The rebuilt indexes behave like the originals: closing a session,
		// reaping, a deduplicated retry.
		h2 := &harness{t: t, tree: dst, index: h.index, timeMs: h.timeMs}
		h.timeMs += 10_000
		h2.timeMs = h.timeMs
		next := func() []*peerv1.Command {
			return []*peerv1.Command{
				closeSession(1),
				reap(src.ReapCandidates(h.timeMs, 0)...),
				withID("req-1", txn(createSeq("/colony/seq-"))),
				txn(createSeq("/colony/seq-")),
			}
		}
		r1, e1 := h.apply(next()...)
		r2, e2 := h2.apply(next()...)
		if !equalProtos(r1, r2) || !equalProtos(e1, e2) {
			t.Errorf("results or events differ:\n%v\n%v", r1, r2)
		}
		if len(e1) != 8 { // 1 ephemeral, 2 reaped, 1 create: 2 events each
			t.Errorf("%d events: %v", len(e1), eventStrings(e1))
		}
		if !bytes.Equal(h.snapshot(), h2.snapshot()) {
			t.Error("snapshots differ after the same commands")
		}
	})
}

func TestRestoreKeepsHeldView(t *testing.T) {
	h := richHarness(t)
	held := h.tree.View()
	before := snapshotBytes(t, held)

	other := newHarness(t)
	other.must(create("/other", ""))
	if err := h.tree.Restore(bytes.NewReader(other.snapshot())); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, held), before) {
		t.Error("held view changed")
	}
	if _, _, err := held.Get("/colony"); err != nil {
		t.Errorf("held view: %v", err)
	}
	if _, _, err := h.tree.View().Get("/colony"); !errors.Is(err, ErrNoNode) {
		t.Errorf("new view still sees the old tree: %v", err)
	}
	if h.tree.View().Index() != 1 {
		t.Errorf("index %d, want 1", h.tree.View().Index())
	}
}

// records encodes a header and records as a snapshot stream.
func records(hdr *peerv1.SnapshotHeader, recs ...*peerv1.SnapshotRecord) []byte {
	var buf bytes.Buffer
	protodelim.MarshalTo(&buf, hdr)
	for _, r := range recs {
		protodelim.MarshalTo(&buf, r)
	}
	return buf.Bytes()
}

func nodeRec(path string, st *colonyv1.Stat, data string) *peerv1.SnapshotRecord {
	return &peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Node{Node: &peerv1.SnapshotNode{Path: path, Stat: st, Data: []byte(data)}}}
}

func sessionRec(id uint64) *peerv1.SnapshotRecord {
	return &peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Session{Session: &peerv1.SnapshotSession{SessionId: id, TtlMs: 1}}}
}

var endRec = &peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_End{End: true}}

func TestRestoreErrors(t *testing.T) {
	hdr := &peerv1.SnapshotHeader{Format: 1, Index: 10, TimeMs: 5}
	root := func(children int32) *peerv1.SnapshotRecord {
		return nodeRec("/", &colonyv1.Stat{NumChildren: children}, "")
	}
	valid := records(hdr, root(1), nodeRec("/a", &colonyv1.Stat{Czxid: 3}, ""), endRec)
	eph := &colonyv1.Stat{Czxid: 3, Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL, EphemeralOwner: 2}
	dedup := &peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Dedup{Dedup: &peerv1.SnapshotDedup{RequestId: "r", Result: &peerv1.CommandResult{}}}}

	// The valid base restores fine.
	if err := New().Restore(bytes.NewReader(valid)); err != nil {
		t.Fatalf("valid snapshot: %v", err)
	}

	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"garbage", []byte("this is not a snapshot at all")},
		{"random bytes", func() []byte {
			b := make([]byte, 4096)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}()},
		{"unknown format", records(&peerv1.SnapshotHeader{Format: 2}, root(0), endRec)},
		{"header only", records(hdr)},
		{"truncated", valid[:len(valid)-3]},
		{"no end", valid[:len(valid)-len(records(&peerv1.SnapshotHeader{}, endRec))]},
		{"end false", records(hdr, root(0), &peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_End{End: false}})},
		{"empty record", records(hdr, root(0), &peerv1.SnapshotRecord{}, endRec)},
		{"no root", records(hdr, endRec)},
		{"root with czxid", records(hdr, nodeRec("/", &colonyv1.Stat{Czxid: 1}, ""), endRec)},
		{"no stat", records(hdr, nodeRec("/", nil, ""), endRec)},
		{"bad path", records(hdr, root(1), nodeRec("/a/", &colonyv1.Stat{}, ""), endRec)},
		{"duplicate node", records(hdr, root(1), nodeRec("/a", &colonyv1.Stat{}, ""), nodeRec("/a", &colonyv1.Stat{}, ""), endRec)},
		{"missing parent", records(hdr, root(0), nodeRec("/a/b", &colonyv1.Stat{}, ""), endRec)},
		{"num_children mismatch", records(hdr, root(2), nodeRec("/a", &colonyv1.Stat{}, ""), endRec)},
		{"data_length mismatch", records(hdr, root(1), nodeRec("/a", &colonyv1.Stat{DataLength: 2}, "x"), endRec)},
		{"zxid above index", records(hdr, root(1), nodeRec("/a", &colonyv1.Stat{Mzxid: 11}, ""), endRec)},
		{"unknown kind", records(hdr, root(1), nodeRec("/a", &colonyv1.Stat{Kind: 9}, ""), endRec)},
		{"ttl without ttl_ms", records(hdr, root(1), nodeRec("/a", &colonyv1.Stat{Kind: colonyv1.NodeKind_NODE_KIND_TTL}, ""), endRec)},
		{"owner on persistent", records(hdr, root(1), nodeRec("/a", &colonyv1.Stat{EphemeralOwner: 2}, ""), sessionRec(2), endRec)},
		{"ephemeral without session", records(hdr, root(1), nodeRec("/e", eph, ""), endRec)},
		{"child of ephemeral", records(hdr, root(1), nodeRec("/e", &colonyv1.Stat{Kind: eph.Kind, EphemeralOwner: 2, NumChildren: 1}, ""), nodeRec("/e/x", &colonyv1.Stat{}, ""), sessionRec(2), endRec)},
		{"session above index", records(hdr, root(0), sessionRec(11), endRec)},
		{"session zero", records(hdr, root(0), sessionRec(0), endRec)},
		{"duplicate session", records(hdr, root(0), sessionRec(2), sessionRec(2), endRec)},
		{"duplicate dedup", records(hdr, root(0), dedup, dedup, endRec)},
		{"dedup without result", records(hdr, root(0), &peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Dedup{Dedup: &peerv1.SnapshotDedup{RequestId: "r"}}}, endRec)},
		{"member without id", records(hdr, root(0), &peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Member{Member: &peerv1.RegisterMember{}}}, endRec)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := richHarness(t)
			view := h.tree.View()
			before := h.snapshot()
			err := h.tree.Restore(bytes.NewReader(tt.in))
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("Restore = %v, want ErrBadSnapshot", err)
			}
			t.Log(err)
			if h.tree.View().s != view.s || !bytes.Equal(h.snapshot(), before) {
				t.Error("state changed by a failed restore")
			}
		})
	}

	t.Run("read error", func(t *testing.T) {
		h := richHarness(t)
		before := h.snapshot()
		boom := errors.New("disk on fire")
		r := io.MultiReader(bytes.NewReader(valid[:20]), iotest.ErrReader(boom))
		if err := h.tree.Restore(r); !errors.Is(err, boom) {
			t.Fatalf("Restore = %v, want it to wrap the read error", err)
		}
		if !bytes.Equal(h.snapshot(), before) {
			t.Error("state changed by a failed restore")
		}
	})
}

func TestWriteSnapshotError(t *testing.T) {
	h := richHarness(t)
	boom := errors.New("full")
	if err := h.tree.View().WriteSnapshot(failWriter{boom}); !errors.Is(err, boom) {
		t.Errorf("WriteSnapshot = %v", err)
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

// TestDeterminism applies the same generated commands to two trees, in
// different batches, and expects identical results, events and snapshots.
func TestDeterminism(t *testing.T) {
	reused := 0   // request ids reused for a different request, over all seeds
	notOwned := 0 // closes and ephemeral creates refused to another identity
	defer func() {
		if reused < 10 { // the fixed seeds give 15
			t.Errorf("only %d request ids reused for a different request: the generator does not exercise the check", reused)
		}
		if notOwned < 10 {
			t.Errorf("only %d commands refused a session of another identity: the generator does not exercise the check", notOwned)
		}
		t.Logf("%d request ids reused, %d session uses refused", reused, notOwned)
	}()
	for seed := range uint64(20) {
		t.Run("seed"+string(rune('A'+seed)), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			b := make([]byte, 8000)
			for i := range b {
				b[i] = byte(r.Uint32())
			}

			// Generate against a reference tree, one entry at a time.
			ref := New()
			ref.dedupMax = 8
			g := newGen(b)
			var entries []Entry
			for idx := uint64(1); g.more(); idx++ {
				var c *peerv1.Command
				if g.pick(10) != 0 { // some entries carry no command
					c = g.next(ref.View())
				}
				e := Entry{Index: idx, Cmd: c}
				ref.Apply([]Entry{e})
				entries = append(entries, e)
			}

			apply := func(batch func() int) ([]*peerv1.CommandResult, []*colonyv1.Event, *Tree) {
				tr := New()
				tr.dedupMax = 8
				var res []*peerv1.CommandResult
				var evs []*colonyv1.Event
				for i := 0; i < len(entries); {
					n := min(batch(), len(entries)-i)
					r, e := tr.Apply(entries[i : i+n])
					res, evs = append(res, r...), append(evs, e...)
					i += n
					if err := checkInvariants(tr.View().s); err != nil {
						t.Fatalf("after entry %d: %v", i, err)
					}
				}
				return res, evs, tr
			}
			r1, e1, t1 := apply(func() int { return 1 })
			r2, e2, t2 := apply(func() int { return 1 + r.IntN(16) })
			if !equalProtos(r1, r2) {
				t.Error("results differ")
			}
			if !equalProtos(e1, e2) {
				t.Error("events differ")
			}
			s1, s2 := snapshotBytes(t, t1.View()), snapshotBytes(t, t2.View())
			if !bytes.Equal(s1, s2) || !bytes.Equal(s1, snapshotBytes(t, ref.View())) {
				t.Error("snapshots differ")
			}
			for i := 1; i < len(e1); i++ {
				if e1[i].GetZxid() < e1[i-1].GetZxid() {
					t.Fatalf("events out of zxid order at %d", i)
				}
			}
			// Make sure the generator exercises the tree, and request ids
			// reused for different requests (refused alike everywhere).
			if len(e1) < 50 {
				t.Errorf("only %d events from %d entries", len(e1), len(entries))
			}
			for _, r := range r1 {
				if strings.Contains(r.GetError().GetMessage(), "already used by this client") {
					reused++
				}
				if errors.Is(FromOpError(r.GetError()), ErrSessionNotOwned) {
					notOwned++
				}
				for _, or := range r.GetTxn().GetResults() {
					if errors.Is(FromOpError(or.GetError()), ErrSessionNotOwned) {
						notOwned++
					}
				}
			}
		})
	}
}

func FuzzApply(f *testing.F) {
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 7))
		b := make([]byte, 200)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	raw, _ := proto.Marshal(txn(create("/a", "x"), createSeq("/a/s"), del("/a")))
	f.Add(raw)
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		tr := New()
		tr.dedupMax = 4
		idx := uint64(1)
		// The input as a raw (possibly malformed) log entry.
		var cmd peerv1.Command
		if proto.Unmarshal(data, &cmd) == nil {
			tr.Apply([]Entry{{Index: idx, Cmd: &cmd}})
		}
		// The input as a command sequence, applied in small batches. Long
		// inputs add little but time (invariant checks are O(tree)).
		g := newGen(data[:min(len(data), 4096)])
		for g.more() {
			batch := make([]Entry, 1+g.pick(3))
			for i := range batch {
				idx++
				batch[i] = Entry{Index: idx, Cmd: g.next(tr.View())}
			}
			tr.Apply(batch)
			if err := checkInvariants(tr.View().s); err != nil {
				t.Fatal(err)
			}
		}
		// Every reachable state survives a snapshot round trip.
		snap := snapshotBytes(t, tr.View())
		back := New()
		if err := back.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if !bytes.Equal(snapshotBytes(t, back.View()), snap) {
			t.Fatal("snapshot round trip differs")
		}
	})
}
