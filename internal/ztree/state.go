package ztree

import (
	"encoding/binary"
	"strings"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"google.golang.org/protobuf/proto"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// node is a znode. Values stored in the trees are never modified: a change
// stores a modified copy. data is never modified either (it is copied on the
// way in and shared on the way out).
type node struct {
	data        []byte
	czxid       uint64
	mzxid       uint64
	pzxid       uint64
	ctimeMs     int64
	mtimeMs     int64
	version     int64
	cversion    int64
	numChildren int32
	owner       uint64 // session id, EPHEMERAL only
	kind        colonyv1.NodeKind
	ttlMs       int64 // TTL only
}

func (n *node) stat() *colonyv1.Stat {
	return &colonyv1.Stat{
		Czxid:          n.czxid,
		Mzxid:          n.mzxid,
		Pzxid:          n.pzxid,
		CtimeMs:        n.ctimeMs,
		MtimeMs:        n.mtimeMs,
		Version:        n.version,
		Cversion:       n.cversion,
		NumChildren:    n.numChildren,
		DataLength:     int32(len(n.data)),
		EphemeralOwner: n.owner,
		Kind:           n.kind,
		TtlMs:          n.ttlMs,
	}
}

// expiresMs is when a TTL node becomes reapable (saturating, so that a huge
// ttl_ms never wraps around).
func (n *node) expiresMs() int64 { return satAdd(n.mtimeMs, n.ttlMs) }

func satAdd(a, b int64) int64 {
	s := a + b
	if b > 0 && s < a {
		return 1<<63 - 1
	}
	if b < 0 && s > a {
		return -1 << 63
	}
	return s
}

// session is an open session. ephemerals is the number of ephemeral nodes it
// owns (kept in step with the ephemerals index). owner is the identity that
// opened it ("" when opened without one: anyone may use it).
type session struct {
	id         uint64
	ttlMs      int64
	name       string
	createdMs  int64
	ephemerals int32
	owner      string
}

// usableBy reports whether the command of identity may close the session or
// create ephemeral nodes in it: a session without an owner is anyone's.
func (s *session) usableBy(identity string) bool { return s.owner == "" || s.owner == identity }

func (s *session) info() *colonyv1.SessionInfo {
	return &colonyv1.SessionInfo{
		SessionId:  s.id,
		TtlMs:      s.ttlMs,
		Name:       s.name,
		CreatedMs:  s.createdMs,
		Ephemerals: s.ephemerals,
	}
}

// dedupEntry remembers the result of a command that carried a request id.
// It is never modified once in the table.
type dedupEntry struct {
	clientID    string
	requestID   string
	fingerprint []byte // the command's Fingerprint as logged (empty in old entries)
	timeMs      int64
	index       uint64
	result      []byte // the result, as encodeResult stores it
	seq         uint64 // position in the table's log (see dedupLog)
}

// state is one immutable version of everything the state machine holds.
// Apply builds a new state from the previous one; readers hold a pointer.
type state struct {
	index  uint64 // last applied raft index
	timeMs int64  // last applied leader time

	// nodes: nodeKey(path) -> node. The root "/" is always present.
	nodes *iradix.Tree[*node]
	// sessions: be64(id) -> session.
	sessions *iradix.Tree[*session]
	// ephemerals: be64(owner) ‖ path -> {}, for every ephemeral node.
	ephemerals *iradix.Tree[struct{}]
	// ttls: sortable64(mtime+ttl) ‖ path -> {}, for every TTL node.
	ttls *iradix.Tree[struct{}]
	// containers: path -> {}, for every container node.
	containers *iradix.Tree[struct{}]
	// dedup: the request-id table, oldest first (see dedupLog).
	dedup dedupView
	// members: id -> registration.
	members *iradix.Tree[*peerv1.RegisterMember]
}

// emptyState is the state of a new tree: only the root, index 0, time 0.
func emptyState() *state {
	nodes, _, _ := iradix.New[*node]().Insert(nodeKey("/"), &node{})
	return &state{
		nodes:      nodes,
		sessions:   iradix.New[*session](),
		ephemerals: iradix.New[struct{}](),
		ttls:       iradix.New[struct{}](),
		containers: iradix.New[struct{}](),
		dedup:      newDedupLog().view(),
		members:    iradix.New[*peerv1.RegisterMember](),
	}
}

// Keys.
//
// A node's key is its depth (number of segments, big-endian uint16; the root
// has depth 0) followed by its path. All children of a node share the prefix
// depth+1 ‖ path ‖ "/" and no other node has it, so listing the children is a
// prefix walk that returns exactly the direct children, sorted by name.
// Walking the whole tree visits parents before children.

func depth(path string) int {
	if path == "/" {
		return 0
	}
	return strings.Count(path, "/")
}

func nodeKey(path string) []byte {
	k := make([]byte, 2, 2+len(path))
	binary.BigEndian.PutUint16(k, uint16(depth(path)))
	return append(k, path...)
}

// pathOfKey is the inverse of nodeKey.
func pathOfKey(k []byte) string { return string(k[2:]) }

// childPrefix is the common prefix of the keys of path's children.
func childPrefix(path string) []byte {
	k := make([]byte, 2, 3+len(path))
	binary.BigEndian.PutUint16(k, uint16(depth(path)+1))
	k = append(k, path...)
	if path != "/" {
		k = append(k, '/')
	}
	return k
}

// parentOf returns the parent path and the last segment of a non-root path.
func parentOf(path string) (parent, name string) {
	i := strings.LastIndexByte(path, '/')
	if i == 0 {
		return "/", path[1:]
	}
	return path[:i], path[i+1:]
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func fromBE64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// sortable64 encodes a signed value so that byte order is numeric order.
func sortable64(b []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(v)^(1<<63))
}

func fromSortable64(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

func ephemeralKey(owner uint64, path string) []byte {
	return append(be64(owner), path...)
}

func ttlKey(n *node, path string) []byte {
	return append(sortable64(make([]byte, 0, 8+len(path)), n.expiresMs()), path...)
}

// dedupKey scopes a request id by its client: uvarint(len(client id)) ‖
// client id ‖ request id, so that no two (client, request) pairs share a key.
// Restore orders entries of equal time and index by it, as the order index
// of earlier versions did.
func dedupKey(clientID, requestID string) []byte {
	k := make([]byte, 0, binary.MaxVarintLen64+len(clientID)+len(requestID))
	k = binary.AppendUvarint(k, uint64(len(clientID)))
	k = append(k, clientID...)
	return append(k, requestID...)
}

// View is an immutable, point-in-time view of the tree: it sees every command
// applied up to Index and nothing after, whatever Apply or Restore does
// meanwhile. It is safe for concurrent use. Byte slices it returns are shared
// with the tree and must not be modified; protobuf messages it returns are
// the caller's.
type View struct {
	s *state
}

// Index returns the last applied raft index (0 for a new tree).
func (v *View) Index() uint64 { return v.s.index }

// TimeMs returns the leader time of the last applied command (unix ms).
func (v *View) TimeMs() int64 { return v.s.timeMs }

// Get returns a node's data and stat. The data must not be modified.
func (v *View) Get(path string) ([]byte, *colonyv1.Stat, error) {
	if err := ValidatePath(path); err != nil {
		return nil, nil, err
	}
	n, ok := v.s.nodes.Get(nodeKey(path))
	if !ok {
		return nil, nil, errNoNode(path)
	}
	return n.data, n.stat(), nil
}

// Children returns the names (not paths) of a node's children, sorted, and
// the node's stat.
func (v *View) Children(path string) ([]string, *colonyv1.Stat, error) {
	if err := ValidatePath(path); err != nil {
		return nil, nil, err
	}
	n, ok := v.s.nodes.Get(nodeKey(path))
	if !ok {
		return nil, nil, errNoNode(path)
	}
	names := make([]string, 0, n.numChildren)
	prefix := childPrefix(path)
	v.s.nodes.Root().WalkPrefix(prefix, func(k []byte, _ *node) bool {
		names = append(names, string(k[len(prefix):]))
		return false
	})
	return names, n.stat(), nil
}

// Session returns an open session.
func (v *View) Session(id uint64) (*colonyv1.SessionInfo, bool) {
	s, ok := v.s.sessions.Get(be64(id))
	if !ok {
		return nil, false
	}
	return s.info(), true
}

// SessionOwner returns the identity that opened an open session ("" when it
// was opened without one, on an insecure node or before owners were
// recorded); ok is false when the session is not open.
func (v *View) SessionOwner(id uint64) (owner string, ok bool) {
	s, ok := v.s.sessions.Get(be64(id))
	if !ok {
		return "", false
	}
	return s.owner, true
}

// SessionCount returns the number of open sessions, in O(1).
func (v *View) SessionCount() int { return v.s.sessions.Len() }

// Sessions returns every open session, sorted by id.
func (v *View) Sessions() []*colonyv1.SessionInfo {
	out := make([]*colonyv1.SessionInfo, 0, v.s.sessions.Len())
	v.s.sessions.Root().Walk(func(_ []byte, s *session) bool {
		out = append(out, s.info())
		return false
	})
	return out
}

// Members returns the registered members, sorted by id.
func (v *View) Members() []*peerv1.RegisterMember {
	out := make([]*peerv1.RegisterMember, 0, v.s.members.Len())
	v.s.members.Root().Walk(func(_ []byte, m *peerv1.RegisterMember) bool {
		out = append(out, cloneMember(m))
		return false
	})
	return out
}

// ReapCandidates returns up to max nodes the leader may propose to reap at
// nowMs (max <= 0: no limit): TTL nodes without children whose mtime+ttl <=
// nowMs, soonest expired first, then containers that have had children
// (cversion > 0) and have none left, in path order.
func (v *View) ReapCandidates(nowMs int64, max int) []*peerv1.ReapTarget {
	var out []*peerv1.ReapTarget
	full := func() bool { return max > 0 && len(out) >= max }
	add := func(path string, n *node) {
		out = append(out, &peerv1.ReapTarget{Path: path, Mzxid: n.mzxid, Pzxid: n.pzxid})
	}
	v.s.ttls.Root().Walk(func(k []byte, _ struct{}) bool {
		if full() || fromSortable64(k) > nowMs {
			return true
		}
		path := string(k[8:])
		if n, ok := v.s.nodes.Get(nodeKey(path)); ok && n.numChildren == 0 {
			add(path, n)
		}
		return false
	})
	v.s.containers.Root().Walk(func(k []byte, _ struct{}) bool {
		if full() {
			return true
		}
		path := string(k)
		if n, ok := v.s.nodes.Get(nodeKey(path)); ok && n.cversion > 0 && n.numChildren == 0 {
			add(path, n)
		}
		return false
	})
	return out
}

// cloneMember copies a registration (every field, present and future).
func cloneMember(m *peerv1.RegisterMember) *peerv1.RegisterMember { return proto.CloneOf(m) }
