package ztree

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// snapshotFormat is the format WriteSnapshot writes and Restore reads.
const snapshotFormat = 1

// Size limits Restore applies to a single record, so that a corrupt length
// prefix cannot make it allocate without bound. A record holds one node (its
// data and path) or one remembered result, far below these.
const (
	maxHeaderBytes = 1 << 10
	maxRecordBytes = 64 << 20
)

// WriteSnapshot writes the view as a stream of length-delimited protobuf
// messages: a SnapshotHeader, then SnapshotRecords: every node in key order
// (by depth, then path: the root first, parents before children), every
// session by id, every remembered request id oldest first, every member by
// id, and finally a record with end set. The same state always produces the
// same bytes.
func (v *View) WriteSnapshot(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	mo := protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}
	var err error
	put := func(m proto.Message) bool {
		if err == nil {
			_, err = mo.MarshalTo(bw, m)
		}
		return err != nil // stops a walk on error
	}
	s := v.s

	put(&peerv1.SnapshotHeader{Format: snapshotFormat, Index: s.index, TimeMs: s.timeMs})
	s.nodes.Root().Walk(func(k []byte, n *node) bool {
		return put(&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Node{Node: &peerv1.SnapshotNode{
			Path: pathOfKey(k), Data: n.data, Stat: n.stat(),
		}}})
	})
	s.sessions.Root().Walk(func(_ []byte, ss *session) bool {
		return put(&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Session{Session: &peerv1.SnapshotSession{
			SessionId: ss.id, TtlMs: ss.ttlMs, Name: ss.name, CreatedMs: ss.createdMs, Owner: ss.owner,
		}}})
	})
	var rec, scratch []byte
	s.dedup.walk(func(e *dedupEntry) bool {
		if err == nil {
			rec, scratch = appendDelimitedDedupRecord(rec[:0], scratch[:0], e)
			_, err = bw.Write(rec)
		}
		return err != nil
	})
	s.members.Root().Walk(func(_ []byte, m *peerv1.RegisterMember) bool {
		return put(&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Member{Member: m}})
	})
	put(&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_End{End: true}})
	if err != nil {
		return fmt.Errorf("ztree: writing snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("ztree: writing snapshot: %w", err)
	}
	return nil
}

// appendDelimitedDedupRecord appends e as the length-delimited
// SnapshotRecord it is in a snapshot (protodelim's framing), using scratch
// for the inner message; it returns both buffers for reuse.
func appendDelimitedDedupRecord(b, scratch []byte, e *dedupEntry) (rec, scratchOut []byte) {
	scratch = appendDedupRecord(scratch, e)
	b = protowire.AppendVarint(b, uint64(len(scratch)))
	return append(b, scratch...), scratch
}

// appendDedupRecord appends e as the SnapshotRecord it is in a snapshot,
// encoded exactly as a deterministic Marshal of that message would be
// (fields in number order, zero values left out), without decoding the
// stored result: it is already its encoding.
func appendDedupRecord(b []byte, e *dedupEntry) []byte {
	size := 0
	if e.requestID != "" {
		size += 1 + protowire.SizeBytes(len(e.requestID))
	}
	if e.timeMs != 0 {
		size += 1 + protowire.SizeVarint(uint64(e.timeMs))
	}
	if e.index != 0 {
		size += 1 + protowire.SizeVarint(e.index)
	}
	size += 1 + protowire.SizeBytes(len(e.result))
	if e.clientID != "" {
		size += 1 + protowire.SizeBytes(len(e.clientID))
	}
	if len(e.fingerprint) > 0 {
		size += 1 + protowire.SizeBytes(len(e.fingerprint))
	}

	b = protowire.AppendTag(b, 3, protowire.BytesType) // SnapshotRecord.dedup
	b = protowire.AppendVarint(b, uint64(size))
	if e.requestID != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, e.requestID)
	}
	if e.timeMs != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.timeMs))
	}
	if e.index != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, e.index)
	}
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendBytes(b, e.result)
	if e.clientID != "" {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendString(b, e.clientID)
	}
	if len(e.fingerprint) > 0 {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendBytes(b, e.fingerprint)
	}
	return b
}

// Restore replaces all of the tree's state with the snapshot read from r (as
// written by WriteSnapshot). It reads up to and including the end record. It
// validates the snapshot and rebuilds every index; on any error (which
// matches ErrBadSnapshot) the tree is unchanged. Views taken before Restore
// keep seeing the old state.
func (t *Tree) Restore(r io.Reader) error {
	s, err := readSnapshot(r)
	if err != nil {
		return fmt.Errorf("ztree: restore: %w", err)
	}
	t.mu.Lock()
	t.cur.Store(s)
	t.mu.Unlock()
	return nil
}

// byteReader is what protodelim reads from.
type byteReader interface {
	io.Reader
	io.ByteReader
}

func readSnapshot(r io.Reader) (*state, error) {
	br, ok := r.(byteReader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	var hdr peerv1.SnapshotHeader
	if err := (protodelim.UnmarshalOptions{MaxSize: maxHeaderBytes}).UnmarshalFrom(br, &hdr); err != nil {
		return nil, readErr("header", err)
	}
	if hdr.GetFormat() != snapshotFormat {
		return nil, errBadSnapshot("unknown format %d (this version reads format %d)", hdr.GetFormat(), snapshotFormat)
	}

	b := newBuilder(&hdr)
	uo := protodelim.UnmarshalOptions{MaxSize: maxRecordBytes}
	for i := 0; ; i++ {
		var rec peerv1.SnapshotRecord
		if err := uo.UnmarshalFrom(br, &rec); err != nil {
			return nil, readErr(fmt.Sprintf("record %d", i), err)
		}
		var err error
		switch x := rec.GetRecord().(type) {
		case *peerv1.SnapshotRecord_Node:
			err = b.node(x.Node)
		case *peerv1.SnapshotRecord_Session:
			err = b.session(x.Session)
		case *peerv1.SnapshotRecord_Dedup:
			err = b.dedup(x.Dedup)
		case *peerv1.SnapshotRecord_Member:
			err = b.member(x.Member)
		case *peerv1.SnapshotRecord_End:
			if !x.End {
				err = errBadSnapshot("end record with end=false")
				break
			}
			return b.finish()
		default:
			err = errBadSnapshot("empty or unknown record")
		}
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
	}
}

// readErr wraps an error reading or decoding a record: the snapshot cannot
// be read. A stream that ends before the end record is truncated.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: reading %s: %w", ErrBadSnapshot, what, err)
}

// builder accumulates a snapshot's records into a new state.
type builder struct {
	hdr        *peerv1.SnapshotHeader
	nodes      *iradix.Txn[*node]
	sessions   *iradix.Txn[*session]
	ephemerals *iradix.Txn[struct{}]
	ttls       *iradix.Txn[struct{}]
	containers *iradix.Txn[struct{}]
	dedups     []*dedupEntry
	dedupSeen  map[dedupID]struct{}
	members    *iradix.Txn[*peerv1.RegisterMember]
}

func newBuilder(hdr *peerv1.SnapshotHeader) *builder {
	return &builder{
		hdr:        hdr,
		nodes:      iradix.New[*node]().Txn(),
		sessions:   iradix.New[*session]().Txn(),
		ephemerals: iradix.New[struct{}]().Txn(),
		ttls:       iradix.New[struct{}]().Txn(),
		containers: iradix.New[struct{}]().Txn(),
		dedupSeen:  make(map[dedupID]struct{}),
		members:    iradix.New[*peerv1.RegisterMember]().Txn(),
	}
}

func (b *builder) node(sn *peerv1.SnapshotNode) error {
	path := sn.GetPath()
	if err := ValidatePath(path); err != nil {
		return fmt.Errorf("%w: node: %w", ErrBadSnapshot, err)
	}
	st := sn.GetStat()
	if st == nil {
		return errBadSnapshot("node %s: no stat", path)
	}
	n := &node{
		czxid:       st.GetCzxid(),
		mzxid:       st.GetMzxid(),
		pzxid:       st.GetPzxid(),
		ctimeMs:     st.GetCtimeMs(),
		mtimeMs:     st.GetMtimeMs(),
		version:     st.GetVersion(),
		cversion:    st.GetCversion(),
		numChildren: st.GetNumChildren(),
		owner:       st.GetEphemeralOwner(),
		kind:        st.GetKind(),
		ttlMs:       st.GetTtlMs(),
	}
	if len(sn.GetData()) > 0 {
		n.data = sn.GetData() // freshly decoded: ours
	}
	if err := checkNode(path, n, st, b.hdr.GetIndex()); err != nil {
		return err
	}
	if _, dup := b.nodes.Insert(nodeKey(path), n); dup {
		return errBadSnapshot("node %s: duplicate", path)
	}
	switch n.kind {
	case colonyv1.NodeKind_NODE_KIND_EPHEMERAL:
		b.ephemerals.Insert(ephemeralKey(n.owner, path), struct{}{})
	case colonyv1.NodeKind_NODE_KIND_TTL:
		b.ttls.Insert(ttlKey(n, path), struct{}{})
	case colonyv1.NodeKind_NODE_KIND_CONTAINER:
		b.containers.Insert([]byte(path), struct{}{})
	}
	return nil
}

// checkNode checks what can be checked of a node on its own.
func checkNode(path string, n *node, st *colonyv1.Stat, index uint64) error {
	switch {
	case int(st.GetDataLength()) != len(n.data):
		return errBadSnapshot("node %s: data_length %d but %d bytes of data", path, st.GetDataLength(), len(n.data))
	case n.czxid > index || n.mzxid > index || n.pzxid > index:
		return errBadSnapshot("node %s: zxid above the snapshot index %d", path, index)
	case n.version < 0 || n.cversion < 0 || n.numChildren < 0:
		return errBadSnapshot("node %s: negative version or count", path)
	}
	isEphemeral := n.kind == colonyv1.NodeKind_NODE_KIND_EPHEMERAL
	switch {
	case path == "/" && (n.kind != colonyv1.NodeKind_NODE_KIND_PERSISTENT || n.czxid != 0):
		return errBadSnapshot("root: must be persistent with czxid 0")
	case isEphemeral != (n.owner != 0):
		return errBadSnapshot("node %s: ephemeral_owner %d with kind %v", path, n.owner, n.kind)
	case (n.kind == colonyv1.NodeKind_NODE_KIND_TTL) != (n.ttlMs > 0) || n.ttlMs < 0:
		return errBadSnapshot("node %s: ttl_ms %d with kind %v", path, n.ttlMs, n.kind)
	}
	switch n.kind {
	case colonyv1.NodeKind_NODE_KIND_PERSISTENT, colonyv1.NodeKind_NODE_KIND_EPHEMERAL,
		colonyv1.NodeKind_NODE_KIND_CONTAINER, colonyv1.NodeKind_NODE_KIND_TTL:
		return nil
	default:
		return errBadSnapshot("node %s: unknown kind %d", path, int32(n.kind))
	}
}

func (b *builder) session(ss *peerv1.SnapshotSession) error {
	id := ss.GetSessionId()
	if id == 0 || id > b.hdr.GetIndex() {
		return errBadSnapshot("session %#x: id must be in [1, %d]", id, b.hdr.GetIndex())
	}
	s := &session{id: id, ttlMs: ss.GetTtlMs(), name: ss.GetName(), createdMs: ss.GetCreatedMs(), owner: ss.GetOwner()}
	if _, dup := b.sessions.Insert(be64(id), s); dup {
		return errBadSnapshot("session %#x: duplicate", id)
	}
	return nil
}

// dedup restores a remembered request id. A record written before client
// ids and fingerprints existed has neither: it restores in the empty client
// scope with an empty fingerprint, exactly what it meant then.
func (b *builder) dedup(sd *peerv1.SnapshotDedup) error {
	id, client := sd.GetRequestId(), sd.GetClientId()
	switch {
	case id == "":
		return errBadSnapshot("dedup: empty request id")
	case sd.GetResult() == nil:
		return errBadSnapshot("dedup %q/%q: no result", client, id)
	case sd.GetIndex() > b.hdr.GetIndex():
		return errBadSnapshot("dedup %q/%q: index above the snapshot index %d", client, id, b.hdr.GetIndex())
	}
	if _, dup := b.dedupSeen[dedupID{client, id}]; dup {
		return errBadSnapshot("dedup %q/%q: duplicate", client, id)
	}
	b.dedupSeen[dedupID{client, id}] = struct{}{}
	e := &dedupEntry{
		clientID:    client,
		requestID:   id,
		fingerprint: sd.GetFingerprint(),
		timeMs:      sd.GetTimeMs(),
		index:       sd.GetIndex(),
		result:      encodeResult(sd.GetResult()),
	}
	if len(e.fingerprint) == 0 {
		e.fingerprint = nil // as remember stores an absent one
	}
	b.dedups = append(b.dedups, e)
	return nil
}

func (b *builder) member(m *peerv1.RegisterMember) error {
	if m.GetId() == "" {
		return errBadSnapshot("member: empty id")
	}
	if _, dup := b.members.Insert([]byte(m.GetId()), m); dup {
		return errBadSnapshot("member %q: duplicate", m.GetId())
	}
	return nil
}

// dedupTable builds the request-id table in eviction order: by time, then
// index, then key, the order WriteSnapshot writes (a snapshot out of that
// order is put in it).
func (b *builder) dedupTable() *dedupLog {
	slices.SortStableFunc(b.dedups, func(x, y *dedupEntry) int {
		return cmp.Or(
			cmp.Compare(x.timeMs, y.timeMs),
			cmp.Compare(x.index, y.index),
			bytes.Compare(dedupKey(x.clientID, x.requestID), dedupKey(y.clientID, y.requestID)),
		)
	})
	l := newDedupLog()
	for _, e := range b.dedups {
		l.push(e)
	}
	return l
}

// finish checks what spans records (the tree's shape, ephemeral owners) and
// fills in the sessions' ephemeral counts.
func (b *builder) finish() (*state, error) {
	nodes := b.nodes.Commit()
	if _, ok := nodes.Get(nodeKey("/")); !ok {
		return nil, errBadSnapshot("no root node")
	}
	// Check every node's parent and count children, then compare the counts
	// with num_children.
	children := make(map[string]int32)
	var err error
	nodes.Root().Walk(func(k []byte, n *node) bool {
		path := pathOfKey(k)
		if path == "/" {
			return false
		}
		parentPath, _ := parentOf(path)
		parent, ok := nodes.Get(nodeKey(parentPath))
		switch {
		case !ok:
			err = errBadSnapshot("node %s: parent %s missing", path, parentPath)
		case parent.kind == colonyv1.NodeKind_NODE_KIND_EPHEMERAL:
			err = errBadSnapshot("node %s: parent %s is ephemeral", path, parentPath)
		}
		children[parentPath]++
		return err != nil
	})
	if err != nil {
		return nil, err
	}
	nodes.Root().Walk(func(k []byte, n *node) bool {
		if path := pathOfKey(k); n.numChildren != children[path] {
			err = errBadSnapshot("node %s: num_children %d but %d children", path, n.numChildren, children[path])
		}
		return err != nil
	})
	if err != nil {
		return nil, err
	}

	// Every ephemeral's owner must exist; count them per session.
	ephemerals := b.ephemerals.Commit()
	ephemerals.Root().Walk(func(k []byte, _ struct{}) bool {
		sk := k[:8]
		s, ok := b.sessions.Get(sk)
		if !ok {
			err = errBadSnapshot("node %s: owner session %#x missing", k[8:], fromBE64(sk))
			return true
		}
		ns := *s
		ns.ephemerals++
		b.sessions.Insert(sk, &ns)
		return false
	})
	if err != nil {
		return nil, err
	}

	return &state{
		index:      b.hdr.GetIndex(),
		timeMs:     b.hdr.GetTimeMs(),
		nodes:      nodes,
		sessions:   b.sessions.Commit(),
		ephemerals: ephemerals,
		ttls:       b.ttls.Commit(),
		containers: b.containers.Commit(),
		dedup:      b.dedupTable().view(),
		members:    b.members.Commit(),
	}, nil
}
