package ztree

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestNewTree(t *testing.T) {
	v := New().View()
	if v.Index() != 0 || v.TimeMs() != 0 {
		t.Fatalf("index %d time %d, want 0 0", v.Index(), v.TimeMs())
	}
	data, st, err := v.Get("/")
	if err != nil || data != nil || st.GetCzxid() != 0 || st.GetNumChildren() != 0 {
		t.Fatalf("root: %q %v %v", data, st, err)
	}
	names, _, err := v.Children("/")
	if err != nil || len(names) != 0 {
		t.Fatalf("root children: %v %v", names, err)
	}
}

// TestTreeSemantics walks through create, set, delete and check and checks
// every stat field and event along the way.
func TestTreeSemantics(t *testing.T) {
	h := newHarness(t)

	t.Run("create", func(t *testing.T) {
		res, evs := h.apply(txn(create("/a", "hello"))) // index 1
		m := res[0].GetTxn()
		if !m.GetSucceeded() || m.GetResults()[0].GetCreate().GetPath() != "/a" {
			t.Fatalf("result %v", res[0])
		}
		want := &colonyv1.Stat{Czxid: 1, Mzxid: 1, Pzxid: 1, CtimeMs: h.timeMs, MtimeMs: h.timeMs, DataLength: 5}
		if got := m.GetResults()[0].GetCreate().GetStat(); !proto.Equal(got, want) {
			t.Errorf("create stat %v, want %v", got, want)
		}
		data, st, err := h.tree.View().Get("/a")
		if err != nil || string(data) != "hello" || !proto.Equal(st, want) {
			t.Errorf("Get(/a) = %q %v %v", data, st, err)
		}
		_, root, _ := h.tree.View().Get("/")
		if root.GetCversion() != 1 || root.GetNumChildren() != 1 || root.GetPzxid() != 1 {
			t.Errorf("root stat %v", root)
		}
		if got, want := eventStrings(evs), []string{"CREATED /a", "CHILDREN_CHANGED /"}; !equalStrings(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		if evs[0].GetZxid() != 1 || string(evs[0].GetData()) != "hello" || !proto.Equal(evs[0].GetStat(), want) {
			t.Errorf("created event %v", evs[0])
		}
		if !proto.Equal(evs[1].GetStat(), root) {
			t.Errorf("children event stat %v, want %v", evs[1].GetStat(), root)
		}
	})

	t.Run("set", func(t *testing.T) {
		h.timeMs += 10
		res, evs := h.apply(txn(set("/a", "world!"))) // index 2
		st := res[0].GetTxn().GetResults()[0].GetSet().GetStat()
		want := &colonyv1.Stat{Czxid: 1, Mzxid: 2, Pzxid: 1, CtimeMs: h.timeMs - 10, MtimeMs: h.timeMs, Version: 1, DataLength: 6}
		if !proto.Equal(st, want) {
			t.Errorf("set stat %v, want %v", st, want)
		}
		if got := eventStrings(evs); !equalStrings(got, []string{"DATA_CHANGED /a"}) || string(evs[0].GetData()) != "world!" {
			t.Errorf("events %v", evs)
		}
		h.must(setV("/a", "x", 1)) // index 3, version 2
		if _, st, _ := h.tree.View().Get("/a"); st.GetVersion() != 2 {
			t.Errorf("version %d, want 2", st.GetVersion())
		}
		h.must(setV("/a", "", -1)) // any version, empty data
		if data, st, _ := h.tree.View().Get("/a"); data != nil || st.GetDataLength() != 0 || st.GetVersion() != 3 {
			t.Errorf("after empty set: %q %v", data, st)
		}
	})

	t.Run("children", func(t *testing.T) {
		h.must(create("/a/c", ""), create("/a/b", ""), create("/a/b/deep", ""), create("/ab", ""))
		names, st, err := h.tree.View().Children("/a")
		if err != nil || !equalStrings(names, []string{"b", "c"}) || st.GetNumChildren() != 2 || st.GetCversion() != 2 {
			t.Errorf("Children(/a) = %v %v %v", names, st, err)
		}
		names, _, _ = h.tree.View().Children("/")
		if !equalStrings(names, []string{"a", "ab"}) {
			t.Errorf("Children(/) = %v", names)
		}
	})

	t.Run("check", func(t *testing.T) {
		m := h.must(check("/a", 3), check("/a", -1), check("/", -1))
		if c := m.GetResults()[0].GetCheck(); c.GetPath() != "/a" || c.GetVersion() != 3 {
			t.Errorf("check echo %v", c)
		}
	})

	t.Run("delete", func(t *testing.T) {
		before := h.index
		res, evs := h.apply(txn(del("/a/b/deep"), delV("/a/b", 0)))
		if !res[0].GetTxn().GetSucceeded() {
			t.Fatalf("delete: %v", res[0])
		}
		want := []string{"DELETED /a/b/deep", "CHILDREN_CHANGED /a/b", "DELETED /a/b", "CHILDREN_CHANGED /a"}
		if got := eventStrings(evs); !equalStrings(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		if evs[0].GetStat().GetCzxid() == 0 || evs[2].GetStat().GetNumChildren() != 0 {
			t.Errorf("deleted stats %v %v", evs[0].GetStat(), evs[2].GetStat())
		}
		_, st, _ := h.tree.View().Get("/a")
		if st.GetNumChildren() != 1 || st.GetCversion() != 3 || st.GetPzxid() != before+1 {
			t.Errorf("parent stat %v", st)
		}
		if _, _, err := h.tree.View().Get("/a/b"); !errors.Is(err, ErrNoNode) {
			t.Errorf("Get deleted: %v", err)
		}
	})

	t.Run("set root", func(t *testing.T) {
		h.must(set("/", "root data"))
		if data, st, _ := h.tree.View().Get("/"); string(data) != "root data" || st.GetVersion() != 1 {
			t.Errorf("root %q %v", data, st)
		}
	})

	if err := checkInvariants(h.tree.View().s); err != nil {
		t.Fatal(err)
	}
}

// TestOpErrors checks every way a single op can fail: the code, the message
// and the sentinel, and that a failed op changes nothing.
func TestOpErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup []*colonyv1.Op // applied first, must succeed
		op    *colonyv1.Op
		code  codes.Code
		is    error
		msg   string // substring of the message
	}{
		{"create missing parent", nil, create("/a/b", ""), codes.NotFound, ErrNoNode, "node /a does not exist (parent of /a/b)"},
		{"create existing", []*colonyv1.Op{create("/a", "")}, create("/a", ""), codes.AlreadyExists, ErrNodeExists, "node /a already exists"},
		{"create root", nil, create("/", ""), codes.InvalidArgument, ErrInvalidArgument, `path "/": the root cannot be created`},
		{"create under ephemeral", []*colonyv1.Op{createEphemeral("/e", 1)}, create("/e/x", ""), codes.FailedPrecondition, ErrEphemeralParent, "ephemeral node /e cannot have children"},
		{"create ephemeral unknown session", nil, createEphemeral("/e", 99), codes.NotFound, ErrSessionNotFound, "session 0x63 not found or expired"},
		{"create ephemeral without session", nil, createEphemeral("/e", 0), codes.InvalidArgument, ErrInvalidArgument, "session_id: required for EPHEMERAL nodes"},
		{"create persistent with session", nil, createReq(&colonyv1.CreateRequest{Path: "/p", SessionId: 1}), codes.InvalidArgument, ErrInvalidArgument, "session_id: only allowed for EPHEMERAL nodes"},
		{"create ttl without ttl", nil, createTTL("/t", 0), codes.InvalidArgument, ErrInvalidArgument, "ttl_ms: must be > 0 for TTL nodes, got 0"},
		{"create ttl negative", nil, createTTL("/t", -5), codes.InvalidArgument, ErrInvalidArgument, "ttl_ms: must be > 0 for TTL nodes, got -5"},
		{"create persistent with ttl", nil, createReq(&colonyv1.CreateRequest{Path: "/p", TtlMs: 5}), codes.InvalidArgument, ErrInvalidArgument, "ttl_ms: only allowed for TTL nodes"},
		{"create sequential container", nil, createReq(&colonyv1.CreateRequest{Path: "/c", Kind: colonyv1.NodeKind_NODE_KIND_CONTAINER, Sequential: true}), codes.InvalidArgument, ErrInvalidArgument, "CONTAINER nodes cannot be sequential"},
		{"create unknown kind", nil, createKind("/k", 42), codes.InvalidArgument, ErrInvalidArgument, "kind: unknown node kind 42"},
		{"create bad path", nil, create("a/b", ""), codes.InvalidArgument, ErrInvalidArgument, `path "a/b": must start with "/"`},
		{"create sequential too long", nil, createSeq("/" + strings.Repeat("x", 1014)), codes.InvalidArgument, ErrInvalidArgument, "sequence suffix exceeds the limit of 1024"},
		{"set missing", nil, set("/nope", ""), codes.NotFound, ErrNoNode, "node /nope does not exist"},
		{"set bad version", []*colonyv1.Op{create("/a", ""), set("/a", "1"), set("/a", "2")}, setV("/a", "x", 1), codes.FailedPrecondition, ErrBadVersion, "version mismatch on /a: expected 1, current 2"},
		{"set version below -1", []*colonyv1.Op{create("/a", "")}, setV("/a", "x", -2), codes.InvalidArgument, ErrInvalidArgument, "expected_version: must be -1 (any) or >= 0, got -2"},
		{"set bad path", nil, set("/a/", ""), codes.InvalidArgument, ErrInvalidArgument, `path "/a/": must not end with "/"`},
		{"delete missing", nil, del("/nope"), codes.NotFound, ErrNoNode, "node /nope does not exist"},
		{"delete bad version", []*colonyv1.Op{create("/a", "")}, delV("/a", 4), codes.FailedPrecondition, ErrBadVersion, "version mismatch on /a: expected 4, current 0"},
		{"delete not empty", []*colonyv1.Op{create("/a", ""), create("/a/b", ""), create("/a/c", "")}, del("/a"), codes.FailedPrecondition, ErrNotEmpty, "node /a is not empty: it has 2 children"},
		{"delete root", nil, del("/"), codes.InvalidArgument, ErrInvalidArgument, `path "/": the root cannot be deleted`},
		{"check missing", nil, check("/nope", -1), codes.NotFound, ErrNoNode, "node /nope does not exist"},
		{"check bad version", []*colonyv1.Op{create("/a", "")}, check("/a", 7), codes.FailedPrecondition, ErrBadVersion, "version mismatch on /a: expected 7, current 0"},
		{"check version below -1", nil, check("/", -3), codes.InvalidArgument, ErrInvalidArgument, "version: must be -1 (any) or >= 0, got -3"},
		{"empty op", nil, &colonyv1.Op{}, codes.InvalidArgument, ErrInvalidArgument, "op: must be one of"},
		{"nil op", nil, nil, codes.InvalidArgument, ErrInvalidArgument, "op: must be one of"},
		{"nil create", nil, &colonyv1.Op{Op: &colonyv1.Op_Create{}}, codes.InvalidArgument, ErrInvalidArgument, `path "": must start with "/"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.openSession(60_000) // session 1
			if len(tt.setup) > 0 {
				h.must(tt.setup...)
			}
			before := dumpNodes(h.tree.View())

			res, evs := h.apply(txn(tt.op))
			m := res[0].GetTxn()
			if m == nil || m.GetSucceeded() || m.GetFailedOp() != 0 || len(m.GetResults()) != 1 {
				t.Fatalf("result %v, want a failed txn", res[0])
			}
			oe := m.GetResults()[0].GetError()
			if codes.Code(oe.GetCode()) != tt.code || !strings.Contains(oe.GetMessage(), tt.msg) {
				t.Errorf("error %v %q, want %v containing %q", codes.Code(oe.GetCode()), oe.GetMessage(), tt.code, tt.msg)
			}
			err := FromOpError(oe)
			if !errors.Is(err, tt.is) || Code(err) != tt.code || err.Error() != oe.GetMessage() {
				t.Errorf("FromOpError = %v (code %v), want it to match %v", err, Code(err), tt.is)
			}
			if len(evs) != 0 {
				t.Errorf("events %v, want none", evs)
			}
			if after := dumpNodes(h.tree.View()); after != before {
				t.Errorf("tree changed:\n%s\nwant:\n%s", after, before)
			}
		})
	}
}

func TestMultiAllOrNothing(t *testing.T) {
	t.Run("failure aborts every op", func(t *testing.T) {
		h := newHarness(t)
		h.must(create("/x", "0"))
		before := h.snapshot()
		res, evs := h.apply(txn(create("/a", ""), create("/a/b", ""), set("/x", "1"), set("/missing", ""), create("/c", "")))
		m := res[0].GetTxn()
		if m.GetSucceeded() || m.GetFailedOp() != 3 || len(m.GetResults()) != 5 {
			t.Fatalf("result %v", m)
		}
		for i, r := range m.GetResults() {
			oe := r.GetError()
			if i == 3 {
				if codes.Code(oe.GetCode()) != codes.NotFound {
					t.Errorf("op 3: %v", oe)
				}
				continue
			}
			if codes.Code(oe.GetCode()) != codes.Aborted || oe.GetMessage() != "not applied: op 3 failed" {
				t.Errorf("op %d: %v, want ABORTED", i, oe)
			}
			if !errors.Is(FromOpError(oe), ErrAborted) {
				t.Errorf("op %d: FromOpError does not match ErrAborted", i)
			}
		}
		if len(evs) != 0 {
			t.Errorf("events %v", eventStrings(evs))
		}
		if _, _, err := h.tree.View().Get("/a"); !errors.Is(err, ErrNoNode) {
			t.Errorf("/a exists after a failed multi")
		}
		if data, _, _ := h.tree.View().Get("/x"); string(data) != "0" {
			t.Errorf("/x = %q after a failed multi", data)
		}
		// Only the index and the time moved.
		after := h.snapshot()
		if len(after) != len(before) {
			t.Errorf("snapshot changed size: %d -> %d", len(before), len(after))
		}
	})

	t.Run("success returns per-op results and ordered events", func(t *testing.T) {
		h := newHarness(t)
		res, evs := h.apply(txn(create("/a", "1"), check("/a", 0), set("/a", "2"), create("/a/b", ""), del("/a/b"), check("/a", 1)))
		m := res[0].GetTxn()
		if !m.GetSucceeded() || len(m.GetResults()) != 6 {
			t.Fatalf("result %v", m)
		}
		r := m.GetResults()
		if r[0].GetCreate() == nil || r[1].GetCheck() == nil || r[2].GetSet() == nil || r[3].GetCreate() == nil || r[4].GetDelete() == nil || r[5].GetCheck() == nil {
			t.Errorf("result kinds %v", r)
		}
		if r[2].GetSet().GetStat().GetVersion() != 1 {
			t.Errorf("set stat %v", r[2].GetSet().GetStat())
		}
		want := []string{"CREATED /a", "CHILDREN_CHANGED /", "DATA_CHANGED /a", "CREATED /a/b", "CHILDREN_CHANGED /a", "DELETED /a/b", "CHILDREN_CHANGED /a"}
		if got := eventStrings(evs); !equalStrings(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		for _, e := range evs {
			if e.GetZxid() != 1 {
				t.Errorf("event zxid %d, want 1", e.GetZxid())
			}
		}
	})

	t.Run("empty multi succeeds", func(t *testing.T) {
		h := newHarness(t)
		if m := h.one(txn()).GetTxn(); !m.GetSucceeded() || len(m.GetResults()) != 0 {
			t.Errorf("result %v", m)
		}
	})

	t.Run("batch: a failed multi does not affect its neighbours", func(t *testing.T) {
		h := newHarness(t)
		res, evs := h.apply(txn(create("/a", "")), txn(create("/b", ""), create("/a", "")), txn(create("/c", "")))
		if !res[0].GetTxn().GetSucceeded() || res[1].GetTxn().GetSucceeded() || !res[2].GetTxn().GetSucceeded() {
			t.Fatalf("results %v", res)
		}
		want := []string{"CREATED /a", "CHILDREN_CHANGED /", "CREATED /c", "CHILDREN_CHANGED /"}
		if got := eventStrings(evs); !equalStrings(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		if evs[0].GetZxid() != 1 || evs[2].GetZxid() != 3 {
			t.Errorf("zxids %d %d", evs[0].GetZxid(), evs[2].GetZxid())
		}
		names, _, _ := h.tree.View().Children("/")
		if !equalStrings(names, []string{"a", "c"}) {
			t.Errorf("children %v", names)
		}
	})
}

func TestSequential(t *testing.T) {
	h := newHarness(t)
	h.must(create("/q", ""))
	var got []string
	for range 2 {
		got = append(got, h.must(createSeq("/q/n-")).GetResults()[0].GetCreate().GetPath())
	}
	h.must(del(got[0])) // cversion 3
	m := h.must(createSeq("/q/n-"), createSeq("/q/m-"))
	for _, r := range m.GetResults() {
		got = append(got, r.GetCreate().GetPath())
	}
	// Under the root, too.
	got = append(got, h.must(createSeq("/s")).GetResults()[0].GetCreate().GetPath())
	want := []string{"/q/n-0000000000", "/q/n-0000000001", "/q/n-0000000003", "/q/m-0000000004", "/s0000000001"}
	if !equalStrings(got, want) {
		t.Errorf("paths %v, want %v", got, want)
	}
	names, _, _ := h.tree.View().Children("/q")
	if !equalStrings(names, []string{"m-0000000004", "n-0000000001", "n-0000000003"}) {
		t.Errorf("children %v", names)
	}
}

func TestSessions(t *testing.T) {
	h := newHarness(t)
	s1 := h.openSession(10_000)
	s2 := h.openSession(20_000)
	if s1 != 1 || s2 != 2 {
		t.Fatalf("session ids %d %d, want the entry indexes 1 2", s1, s2)
	}
	h.must(create("/svc", ""), createEphemeral("/svc/b", s1), createEphemeral("/svc/a", s1), createEphemeral("/e2", s2), createEphemeral("/svc/c", s2))

	info, ok := h.tree.View().Session(s1)
	want := &colonyv1.SessionInfo{SessionId: 1, TtlMs: 10_000, Name: "test", CreatedMs: h.timeMs, Ephemerals: 2}
	if !ok || !proto.Equal(info, want) {
		t.Errorf("Session(1) = %v, want %v", info, want)
	}
	if _, st, _ := h.tree.View().Get("/svc/a"); st.GetEphemeralOwner() != s1 || st.GetKind() != colonyv1.NodeKind_NODE_KIND_EPHEMERAL {
		t.Errorf("ephemeral stat %v", st)
	}
	if all := h.tree.View().Sessions(); len(all) != 2 || all[0].GetSessionId() != 1 || all[1].GetEphemerals() != 2 {
		t.Errorf("Sessions() = %v", all)
	}

	t.Run("close deletes ephemerals in path order", func(t *testing.T) {
		res, evs := h.apply(closeSession(s1))
		if res[0].GetOk() == nil {
			t.Fatalf("close: %v", res[0])
		}
		want := []string{"DELETED /svc/a", "CHILDREN_CHANGED /svc", "DELETED /svc/b", "CHILDREN_CHANGED /svc"}
		if got := eventStrings(evs); !equalStrings(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		if _, ok := h.tree.View().Session(s1); ok {
			t.Error("session still open")
		}
		names, _, _ := h.tree.View().Children("/svc")
		if !equalStrings(names, []string{"c"}) {
			t.Errorf("children %v", names)
		}
	})

	t.Run("close unknown", func(t *testing.T) {
		res, evs := h.apply(closeSession(s1))
		oe := res[0].GetError()
		if codes.Code(oe.GetCode()) != codes.NotFound || oe.GetMessage() != "session 0x1 not found or expired" || len(evs) != 0 {
			t.Errorf("close unknown: %v %v", res[0], evs)
		}
		if !errors.Is(FromOpError(oe), ErrSessionNotFound) {
			t.Error("FromOpError does not match ErrSessionNotFound")
		}
	})

	t.Run("create ephemeral for a closed session", func(t *testing.T) {
		res := h.one(txn(createEphemeral("/late", s1)))
		if oe := res.GetTxn().GetResults()[0].GetError(); !errors.Is(FromOpError(oe), ErrSessionNotFound) {
			t.Errorf("result %v", res)
		}
	})

	t.Run("expire skips unknown sessions", func(t *testing.T) {
		s3 := h.openSession(5_000)
		h.must(createEphemeral("/e3", s3))
		res, evs := h.apply(expireSessions(s3, 12345, s2, s3))
		if res[0].GetOk() == nil {
			t.Fatalf("expire: %v", res[0])
		}
		want := []string{"DELETED /e3", "CHILDREN_CHANGED /", "DELETED /e2", "CHILDREN_CHANGED /", "DELETED /svc/c", "CHILDREN_CHANGED /svc"}
		if got := eventStrings(evs); !equalStrings(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		if n := len(h.tree.View().Sessions()); n != 0 {
			t.Errorf("%d sessions left", n)
		}
	})

	t.Run("deleting an ephemeral updates the count", func(t *testing.T) {
		s := h.openSession(5_000)
		h.must(createEphemeral("/x1", s), createEphemeral("/x2", s))
		h.must(del("/x1"))
		if info, _ := h.tree.View().Session(s); info.GetEphemerals() != 1 {
			t.Errorf("ephemerals %d, want 1", info.GetEphemerals())
		}
	})

	t.Run("open with a bad ttl", func(t *testing.T) {
		res := h.one(&peerv1.Command{Op: &peerv1.Command_OpenSession{OpenSession: &peerv1.OpenSession{}}})
		if !errors.Is(FromOpError(res.GetError()), ErrInvalidArgument) {
			t.Errorf("result %v", res)
		}
	})

	if err := checkInvariants(h.tree.View().s); err != nil {
		t.Fatal(err)
	}
}

func TestReap(t *testing.T) {
	target := func(h *harness, path string) *peerv1.ReapTarget {
		_, st, err := h.tree.View().Get(path)
		if err != nil {
			h.t.Fatalf("Get(%s): %v", path, err)
		}
		return &peerv1.ReapTarget{Path: path, Mzxid: st.GetMzxid(), Pzxid: st.GetPzxid()}
	}
	candidates := func(h *harness, now int64) []string {
		var out []string
		for _, c := range h.tree.View().ReapCandidates(now, 0) {
			out = append(out, c.GetPath())
		}
		return out
	}

	t.Run("ttl", func(t *testing.T) {
		h := newHarness(t)
		t0 := h.timeMs
		h.must(createTTL("/t1", 1000), createTTL("/t2", 500), createTTL("/t3", 100), create("/t3/child", ""))
		if got := candidates(h, t0+499); len(got) != 0 {
			t.Errorf("candidates before expiry: %v", got)
		}
		// Soonest expiry first; /t3 has a child.
		if got := candidates(h, t0+1000); !equalStrings(got, []string{"/t2", "/t1"}) {
			t.Errorf("candidates %v", got)
		}
		if got := h.tree.View().ReapCandidates(t0+1000, 1); len(got) != 1 || got[0].GetPath() != "/t2" {
			t.Errorf("max 1: %v", got)
		}

		stale := target(h, "/t1")
		h.timeMs = t0 + 600
		h.must(set("/t1", "touched")) // expiry moves to t0+1600
		h.timeMs = t0 + 1100
		if got := candidates(h, h.timeMs); !equalStrings(got, []string{"/t2"}) {
			t.Errorf("after touch: %v", got)
		}
		res, evs := h.apply(reap(target(h, "/t2"), stale, target(h, "/t3"), &peerv1.ReapTarget{Path: "bad"}, &peerv1.ReapTarget{Path: "/gone"}))
		if res[0].GetOk() == nil {
			t.Fatalf("reap: %v", res[0])
		}
		if got := eventStrings(evs); !equalStrings(got, []string{"DELETED /t2", "CHILDREN_CHANGED /"}) {
			t.Errorf("events %v", got)
		}
		names, _, _ := h.tree.View().Children("/")
		if !equalStrings(names, []string{"t1", "t3"}) {
			t.Errorf("children %v", names)
		}
	})

	t.Run("ttl re-checked against leader time", func(t *testing.T) {
		h := newHarness(t)
		t0 := h.timeMs
		h.must(createTTL("/t", 1000))
		tg := target(h, "/t")
		h.timeMs = t0 + 999 // the leader's clock went back to before the expiry
		h.apply(reap(tg))
		if _, _, err := h.tree.View().Get("/t"); err != nil {
			t.Errorf("reaped before expiry: %v", err)
		}
		h.timeMs = t0 + 1000
		h.apply(reap(tg))
		if _, _, err := h.tree.View().Get("/t"); !errors.Is(err, ErrNoNode) {
			t.Errorf("not reaped at expiry: %v", err)
		}
		if err := checkInvariants(h.tree.View().s); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("container", func(t *testing.T) {
		h := newHarness(t)
		h.must(createKind("/c", colonyv1.NodeKind_NODE_KIND_CONTAINER), createKind("/fresh", colonyv1.NodeKind_NODE_KIND_CONTAINER))
		if got := candidates(h, h.timeMs); len(got) != 0 {
			t.Errorf("never-used containers are candidates: %v", got)
		}
		h.must(create("/c/x", ""))
		if got := candidates(h, h.timeMs); len(got) != 0 {
			t.Errorf("non-empty container is a candidate: %v", got)
		}
		h.must(del("/c/x"))
		if got := candidates(h, h.timeMs); !equalStrings(got, []string{"/c"}) {
			t.Errorf("candidates %v", got)
		}
		stale := target(h, "/c")
		h.must(create("/c/y", ""), del("/c/y")) // pzxid moves
		h.apply(reap(stale, target(h, "/fresh")))
		if names, _, _ := h.tree.View().Children("/"); !equalStrings(names, []string{"c", "fresh"}) {
			t.Errorf("stale target reaped: children %v", names)
		}
		_, evs := h.apply(reap(target(h, "/c")))
		if got := eventStrings(evs); !equalStrings(got, []string{"DELETED /c", "CHILDREN_CHANGED /"}) {
			t.Errorf("events %v", got)
		}
		if err := checkInvariants(h.tree.View().s); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDedup(t *testing.T) {
	t.Run("retry is applied once with the same result", func(t *testing.T) {
		h := newHarness(t)
		h.must(create("/q", ""))
		res, evs := h.apply(withID("r1", txn(createSeq("/q/n-"))), withID("r1", txn(createSeq("/q/n-"))))
		if !proto.Equal(res[0], res[1]) {
			t.Errorf("results differ: %v vs %v", res[0], res[1])
		}
		if p := res[1].GetTxn().GetResults()[0].GetCreate().GetPath(); p != "/q/n-0000000000" {
			t.Errorf("path %s", p)
		}
		if len(evs) != 2 {
			t.Errorf("events %v, want only the first attempt's", eventStrings(evs))
		}
		if names, _, _ := h.tree.View().Children("/q"); len(names) != 1 {
			t.Errorf("children %v", names)
		}
		// The caller owns results: modifying one does not change what a retry gets.
		res[0].GetTxn().GetResults()[0].GetCreate().Path = "/mutated"
		again := h.one(withID("r1", txn(createSeq("/q/n-"))))
		if p := again.GetTxn().GetResults()[0].GetCreate().GetPath(); p != "/q/n-0000000000" {
			t.Errorf("path after caller mutation %s", p)
		}
	})

	t.Run("failures are remembered too", func(t *testing.T) {
		h := newHarness(t)
		first := h.one(withID("r", closeSession(7)))
		h.openSession(1000) // index 2, does not matter
		second := h.one(withID("r", closeSession(7)))
		if !proto.Equal(first, second) || first.GetError() == nil {
			t.Errorf("%v vs %v", first, second)
		}
	})

	t.Run("ids are forgotten after the window", func(t *testing.T) {
		h := newHarness(t)
		h.one(withID("r", txn(create("/a", ""))))
		h.timeMs += DedupWindowMs // exactly the window: still remembered
		if m := h.one(withID("r", txn(create("/a", "")))).GetTxn(); !m.GetSucceeded() {
			t.Errorf("retry within the window: %v", m)
		}
		h.timeMs++
		m := h.one(withID("r", txn(create("/a", "")))).GetTxn()
		if m.GetSucceeded() || !errors.Is(FromOpError(m.GetResults()[0].GetError()), ErrNodeExists) {
			t.Errorf("retry after the window: %v, want it applied again (and fail)", m)
		}
		if n := h.tree.View().s.dedup.Len(); n != 1 {
			t.Errorf("%d dedup entries, want 1", n)
		}
	})

	t.Run("oldest ids are evicted beyond the max", func(t *testing.T) {
		h := newHarness(t)
		h.tree.dedupMax = 3
		for i := range 5 {
			h.one(withID(fmt.Sprint("r", i), noop()))
		}
		s := h.tree.View().s
		if s.dedup.Len() != 3 {
			t.Fatalf("%d entries, want 3", s.dedup.Len())
		}
		for i, want := range []bool{false, false, true, true, true} {
			if _, ok := s.dedup.Get("", fmt.Sprint("r", i)); ok != want {
				t.Errorf("r%d remembered: %v, want %v", i, ok, want)
			}
		}
		if err := checkInvariants(s); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("leader time never goes back", func(t *testing.T) {
		h := newHarness(t)
		h.one(noop())
		h.timeMs -= 500
		h.one(txn(create("/a", "")))
		if _, st, _ := h.tree.View().Get("/a"); st.GetCtimeMs() != h.timeMs+500 {
			t.Errorf("ctime %d, want %d", st.GetCtimeMs(), h.timeMs+500)
		}
	})
}

func TestApplyMisc(t *testing.T) {
	t.Run("entries without a command advance the index", func(t *testing.T) {
		h := newHarness(t)
		res, evs := h.apply(nil, txn(create("/a", "")), nil)
		if res[0] != nil || res[2] != nil || res[1] == nil || len(evs) != 2 {
			t.Fatalf("results %v events %v", res, evs)
		}
		if v := h.tree.View(); v.Index() != 3 || v.TimeMs() != h.timeMs {
			t.Errorf("index %d time %d", v.Index(), v.TimeMs())
		}
		if _, st, _ := h.tree.View().Get("/a"); st.GetCzxid() != 2 {
			t.Errorf("czxid %d, want 2", st.GetCzxid())
		}
	})

	t.Run("commands without an operation", func(t *testing.T) {
		h := newHarness(t)
		for _, c := range []*peerv1.Command{
			{},
			{Op: &peerv1.Command_RegisterMember{}},
			{Op: &peerv1.Command_ForgetMember{}},
		} {
			if res := h.one(c); !errors.Is(FromOpError(res.GetError()), ErrInvalidArgument) {
				t.Errorf("%v: result %v", c, res)
			}
		}
		// A nil Txn is an empty multi; nil sessions/reap lists are no-ops.
		for _, c := range []*peerv1.Command{
			{Op: &peerv1.Command_Txn{}},
			{Op: &peerv1.Command_ExpireSessions{}},
			{Op: &peerv1.Command_Reap{}},
			{Op: &peerv1.Command_Noop{}},
		} {
			if res := h.one(c); res.GetError() != nil {
				t.Errorf("%v: result %v", c, res)
			}
		}
	})

	t.Run("non-increasing index panics", func(t *testing.T) {
		tr := New()
		tr.Apply([]Entry{{Index: 5, Cmd: noop()}})
		defer func() {
			if recover() == nil {
				t.Error("no panic")
			}
			if tr.View().Index() != 5 {
				t.Error("state changed")
			}
		}()
		tr.Apply([]Entry{{Index: 5, Cmd: noop()}})
	})

	t.Run("data is copied on the way in", func(t *testing.T) {
		h := newHarness(t)
		buf := []byte("abc")
		c := txn(createReq(&colonyv1.CreateRequest{Path: "/a", Data: buf}))
		h.apply(c)
		buf[0] = 'X'
		if data, _, _ := h.tree.View().Get("/a"); string(data) != "abc" {
			t.Errorf("data %q", data)
		}
	})

	t.Run("members", func(t *testing.T) {
		h := newHarness(t)
		reg := func(id, addr string) *peerv1.Command {
			return &peerv1.Command{Op: &peerv1.Command_RegisterMember{RegisterMember: &peerv1.RegisterMember{Id: id, RaftAddress: "r-" + addr, GrpcAddress: addr}}}
		}
		n1 := reg("n1", "a1")
		n1.GetRegisterMember().NonvoterOnly = true
		h.apply(reg("n2", "a2"), n1, reg("n3", "a3"), reg("n2", "a2bis"),
			&peerv1.Command{Op: &peerv1.Command_ForgetMember{ForgetMember: &peerv1.ForgetMember{Id: "n3"}}},
			&peerv1.Command{Op: &peerv1.Command_ForgetMember{ForgetMember: &peerv1.ForgetMember{Id: "unknown"}}})
		ms := h.tree.View().Members()
		if len(ms) != 2 || ms[0].GetId() != "n1" || !ms[0].GetNonvoterOnly() || ms[1].GetGrpcAddress() != "a2bis" {
			t.Errorf("members %v", ms)
		}
		ms[0].Id = "mutated"
		if h.tree.View().Members()[0].GetId() != "n1" {
			t.Error("Members returned shared messages")
		}
	})

	t.Run("reads validate paths", func(t *testing.T) {
		v := New().View()
		if _, _, err := v.Get("nope"); Code(err) != codes.InvalidArgument {
			t.Errorf("Get: %v", err)
		}
		if _, _, err := v.Children("/a/"); Code(err) != codes.InvalidArgument {
			t.Errorf("Children: %v", err)
		}
		if _, _, err := v.Children("/a"); Code(err) != codes.NotFound || err.Error() != "node /a does not exist" {
			t.Errorf("Children: %v", err)
		}
	})
}

// TestConcurrentReads runs readers against a tree being written: every view
// sees whole batches only (run with -race).
func TestConcurrentReads(t *testing.T) {
	tr := New()
	const batches = 200
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				v := tr.View()
				names, _, err := v.Children("/")
				if err != nil {
					t.Error(err)
					return
				}
				// Each batch creates two nodes: a view never sees an odd count.
				if len(names)%2 != 0 {
					t.Errorf("view at index %d sees %d nodes", v.Index(), len(names))
					return
				}
				_ = snapshotBytes(t, v)
			}
		})
	}
	for i := range batches {
		idx := uint64(2*i + 1)
		tr.Apply([]Entry{
			{Index: idx, Cmd: txn(create(fmt.Sprintf("/a%04d", i), "x"))},
			{Index: idx + 1, Cmd: txn(create(fmt.Sprintf("/b%04d", i), "y"))},
		})
	}
	close(stop)
	wg.Wait()
}
