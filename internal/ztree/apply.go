package ztree

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"google.golang.org/protobuf/proto"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Request-id deduplication. A command with a request id is remembered with
// its result under the key (client id, request id), together with its
// fingerprint (see Fingerprint). A later command with the same key and the
// same fingerprint is a retry: it gets the remembered result back and changes
// nothing. The same key with another fingerprint is a different request
// reusing the id: it gets an InvalidArgument result and changes nothing.
// Entries are evicted deterministically, from leader time and log order only,
// so every node holds the same table: an entry is dropped once it is older
// than DedupWindowMs of leader time, and the oldest entries are dropped while
// there are more than DedupMaxEntries. Changing either constant changes the
// state machine: every node of a cluster must agree.
const (
	// DedupWindowMs is how long (in leader time) a request id is remembered:
	// a retry is deduplicated if it is applied within 10 minutes of the first
	// attempt.
	DedupWindowMs int64 = 10 * 60 * 1000
	// DedupMaxEntries is the most request ids remembered at once.
	DedupMaxEntries = 200_000
)

// Entry is one raft log entry to apply.
type Entry struct {
	// Index is the entry's raft index; it becomes the zxid of its changes.
	Index uint64
	// Cmd is the decoded command; nil for a raft entry that carries no FSM
	// command (configuration change, barrier), which only advances the index.
	// The tree may keep its fingerprint: the caller must not modify the
	// command's byte slices after Apply.
	Cmd *peerv1.Command
}

// Tree is the replicated znode tree. It has one writer (Apply, Restore;
// they are serialized anyway) and any number of concurrent readers (View),
// which never block the writer.
type Tree struct {
	mu       sync.Mutex // serializes Apply and Restore
	cur      atomic.Pointer[state]
	dedupMax int // DedupMaxEntries; smaller in tests
}

// New returns a tree holding only the root "/", at index 0.
func New() *Tree {
	t := &Tree{dedupMax: DedupMaxEntries}
	t.cur.Store(emptyState())
	return t
}

// View returns a point-in-time view of the tree. It is O(1).
func (t *Tree) View() *View { return &View{s: t.cur.Load()} }

// Apply applies entries, in order, and publishes the result at once: a View
// sees none or all of the batch. It returns one result per entry (nil for an
// entry without a command) and the events the batch produced, in zxid order.
// Results and events belong to the caller; the byte slices in events are
// shared with the tree and must not be modified.
//
// Entry indexes must be strictly increasing and above the applied index;
// Apply panics otherwise, since raft never does that and applying out of
// order would silently diverge from the other nodes. Anything else, including
// malformed commands, yields an error result.
func (t *Tree) Apply(entries []Entry) (results []*peerv1.CommandResult, events []*colonyv1.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.cur.Load()
	last := s.index
	for _, e := range entries {
		if e.Index <= last {
			panic(fmt.Sprintf("ztree: entry index %d is not above the applied index %d", e.Index, last))
		}
		last = e.Index
	}
	results = make([]*peerv1.CommandResult, len(entries))
	for i, e := range entries {
		if e.Cmd == nil {
			ns := *s
			ns.index = e.Index
			s = &ns
			continue
		}
		s, results[i], events = applyCommand(s, e.Index, e.Cmd, t.dedupMax, events)
	}
	t.cur.Store(s)
	return results, events
}

// applyCommand applies one command to s and returns the new state, the
// command's result and events with the command's events appended.
//
// It costs one radix transaction per command: the clock and index advance,
// old request ids are evicted and the result is remembered in the same writer
// as the operation itself. Only a failed multi, whose changes are discarded,
// takes a second writer for the bookkeeping.
func applyCommand(s *state, index uint64, cmd *peerv1.Command, dedupMax int, events []*colonyv1.Event) (*state, *peerv1.CommandResult, []*colonyv1.Event) {
	timeMs := max(cmd.GetTimeMs(), s.timeMs) // the clock never goes back
	cutoff := satAdd(timeMs, -DedupWindowMs)
	bookkeeping := func(w *writer) {
		w.index, w.timeMs = index, timeMs
		w.evictDedupBefore(cutoff)
	}

	table := s.dedup.log
	table.extend(s.dedup)
	hasID := cmd.GetRequestId() != ""
	if hasID {
		// An id older than the window counts as forgotten, exactly as if it
		// had been evicted before the lookup.
		if e, ok := table.lookup(dedupID{cmd.GetClientId(), cmd.GetRequestId()}); ok && e.timeMs >= cutoff {
			w := begin(s)
			bookkeeping(w)
			return w.commit(), e.replay(s, cmd), events
		}
	}

	w := begin(s)
	w.index, w.timeMs = index, timeMs // exec stamps them into stats
	res, keep := w.exec(cmd)
	if keep {
		events = append(events, w.events...)
	} else {
		w = begin(s)
	}
	bookkeeping(w)
	if hasID {
		w.remember(cmd, res)
		if n := table.len() - dedupMax; n > 0 {
			w.evictOldestDedup(n)
		}
	}
	return w.commit(), res, events
}

// ltx is one radix tree being modified: it starts a transaction on the first
// write only, so that untouched trees cost nothing.
type ltx[T any] struct {
	tree *iradix.Tree[T]
	txn  *iradix.Txn[T]
}

func newLtx[T any](tree *iradix.Tree[T]) ltx[T] { return ltx[T]{tree: tree} }

func (l *ltx[T]) get(k []byte) (T, bool) {
	if l.txn != nil {
		return l.txn.Get(k)
	}
	return l.tree.Get(k)
}

func (l *ltx[T]) root() *iradix.Node[T] {
	if l.txn != nil {
		return l.txn.Root()
	}
	return l.tree.Root()
}

func (l *ltx[T]) write() *iradix.Txn[T] {
	if l.txn == nil {
		l.txn = l.tree.Txn()
	}
	return l.txn
}

func (l *ltx[T]) insert(k []byte, v T) { l.write().Insert(k, v) }

func (l *ltx[T]) delete(k []byte) { l.write().Delete(k) }

func (l *ltx[T]) done() *iradix.Tree[T] {
	if l.txn == nil {
		return l.tree
	}
	return l.txn.Commit()
}

// writer builds the next state from a base state. Discarding a writer (not
// calling commit) discards its changes: that is how a failed multi rolls back.
type writer struct {
	index  uint64
	timeMs int64

	nodes      ltx[*node]
	sessions   ltx[*session]
	ephemerals ltx[struct{}]
	ttls       ltx[struct{}]
	containers ltx[struct{}]
	dedup      *dedupLog // changed in place: see dedupLog
	members    ltx[*peerv1.RegisterMember]

	events []*colonyv1.Event
}

func begin(s *state) *writer {
	return &writer{
		index:      s.index,
		timeMs:     s.timeMs,
		nodes:      newLtx(s.nodes),
		sessions:   newLtx(s.sessions),
		ephemerals: newLtx(s.ephemerals),
		ttls:       newLtx(s.ttls),
		containers: newLtx(s.containers),
		dedup:      s.dedup.log,
		members:    newLtx(s.members),
	}
}

func (w *writer) commit() *state {
	return &state{
		index:      w.index,
		timeMs:     w.timeMs,
		nodes:      w.nodes.done(),
		sessions:   w.sessions.done(),
		ephemerals: w.ephemerals.done(),
		ttls:       w.ttls.done(),
		containers: w.containers.done(),
		dedup:      w.dedup.view(),
		members:    w.members.done(),
	}
}

func resultOK() *peerv1.CommandResult {
	return &peerv1.CommandResult{Result: &peerv1.CommandResult_Ok{Ok: &peerv1.Empty{}}}
}

func resultErr(err error) *peerv1.CommandResult {
	return &peerv1.CommandResult{Result: &peerv1.CommandResult_Error{Error: ToOpError(err)}}
}

// exec applies a command's operation. keep is false when the writer's changes
// must be discarded (a failed multi).
//
// Sessions belong to the identity that opened them (cmd.Owner of the
// OpenSession): a CloseSession or an ephemeral create by another identity
// fails with ErrSessionNotOwned and changes nothing. The check is here, in
// the state machine, and not only on the node that received the request:
// that node may not have applied the session yet, and every node must
// decide alike. ExpireSessions and Reap are the nodes' own and not checked.
func (w *writer) exec(cmd *peerv1.Command) (res *peerv1.CommandResult, keep bool) {
	switch op := cmd.GetOp().(type) {
	case *peerv1.Command_Txn:
		return w.txn(op.Txn.GetOps(), cmd.GetOwner())
	case *peerv1.Command_OpenSession:
		if ttl := op.OpenSession.GetTtlMs(); ttl <= 0 {
			return resultErr(errInvalid("ttl_ms: must be > 0, got %d", ttl)), false
		}
		w.sessions.insert(be64(w.index), &session{
			id:        w.index,
			ttlMs:     op.OpenSession.GetTtlMs(),
			name:      op.OpenSession.GetName(),
			createdMs: w.timeMs,
			owner:     cmd.GetOwner(),
		})
		return &peerv1.CommandResult{Result: &peerv1.CommandResult_OpenSession{
			OpenSession: &colonyv1.OpenSessionResponse{SessionId: w.index, TtlMs: op.OpenSession.GetTtlMs()},
		}}, true
	case *peerv1.Command_CloseSession:
		id := op.CloseSession.GetSessionId()
		sess, ok := w.sessions.get(be64(id))
		if !ok {
			return resultErr(errSessionNotFound(id)), false
		}
		if !sess.usableBy(cmd.GetOwner()) {
			return resultErr(SessionNotOwned(id, cmd.GetOwner(), "close it")), false
		}
		w.endSession(id)
		return resultOK(), true
	case *peerv1.Command_ExpireSessions:
		for _, id := range op.ExpireSessions.GetSessionIds() {
			w.endSession(id) // unknown ids: already gone, nothing to do
		}
		return resultOK(), true
	case *peerv1.Command_Reap:
		for _, t := range op.Reap.GetTargets() {
			w.reap(t)
		}
		return resultOK(), true
	case *peerv1.Command_RegisterMember:
		m := op.RegisterMember
		if m.GetId() == "" {
			return resultErr(errInvalid("id: must not be empty")), false
		}
		w.members.insert([]byte(m.GetId()), cloneMember(m))
		return resultOK(), true
	case *peerv1.Command_ForgetMember:
		if op.ForgetMember.GetId() == "" {
			return resultErr(errInvalid("id: must not be empty")), false
		}
		w.members.delete([]byte(op.ForgetMember.GetId()))
		return resultOK(), true
	case *peerv1.Command_Noop:
		return resultOK(), true
	default:
		return resultErr(errInvalid("command: no operation set")), false
	}
}

// txn applies ops in order, all or nothing, on behalf of owner (the
// command's identity).
func (w *writer) txn(ops []*colonyv1.Op, owner string) (*peerv1.CommandResult, bool) {
	results := make([]*colonyv1.OpResult, len(ops))
	for i, op := range ops {
		r, err := w.op(op, owner)
		if err != nil {
			for j := range results {
				results[j] = opErrorResult(errAborted(i))
			}
			results[i] = opErrorResult(err)
			return &peerv1.CommandResult{Result: &peerv1.CommandResult_Txn{Txn: &colonyv1.MultiResponse{
				FailedOp: int32(i),
				Results:  results,
			}}}, false
		}
		results[i] = r
	}
	return &peerv1.CommandResult{Result: &peerv1.CommandResult_Txn{Txn: &colonyv1.MultiResponse{
		Succeeded: true,
		Results:   results,
	}}}, true
}

func opErrorResult(err error) *colonyv1.OpResult {
	return &colonyv1.OpResult{Result: &colonyv1.OpResult_Error{Error: ToOpError(err)}}
}

func (w *writer) op(op *colonyv1.Op, owner string) (*colonyv1.OpResult, error) {
	if err := validateOp(op); err != nil {
		return nil, err
	}
	switch o := op.GetOp().(type) {
	case *colonyv1.Op_Create:
		return w.create(o.Create, owner)
	case *colonyv1.Op_Set:
		return w.set(o.Set)
	case *colonyv1.Op_Delete:
		return w.deleteOp(o.Delete)
	case *colonyv1.Op_Check:
		return w.check(o.Check)
	}
	return nil, errInvalid("op: must be one of check, create, set or delete") // unreachable: validateOp checked
}

func (w *writer) getNode(path string) (*node, bool) { return w.nodes.get(nodeKey(path)) }

// checkVersion implements expected versions: -1 (or unset) matches any.
func checkVersion(path string, expected int64, n *node) error {
	if expected != -1 && expected != n.version {
		return errBadVersion(path, expected, n.version)
	}
	return nil
}

// create creates a node; an ephemeral one in a session owner may use.
func (w *writer) create(c *colonyv1.CreateRequest, owner string) (*colonyv1.OpResult, error) {
	path := c.GetPath()
	parentPath, _ := parentOf(path)
	parent, ok := w.getNode(parentPath)
	if !ok {
		return nil, errNoParent(parentPath, path)
	}
	if parent.kind == colonyv1.NodeKind_NODE_KIND_EPHEMERAL {
		return nil, errEphemeralParent(parentPath, path)
	}
	if c.GetSequential() {
		// Like ZooKeeper: the parent's cversion before this create.
		path += fmt.Sprintf("%0*d", seqDigits, parent.cversion)
		if err := ValidatePath(path); err != nil {
			return nil, err
		}
	}
	if _, exists := w.getNode(path); exists {
		return nil, errNodeExists(path)
	}
	n := &node{
		data:    cloneData(c.GetData()),
		czxid:   w.index,
		mzxid:   w.index,
		pzxid:   w.index,
		ctimeMs: w.timeMs,
		mtimeMs: w.timeMs,
		kind:    c.GetKind(),
		ttlMs:   c.GetTtlMs(),
	}
	if n.kind == colonyv1.NodeKind_NODE_KIND_EPHEMERAL {
		sk := be64(c.GetSessionId())
		sess, ok := w.sessions.get(sk)
		if !ok {
			return nil, errSessionNotFound(c.GetSessionId())
		}
		if !sess.usableBy(owner) {
			return nil, SessionNotOwned(sess.id, owner, "create ephemeral node "+path+" in it")
		}
		ns := *sess
		ns.ephemerals++
		w.sessions.insert(sk, &ns)
		w.ephemerals.insert(ephemeralKey(sess.id, path), struct{}{})
		n.owner = sess.id
	}
	w.nodes.insert(nodeKey(path), n)
	w.indexReapable(path, n)

	np := *parent
	np.cversion++
	np.numChildren++
	np.pzxid = w.index
	w.nodes.insert(nodeKey(parentPath), &np)

	stat := n.stat()
	w.emit(colonyv1.EventType_EVENT_TYPE_CREATED, path, stat, n.data)
	w.emit(colonyv1.EventType_EVENT_TYPE_CHILDREN_CHANGED, parentPath, np.stat(), nil)
	return &colonyv1.OpResult{Result: &colonyv1.OpResult_Create{
		Create: &colonyv1.CreateResponse{Path: path, Stat: n.stat()},
	}}, nil
}

func (w *writer) set(s *colonyv1.SetRequest) (*colonyv1.OpResult, error) {
	path := s.GetPath()
	n, ok := w.getNode(path)
	if !ok {
		return nil, errNoNode(path)
	}
	if s.ExpectedVersion != nil {
		if err := checkVersion(path, s.GetExpectedVersion(), n); err != nil {
			return nil, err
		}
	}
	nn := *n
	nn.data = cloneData(s.GetData())
	nn.version++
	nn.mzxid = w.index
	nn.mtimeMs = w.timeMs
	if nn.kind == colonyv1.NodeKind_NODE_KIND_TTL && nn.mtimeMs != n.mtimeMs {
		// The expiry moved: re-key the TTL index.
		w.ttls.delete(ttlKey(n, path))
		w.ttls.insert(ttlKey(&nn, path), struct{}{})
	}
	w.nodes.insert(nodeKey(path), &nn)

	w.emit(colonyv1.EventType_EVENT_TYPE_DATA_CHANGED, path, nn.stat(), nn.data)
	return &colonyv1.OpResult{Result: &colonyv1.OpResult_Set{
		Set: &colonyv1.SetResponse{Stat: nn.stat()},
	}}, nil
}

func (w *writer) deleteOp(d *colonyv1.DeleteRequest) (*colonyv1.OpResult, error) {
	path := d.GetPath()
	n, ok := w.getNode(path)
	if !ok {
		return nil, errNoNode(path)
	}
	if d.ExpectedVersion != nil {
		if err := checkVersion(path, d.GetExpectedVersion(), n); err != nil {
			return nil, err
		}
	}
	if n.numChildren > 0 {
		return nil, errNotEmpty(path, n.numChildren)
	}
	w.remove(path, n)
	return &colonyv1.OpResult{Result: &colonyv1.OpResult_Delete{Delete: &colonyv1.DeleteResponse{}}}, nil
}

func (w *writer) check(c *colonyv1.CheckOp) (*colonyv1.OpResult, error) {
	path := c.GetPath()
	n, ok := w.getNode(path)
	if !ok {
		return nil, errNoNode(path)
	}
	if err := checkVersion(path, c.GetVersion(), n); err != nil {
		return nil, err
	}
	return &colonyv1.OpResult{Result: &colonyv1.OpResult_Check{
		Check: &colonyv1.CheckOp{Path: path, Version: c.GetVersion()},
	}}, nil
}

// remove deletes a childless, non-root node and everything that indexes it,
// updates its parent and emits DELETED and CHILDREN_CHANGED.
func (w *writer) remove(path string, n *node) {
	w.nodes.delete(nodeKey(path))
	switch n.kind {
	case colonyv1.NodeKind_NODE_KIND_EPHEMERAL:
		w.ephemerals.delete(ephemeralKey(n.owner, path))
		sk := be64(n.owner)
		if sess, ok := w.sessions.get(sk); ok { // absent while the session itself ends
			ns := *sess
			ns.ephemerals--
			w.sessions.insert(sk, &ns)
		}
	case colonyv1.NodeKind_NODE_KIND_TTL:
		w.ttls.delete(ttlKey(n, path))
	case colonyv1.NodeKind_NODE_KIND_CONTAINER:
		w.containers.delete([]byte(path))
	}

	parentPath, _ := parentOf(path)
	parent, _ := w.getNode(parentPath) // exists: a node's parent always does
	np := *parent
	np.cversion++
	np.numChildren--
	np.pzxid = w.index
	w.nodes.insert(nodeKey(parentPath), &np)

	w.emit(colonyv1.EventType_EVENT_TYPE_DELETED, path, n.stat(), nil)
	w.emit(colonyv1.EventType_EVENT_TYPE_CHILDREN_CHANGED, parentPath, np.stat(), nil)
}

// indexReapable adds a new TTL or container node to its reap index.
func (w *writer) indexReapable(path string, n *node) {
	switch n.kind {
	case colonyv1.NodeKind_NODE_KIND_TTL:
		w.ttls.insert(ttlKey(n, path), struct{}{})
	case colonyv1.NodeKind_NODE_KIND_CONTAINER:
		w.containers.insert([]byte(path), struct{}{})
	}
}

// endSession deletes a session and its ephemeral nodes (in path order). It
// reports whether the session existed.
func (w *writer) endSession(id uint64) bool {
	sk := be64(id)
	if _, ok := w.sessions.get(sk); !ok {
		return false
	}
	w.sessions.delete(sk)
	var paths []string
	w.ephemerals.root().WalkPrefix(sk, func(k []byte, _ struct{}) bool {
		paths = append(paths, string(k[len(sk):]))
		return false
	})
	for _, p := range paths {
		if n, ok := w.getNode(p); ok {
			w.remove(p, n)
		}
	}
	return true
}

// reap deletes t's node if it is unchanged since the leader found it
// reapable and still is. Anything else (including a malformed target) is
// skipped: the leader will look again.
func (w *writer) reap(t *peerv1.ReapTarget) {
	path := t.GetPath()
	if ValidatePath(path) != nil || path == "/" {
		return
	}
	n, ok := w.getNode(path)
	if !ok || n.mzxid != t.GetMzxid() || n.pzxid != t.GetPzxid() || n.numChildren != 0 {
		return
	}
	switch {
	case n.kind == colonyv1.NodeKind_NODE_KIND_CONTAINER && n.cversion > 0:
	case n.kind == colonyv1.NodeKind_NODE_KIND_TTL && n.expiresMs() <= w.timeMs:
	default:
		return
	}
	w.remove(path, n)
}

func (w *writer) emit(typ colonyv1.EventType, path string, stat *colonyv1.Stat, data []byte) {
	w.events = append(w.events, &colonyv1.Event{Type: typ, Path: path, Zxid: w.index, Stat: stat, Data: data})
}

// remember stores a command's result in the request-id table, encoded (so
// the caller may modify the one it got). The fingerprint is kept as it is
// (see Entry).
func (w *writer) remember(cmd *peerv1.Command, res *peerv1.CommandResult) {
	w.dedup.push(&dedupEntry{
		clientID:    cmd.GetClientId(),
		requestID:   cmd.GetRequestId(),
		fingerprint: cmd.GetFingerprint(),
		timeMs:      w.timeMs,
		index:       w.index,
		result:      encodeResult(res),
	})
}

// replay answers cmd, whose key e remembers, from the table: the remembered
// result if cmd is the same request (a retry), an InvalidArgument result if
// it is a different one. A retried OpenSession whose session has ended since
// is NotFound: answering its id would hand out a session that no longer
// exists. It reads s and changes nothing.
func (e *dedupEntry) replay(s *state, cmd *peerv1.Command) *peerv1.CommandResult {
	if !bytes.Equal(e.fingerprint, cmd.GetFingerprint()) {
		return resultErr(errRequestIDReused(e.requestID))
	}
	res := decodeResult(e.result)
	if o := res.GetOpenSession(); o != nil {
		if _, open := s.sessions.Get(be64(o.GetSessionId())); !open {
			return resultErr(errSessionEnded(o.GetSessionId()))
		}
	}
	return res
}

// evictDedupBefore forgets the request ids remembered before cutoffMs.
func (w *writer) evictDedupBefore(cutoffMs int64) {
	for e, ok := w.dedup.oldest(); ok && e.timeMs < cutoffMs; e, ok = w.dedup.oldest() {
		w.dedup.pop()
	}
}

// evictOldestDedup forgets the n oldest request ids.
func (w *writer) evictOldestDedup(n int) {
	for range n {
		w.dedup.pop()
	}
}

// Fingerprint returns what identifies cmd's request for deduplication: a
// SHA-256 of its operation (the deterministic encoding of cmd without
// request_id, time_ms, client_id, owner and fingerprint). The leader stamps it into
// the command as it appends it to the log, so every node compares the same
// bytes whatever version of this code computed them.
func Fingerprint(cmd *peerv1.Command) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&peerv1.Command{Op: cmd.GetOp()})
	if err != nil {
		// Only an invalid message fails (e.g. a string that is not UTF-8);
		// hash its error text, so such commands share a fingerprint of their own.
		b = []byte(err.Error())
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// cloneData copies data on its way into the tree, so that nothing the caller
// does later can change it. Empty data is stored as nil.
func cloneData(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}
