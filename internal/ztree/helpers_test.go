package ztree

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// harness applies commands to a tree with increasing indexes and a clock
// that tests move by hand.
type harness struct {
	t      testing.TB
	tree   *Tree
	index  uint64
	timeMs int64
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, tree: New(), timeMs: 1_000_000}
}

// apply applies cmds as one batch, stamping each with the harness time.
func (h *harness) apply(cmds ...*peerv1.Command) ([]*peerv1.CommandResult, []*colonyv1.Event) {
	h.t.Helper()
	entries := make([]Entry, len(cmds))
	for i, c := range cmds {
		h.index++
		if c != nil && c.TimeMs == 0 {
			c.TimeMs = h.timeMs
		}
		entries[i] = Entry{Index: h.index, Cmd: c}
	}
	return h.tree.Apply(entries)
}

// one applies a single command and returns its result.
func (h *harness) one(c *peerv1.Command) *peerv1.CommandResult {
	h.t.Helper()
	res, _ := h.apply(c)
	return res[0]
}

// must applies a single Txn command and fails the test unless it succeeded.
func (h *harness) must(ops ...*colonyv1.Op) *colonyv1.MultiResponse {
	h.t.Helper()
	res := h.one(txn(ops...))
	m := res.GetTxn()
	if !m.GetSucceeded() {
		h.t.Fatalf("txn failed: %v", res)
	}
	return m
}

// openSession opens a session and returns its id.
func (h *harness) openSession(ttl int64) uint64 {
	h.t.Helper()
	res := h.one(&peerv1.Command{Op: &peerv1.Command_OpenSession{OpenSession: &peerv1.OpenSession{TtlMs: ttl, Name: "test"}}})
	if res.GetOpenSession() == nil {
		h.t.Fatalf("open session: %v", res)
	}
	return res.GetOpenSession().GetSessionId()
}

func (h *harness) snapshot() []byte {
	h.t.Helper()
	return snapshotBytes(h.t, h.tree.View())
}

func snapshotBytes(t testing.TB, v *View) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := v.WriteSnapshot(&buf); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	return buf.Bytes()
}

// Command and op builders.

func txn(ops ...*colonyv1.Op) *peerv1.Command {
	return &peerv1.Command{Op: &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: ops}}}
}

// withID gives c a request id in the anonymous client scope and stamps its
// fingerprint, as the leader does.
func withID(id string, c *peerv1.Command) *peerv1.Command {
	return withClientID("", id, c)
}

// withClientID gives c a request id in a client's scope and stamps its
// fingerprint, as the leader does.
func withClientID(client, id string, c *peerv1.Command) *peerv1.Command {
	c.ClientId, c.RequestId = client, id
	c.Fingerprint = Fingerprint(c)
	return c
}

func create(path, data string) *colonyv1.Op {
	return createReq(&colonyv1.CreateRequest{Path: path, Data: []byte(data)})
}

func createReq(c *colonyv1.CreateRequest) *colonyv1.Op {
	return &colonyv1.Op{Op: &colonyv1.Op_Create{Create: c}}
}

func createKind(path string, kind colonyv1.NodeKind) *colonyv1.Op {
	return createReq(&colonyv1.CreateRequest{Path: path, Kind: kind})
}

func createEphemeral(path string, session uint64) *colonyv1.Op {
	return createReq(&colonyv1.CreateRequest{Path: path, Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL, SessionId: session})
}

func createTTL(path string, ttl int64) *colonyv1.Op {
	return createReq(&colonyv1.CreateRequest{Path: path, Kind: colonyv1.NodeKind_NODE_KIND_TTL, TtlMs: ttl})
}

func createSeq(path string) *colonyv1.Op {
	return createReq(&colonyv1.CreateRequest{Path: path, Sequential: true})
}

func set(path, data string) *colonyv1.Op {
	return &colonyv1.Op{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{Path: path, Data: []byte(data)}}}
}

func setV(path, data string, version int64) *colonyv1.Op {
	return &colonyv1.Op{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{Path: path, Data: []byte(data), ExpectedVersion: &version}}}
}

func del(path string) *colonyv1.Op {
	return &colonyv1.Op{Op: &colonyv1.Op_Delete{Delete: &colonyv1.DeleteRequest{Path: path}}}
}

func delV(path string, version int64) *colonyv1.Op {
	return &colonyv1.Op{Op: &colonyv1.Op_Delete{Delete: &colonyv1.DeleteRequest{Path: path, ExpectedVersion: &version}}}
}

func check(path string, version int64) *colonyv1.Op {
	return &colonyv1.Op{Op: &colonyv1.Op_Check{Check: &colonyv1.CheckOp{Path: path, Version: version}}}
}

func closeSession(id uint64) *peerv1.Command {
	return &peerv1.Command{Op: &peerv1.Command_CloseSession{CloseSession: &peerv1.CloseSession{SessionId: id}}}
}

func expireSessions(ids ...uint64) *peerv1.Command {
	return &peerv1.Command{Op: &peerv1.Command_ExpireSessions{ExpireSessions: &peerv1.ExpireSessions{SessionIds: ids}}}
}

func reap(targets ...*peerv1.ReapTarget) *peerv1.Command {
	return &peerv1.Command{Op: &peerv1.Command_Reap{Reap: &peerv1.Reap{Targets: targets}}}
}

func noop() *peerv1.Command {
	return &peerv1.Command{Op: &peerv1.Command_Noop{Noop: &peerv1.Noop{}}}
}

// dumpNodes renders every node (path, data, stat) of a view, in key order.
func dumpNodes(v *View) string {
	var b strings.Builder
	v.s.nodes.Root().Walk(func(k []byte, n *node) bool {
		fmt.Fprintf(&b, "%s %q %v\n", pathOfKey(k), n.data, n.stat())
		return false
	})
	return b.String()
}

// eventString renders events compactly for comparisons: "TYPE path".
func eventStrings(evs []*colonyv1.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%s %s", strings.TrimPrefix(e.GetType().String(), "EVENT_TYPE_"), e.GetPath())
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalProtos[M proto.Message](a, b []M) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// checkInvariants checks that a state is internally consistent: the tree's
// shape and counts, every index against the nodes, sessions and dedup table.
func checkInvariants(s *state) error {
	root, ok := s.nodes.Get(nodeKey("/"))
	if !ok {
		return errors.New("no root")
	}
	if root.czxid != 0 || root.kind != colonyv1.NodeKind_NODE_KIND_PERSISTENT {
		return fmt.Errorf("bad root %v", root.stat())
	}
	children := map[string]int32{}
	ephemerals := map[uint64]int32{}
	var ttls, containers int
	var err error
	fail := func(format string, args ...any) bool {
		err = fmt.Errorf(format, args...)
		return true
	}
	s.nodes.Root().Walk(func(k []byte, n *node) bool {
		path := pathOfKey(k)
		if e := ValidatePath(path); e != nil {
			return fail("invalid path stored: %v", e)
		}
		if path != "/" {
			pp, _ := parentOf(path)
			p, ok := s.nodes.Get(nodeKey(pp))
			if !ok {
				return fail("%s: no parent", path)
			}
			if p.kind == colonyv1.NodeKind_NODE_KIND_EPHEMERAL {
				return fail("%s: ephemeral parent", path)
			}
			children[pp]++
		}
		switch n.kind {
		case colonyv1.NodeKind_NODE_KIND_EPHEMERAL:
			if _, ok := s.sessions.Get(be64(n.owner)); !ok {
				return fail("%s: owner session %d missing", path, n.owner)
			}
			if _, ok := s.ephemerals.Get(ephemeralKey(n.owner, path)); !ok {
				return fail("%s: not in ephemerals index", path)
			}
			ephemerals[n.owner]++
		case colonyv1.NodeKind_NODE_KIND_TTL:
			if _, ok := s.ttls.Get(ttlKey(n, path)); !ok {
				return fail("%s: not in ttl index", path)
			}
			ttls++
		case colonyv1.NodeKind_NODE_KIND_CONTAINER:
			if _, ok := s.containers.Get([]byte(path)); !ok {
				return fail("%s: not in container index", path)
			}
			containers++
		}
		if n.kind != colonyv1.NodeKind_NODE_KIND_EPHEMERAL && n.owner != 0 {
			return fail("%s: owner on a %v node", path, n.kind)
		}
		if n.czxid > s.index || n.mzxid > s.index || n.pzxid > s.index {
			return fail("%s: zxid above index %d", path, s.index)
		}
		return false
	})
	if err != nil {
		return err
	}
	s.nodes.Root().Walk(func(k []byte, n *node) bool {
		if path := pathOfKey(k); n.numChildren != children[path] {
			return fail("%s: num_children %d, has %d", path, n.numChildren, children[path])
		}
		return false
	})
	if err != nil {
		return err
	}
	if s.ephemerals.Len() != sumCounts(ephemerals) || s.ttls.Len() != ttls || s.containers.Len() != containers {
		return fmt.Errorf("index sizes: ephemerals %d/%d ttls %d/%d containers %d/%d",
			s.ephemerals.Len(), sumCounts(ephemerals), s.ttls.Len(), ttls, s.containers.Len(), containers)
	}
	s.sessions.Root().Walk(func(k []byte, ss *session) bool {
		if ss.id != fromBE64(k) || ss.ephemerals != ephemerals[ss.id] {
			return fail("session %d: ephemerals %d, owns %d", ss.id, ss.ephemerals, ephemerals[ss.id])
		}
		return false
	})
	if err != nil {
		return err
	}
	// The table is in eviction order, each entry found by its id; on the
	// newest state the map indexes exactly the live entries.
	var prev *dedupEntry
	s.dedup.walk(func(e *dedupEntry) bool {
		if prev != nil && (e.timeMs < prev.timeMs || e.timeMs == prev.timeMs && e.index < prev.index) {
			return fail("dedup %q/%q (time %d, index %d) after %q/%q (time %d, index %d)",
				e.clientID, e.requestID, e.timeMs, e.index, prev.clientID, prev.requestID, prev.timeMs, prev.index)
		}
		if got, ok := s.dedup.Get(e.clientID, e.requestID); !ok || got != e {
			return fail("dedup %q/%q not found by its id", e.clientID, e.requestID)
		}
		prev = e
		return false
	})
	if err != nil {
		return err
	}
	if l := s.dedup.log; l.head == s.dedup.head && l.tail == s.dedup.tail && len(l.byID) != s.dedup.Len() {
		return fmt.Errorf("dedup: %d entries, %d indexed", s.dedup.Len(), len(l.byID))
	}
	return nil
}

func sumCounts(m map[uint64]int32) int {
	n := 0
	for _, c := range m {
		n += int(c)
	}
	return n
}
