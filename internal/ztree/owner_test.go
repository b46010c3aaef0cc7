package ztree

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/colonymesh/colony/contract"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

const (
	alice = "spiffe://colony.local/client/alice"
	bob   = "spiffe://colony.local/client/bob"
)

// as sets the identity a command is applied for, as the receiving node does.
func as(owner string, c *peerv1.Command) *peerv1.Command {
	c.Owner = owner
	return c
}

// openSessionAs opens a session for owner and returns its id.
func (h *harness) openSessionAs(owner string) uint64 {
	h.t.Helper()
	res := h.one(as(owner, openCmd(10_000)))
	if res.GetOpenSession() == nil {
		h.t.Fatalf("open session as %q: %v", owner, res)
	}
	return res.GetOpenSession().GetSessionId()
}

// TestSessionOwner: a session belongs to the identity that opened it. The
// state machine itself refuses another identity's close or ephemeral
// create, whichever node proposed the command, and changes nothing; the
// nodes' own commands (expiry) and sessions without an owner are as before.
func TestSessionOwner(t *testing.T) {
	notOwned := func(t *testing.T, oe *colonyv1.OpError, what string) {
		t.Helper()
		err := FromOpError(oe)
		if !errors.Is(err, ErrSessionNotOwned) || codes.Code(oe.GetCode()) != codes.PermissionDenied ||
			oe.GetReason() != contract.ReasonSessionNotOwned || !strings.Contains(oe.GetMessage(), what) {
			t.Errorf("error %v, want PermissionDenied %s naming %q", oe, contract.ReasonSessionNotOwned, what)
		}
	}

	// setup: alice's session with /svc/a in it.
	setup := func(t *testing.T) (*harness, uint64) {
		h := newHarness(t)
		s := h.openSessionAs(alice)
		if owner, ok := h.tree.View().SessionOwner(s); !ok || owner != alice {
			t.Fatalf("SessionOwner = %q, %v; want %q", owner, ok, alice)
		}
		if res := h.one(as(alice, txn(create("/svc", ""), createEphemeral("/svc/a", s)))); !res.GetTxn().GetSucceeded() {
			t.Fatalf("alice's ephemeral: %v", res)
		}
		return h, s
	}

	for _, who := range []struct{ name, id string }{{"other identity", bob}, {"no identity", ""}} {
		t.Run(who.name+" cannot close", func(t *testing.T) {
			h, s := setup(t)
			before := h.snapshot()
			res, evs := h.apply(as(who.id, closeSession(s)))
			notOwned(t, res[0].GetError(), "close")
			if len(evs) != 0 {
				t.Errorf("events %v", eventStrings(evs))
			}
			h2 := h.tree.View()
			if _, ok := h2.Session(s); !ok {
				t.Error("session closed")
			}
			if _, _, err := h2.Get("/svc/a"); err != nil {
				t.Errorf("alice's ephemeral: %v", err)
			}
			if after := h.snapshot(); !bytes.Equal(stripHeader(t, before), stripHeader(t, after)) {
				t.Error("state changed")
			}
		})
		t.Run(who.name+" cannot create an ephemeral", func(t *testing.T) {
			h, s := setup(t)
			// In a multi with an allowed op first: all or nothing.
			res, evs := h.apply(as(who.id, txn(create("/other", "x"), createEphemeral("/svc/b", s))))
			m := res[0].GetTxn()
			if m.GetSucceeded() || m.GetFailedOp() != 1 {
				t.Fatalf("multi %v, want op 1 failed", res[0])
			}
			notOwned(t, m.GetResults()[1].GetError(), "/svc/b")
			if len(evs) != 0 {
				t.Errorf("events %v", eventStrings(evs))
			}
			for _, p := range []string{"/other", "/svc/b"} {
				if _, _, err := h.tree.View().Get(p); !errors.Is(err, ErrNoNode) {
					t.Errorf("%s written: %v", p, err)
				}
			}
			if info, _ := h.tree.View().Session(s); info.GetEphemerals() != 1 {
				t.Errorf("ephemerals %d, want 1", info.GetEphemerals())
			}
		})
	}

	t.Run("owner may", func(t *testing.T) {
		h, s := setup(t)
		if res := h.one(as(alice, txn(createEphemeral("/svc/b", s)))); !res.GetTxn().GetSucceeded() {
			t.Fatalf("create: %v", res)
		}
		res, evs := h.apply(as(alice, closeSession(s)))
		if res[0].GetOk() == nil || len(evs) != 4 {
			t.Fatalf("close: %v, events %v", res[0], eventStrings(evs))
		}
		if _, ok := h.tree.View().SessionOwner(s); ok {
			t.Error("session still open")
		}
	})

	t.Run("the nodes' expiry ends any session", func(t *testing.T) {
		h, s := setup(t)
		if res, evs := h.apply(expireSessions(s)); res[0].GetOk() == nil || len(evs) != 2 {
			t.Fatalf("expire: %v, events %v", res[0], eventStrings(evs))
		}
		if _, ok := h.tree.View().Session(s); ok {
			t.Error("session still open")
		}
	})

	t.Run("a session without owner is anyone's", func(t *testing.T) {
		h := newHarness(t)
		s := h.openSessionAs("")
		if owner, ok := h.tree.View().SessionOwner(s); !ok || owner != "" {
			t.Fatalf("SessionOwner = %q, %v", owner, ok)
		}
		if res := h.one(as(bob, txn(createEphemeral("/b", s)))); !res.GetTxn().GetSucceeded() {
			t.Fatalf("create: %v", res)
		}
		if res := h.one(as(alice, closeSession(s))); res.GetOk() == nil {
			t.Fatalf("close: %v", res)
		}
	})

	t.Run("unknown session is still NotFound", func(t *testing.T) {
		h := newHarness(t)
		if res := h.one(as(bob, closeSession(42))); !errors.Is(FromOpError(res.GetError()), ErrSessionNotFound) {
			t.Errorf("close: %v", res)
		}
	})

	t.Run("owner is not part of the fingerprint", func(t *testing.T) {
		a, b := as(alice, closeSession(1)), as(bob, closeSession(1))
		if !bytes.Equal(Fingerprint(a), Fingerprint(b)) {
			t.Error("fingerprints differ by owner")
		}
	})
}

// TestSnapshotSessionOwner: owners survive a snapshot round trip, and a
// snapshot written before owners existed restores sessions without one.
func TestSnapshotSessionOwner(t *testing.T) {
	h := newHarness(t)
	sa := h.openSessionAs(alice)
	sn := h.openSessionAs("")
	if res := h.one(as(alice, txn(createEphemeral("/a", sa)))); !res.GetTxn().GetSucceeded() {
		t.Fatalf("create: %v", res)
	}

	dst := New()
	if err := dst.Restore(bytes.NewReader(h.snapshot())); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	v := dst.View()
	for id, want := range map[uint64]string{sa: alice, sn: ""} {
		if owner, ok := v.SessionOwner(id); !ok || owner != want {
			t.Errorf("session %d: owner %q, %v; want %q", id, owner, ok, want)
		}
	}
	// The restored tree enforces them alike.
	h2 := &harness{t: t, tree: dst, index: h.index, timeMs: h.timeMs}
	if res := h2.one(as(bob, closeSession(sa))); !errors.Is(FromOpError(res.GetError()), ErrSessionNotOwned) {
		t.Errorf("bob's close after restore: %v", res)
	}

	t.Run("old snapshot", func(t *testing.T) {
		// A session record as format 1 wrote it before owners: no field 5.
		old := records(&peerv1.SnapshotHeader{Format: snapshotFormat, Index: 3, TimeMs: 1},
			nodeRec("/", &colonyv1.Stat{}, ""), sessionRec(2), endRec)
		tr := New()
		if err := tr.Restore(bytes.NewReader(old)); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if owner, ok := tr.View().SessionOwner(2); !ok || owner != "" {
			t.Fatalf("owner %q, %v; want none", owner, ok)
		}
		h := &harness{t: t, tree: tr, index: 3, timeMs: 2}
		if res := h.one(as(bob, closeSession(2))); res.GetOk() == nil {
			t.Errorf("close of an ownerless session: %v", res)
		}
	})
}

// stripHeader drops a snapshot's header (index and time advance even when a
// command changes nothing else).
func stripHeader(t *testing.T, snap []byte) []byte {
	t.Helper()
	n := int(snap[0]) // the header is short: a one-byte length prefix
	if n >= 0x80 {
		t.Fatalf("header length prefix %#x", snap[0])
	}
	return snap[1+n:]
}
