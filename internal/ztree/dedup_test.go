package ztree

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func openCmd(ttl int64) *peerv1.Command {
	return &peerv1.Command{Op: &peerv1.Command_OpenSession{OpenSession: &peerv1.OpenSession{TtlMs: ttl, Name: "test"}}}
}

// TestDedupScope: a request id is remembered per client, and a remembered id
// answers only the request it was first used for.
func TestDedupScope(t *testing.T) {
	t.Run("two clients with the same request id both get their write applied", func(t *testing.T) {
		h := newHarness(t)
		for _, c := range []struct{ client, path string }{{"a", "/a"}, {"b", "/b"}, {"", "/anon"}} {
			m := h.one(withClientID(c.client, "r1", txn(create(c.path, c.client)))).GetTxn()
			if !m.GetSucceeded() || m.GetResults()[0].GetCreate().GetPath() != c.path {
				t.Fatalf("client %q: %v, want %s created", c.client, m, c.path)
			}
		}
		for _, p := range []string{"/a", "/b", "/anon"} {
			if _, _, err := h.tree.View().Get(p); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
		// Sessions too: each client's open opens its own session.
		o1 := h.one(withClientID("a", "r2", openCmd(1000))).GetOpenSession()
		o2 := h.one(withClientID("b", "r2", openCmd(1000))).GetOpenSession()
		if o1.GetSessionId() == 0 || o2.GetSessionId() == 0 || o1.GetSessionId() == o2.GetSessionId() {
			t.Errorf("sessions %v and %v, want two distinct sessions", o1, o2)
		}
	})

	t.Run("a client id is not a prefix of another scope", func(t *testing.T) {
		// ("ab", "c") and ("a", "bc") must not share a key.
		if bytes.Equal(dedupKey("ab", "c"), dedupKey("a", "bc")) {
			t.Fatal("keys collide")
		}
	})

	t.Run("same id, different request: InvalidArgument, nothing applied", func(t *testing.T) {
		h := newHarness(t)
		h.must(create("/n", "v0"))
		first := h.one(withClientID("a", "r", txn(set("/n", "v1"))))
		before := h.snapshot()
		for name, c := range map[string]*peerv1.Command{
			"set other data": txn(set("/n", "v2")),
			"delete":         txn(del("/n")),
			"create":         txn(create("/m", "")),
			"multi":          txn(set("/n", "v1"), create("/m", "")),
			"open session":   openCmd(1000),
			"close session":  closeSession(1),
		} {
			res, evs := h.apply(withClientID("a", "r", c))
			err := FromOpError(res[0].GetError())
			if !errors.Is(err, ErrInvalidArgument) || Code(err) != codes.InvalidArgument ||
				!strings.Contains(err.Error(), `request_id "r"`) || !strings.Contains(err.Error(), "different request") {
				t.Errorf("%s: %v, want InvalidArgument naming request_id", name, res[0])
			}
			if len(evs) != 0 {
				t.Errorf("%s: events %v", name, eventStrings(evs))
			}
		}
		// Nothing but the index and time moved: same nodes, same table.
		after := New()
		if err := after.Restore(bytes.NewReader(h.snapshot())); err != nil {
			t.Fatal(err)
		}
		ref := New()
		if err := ref.Restore(bytes.NewReader(before)); err != nil {
			t.Fatal(err)
		}
		if a, b := dumpNodes(after.View()), dumpNodes(ref.View()); a != b {
			t.Errorf("nodes changed:\n%s\nwas:\n%s", a, b)
		}
		if after.View().s.dedup.Len() != ref.View().s.dedup.Len() {
			t.Errorf("dedup table changed")
		}
		// The real retry still gets the first result.
		if again := h.one(withClientID("a", "r", txn(set("/n", "v1")))); !proto.Equal(again, first) {
			t.Errorf("retry: %v, want %v", again, first)
		}
	})

	t.Run("retried open answers the session while it lives, NotFound once it ended", func(t *testing.T) {
		h := newHarness(t)
		first := h.one(withClientID("a", "open", openCmd(1000))).GetOpenSession()
		if again := h.one(withClientID("a", "open", openCmd(1000))).GetOpenSession(); !proto.Equal(again, first) {
			t.Fatalf("retry while open: %v, want %v", again, first)
		}
		if res := h.one(closeSession(first.GetSessionId())); res.GetOk() == nil {
			t.Fatalf("close: %v", res)
		}
		res := h.one(withClientID("a", "open", openCmd(1000)))
		err := FromOpError(res.GetError())
		if !errors.Is(err, ErrSessionNotFound) || Code(err) != codes.NotFound || !strings.Contains(err.Error(), "opened by this request has ended") {
			t.Errorf("retry after close: %v, want NotFound", res)
		}
		if n := h.tree.View().SessionCount(); n != 0 {
			t.Errorf("%d sessions, want 0 (a retry must not open one)", n)
		}
		// Expiry ends it the same way.
		s2 := h.one(withClientID("a", "open2", openCmd(1000))).GetOpenSession().GetSessionId()
		h.one(expireSessions(s2))
		if res := h.one(withClientID("a", "open2", openCmd(1000))); Code(FromOpError(res.GetError())) != codes.NotFound {
			t.Errorf("retry after expiry: %v, want NotFound", res)
		}
	})

	t.Run("a close answered from the table changes nothing", func(t *testing.T) {
		h := newHarness(t)
		sid := h.openSession(1000)
		h.must(createEphemeral("/lock", sid))
		h.one(withClientID("a", "r", txn(create("/x", "")))) // r used for something else
		res := h.one(withClientID("a", "r", closeSession(sid)))
		if Code(FromOpError(res.GetError())) != codes.InvalidArgument {
			t.Errorf("close reusing an id: %v, want InvalidArgument", res)
		}
		if _, ok := h.tree.View().Session(sid); !ok {
			t.Error("session gone")
		}
		if _, _, err := h.tree.View().Get("/lock"); err != nil {
			t.Errorf("ephemeral: %v", err)
		}
	})
}

// TestDedupSnapshot: client scopes and fingerprints survive a snapshot, and
// a snapshot written before they existed still restores.
func TestDedupSnapshot(t *testing.T) {
	h := newHarness(t)
	h.must(create("/n", ""))
	first := h.one(withClientID("a", "r", txn(set("/n", "a"))))
	h.one(withClientID("b", "r", txn(set("/n", "b"))))

	tr := New()
	if err := tr.Restore(bytes.NewReader(h.snapshot())); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, tr.View()), h.snapshot()) {
		t.Fatal("round trip changed the snapshot")
	}
	if err := checkInvariants(tr.View().s); err != nil {
		t.Fatal(err)
	}
	h2 := &harness{t: t, tree: tr, index: h.index, timeMs: h.timeMs}
	if again := h2.one(withClientID("a", "r", txn(set("/n", "a")))); !proto.Equal(again, first) {
		t.Errorf("retry after restore: %v, want %v", again, first)
	}
	if res := h2.one(withClientID("a", "r", txn(set("/n", "x")))); Code(FromOpError(res.GetError())) != codes.InvalidArgument {
		t.Errorf("different request after restore: %v, want InvalidArgument", res)
	}

	t.Run("older snapshot without client ids and fingerprints", func(t *testing.T) {
		var buf bytes.Buffer
		result := &peerv1.CommandResult{Result: &peerv1.CommandResult_Ok{Ok: &peerv1.Empty{}}}
		for _, m := range []proto.Message{
			&peerv1.SnapshotHeader{Format: snapshotFormat, Index: 5, TimeMs: h.timeMs},
			&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Node{Node: &peerv1.SnapshotNode{Path: "/", Stat: &colonyv1.Stat{}}}},
			&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Dedup{Dedup: &peerv1.SnapshotDedup{RequestId: "old", TimeMs: h.timeMs, Index: 5, Result: result}}},
			&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_End{End: true}},
		} {
			if _, err := protodelim.MarshalTo(&buf, m); err != nil {
				t.Fatal(err)
			}
		}
		old := New()
		if err := old.Restore(&buf); err != nil {
			t.Fatalf("restore: %v", err)
		}
		e, ok := old.View().s.dedup.Get("", "old")
		if !ok || e.clientID != "" || e.fingerprint != nil {
			t.Fatalf("entry %+v, %v: want it in the anonymous scope without fingerprint", e, ok)
		}
		// A command logged before fingerprints (none) is still its retry.
		ho := &harness{t: t, tree: old, index: 5, timeMs: h.timeMs}
		if res := ho.one(&peerv1.Command{RequestId: "old", Op: &peerv1.Command_Noop{Noop: &peerv1.Noop{}}}); res.GetOk() == nil {
			t.Errorf("legacy retry: %v", res)
		}
	})
}

func TestFingerprint(t *testing.T) {
	a := txn(set("/n", "a"))
	fa := Fingerprint(a)
	// Request id, time, client id and an existing fingerprint do not count.
	b := proto.CloneOf(a)
	b.RequestId, b.TimeMs, b.ClientId, b.Fingerprint = "x", 42, "c", []byte("junk")
	if !bytes.Equal(Fingerprint(b), fa) {
		t.Error("fingerprint depends on request id, time, client id or fingerprint")
	}
	for name, c := range map[string]*peerv1.Command{
		"other data":   txn(set("/n", "b")),
		"other path":   txn(set("/m", "a")),
		"two ops":      txn(set("/n", "a"), set("/n", "a")),
		"open session": openCmd(1000),
		"noop":         noop(),
	} {
		if bytes.Equal(Fingerprint(c), fa) {
			t.Errorf("%s: same fingerprint", name)
		}
	}
}
