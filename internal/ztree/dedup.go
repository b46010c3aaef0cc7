package ztree

import (
	"google.golang.org/protobuf/proto"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

// The request-id table.
//
// Entries are remembered in log order, and log order is also eviction order
// (leader time never goes back and indexes increase), so the table is a
// queue: new entries are appended at the tail, evicted ones leave at the
// head. It is kept as an append-only log of entries in fixed-size chunks
// plus a Go map from (client id, request id) to the live entry:
//
//   - A state holds a dedupView: its own copy of the chunk list and its
//     [head, tail) range of sequence numbers. Appending writes a slot past
//     every existing view's tail and evicting only moves the head, so a
//     view's entries never change under it: snapshots walk a view while
//     apply goes on, like the radix trees.
//   - The map holds the newest state's entries only. Apply is the one user
//     of lookups and always extends the newest state (states form one chain:
//     a failed multi is discarded before the table is touched), which
//     dedupLog.extend checks.
//
// An entry costs one map slot and one chunk slot, against two radix tree
// leaves, their inner nodes and their mutation channels before, and its
// result is kept encoded, so the garbage collector has a few pointers to
// trace per entry instead of a tree of protobuf messages.

// dedupChunk is the number of entries per chunk of the log.
const dedupChunk = 1024

// dedupID is an entry's identity: its client scope and request id.
type dedupID struct{ client, request string }

// dedupLog is a tree's one mutable request-id table, owned by its writer
// (Apply and Restore, serialized by Tree.mu).
type dedupLog struct {
	byID   map[dedupID]*dedupEntry
	chunks []*[dedupChunk]*dedupEntry
	first  uint64 // sequence number of chunks[0][0]; a multiple of dedupChunk
	head   uint64 // the live entries are [head, tail)
	tail   uint64
}

// dedupView is one state's read-only view of the table.
type dedupView struct {
	log        *dedupLog
	chunks     []*[dedupChunk]*dedupEntry
	first      uint64
	head, tail uint64
}

func newDedupLog() *dedupLog { return &dedupLog{byID: make(map[dedupID]*dedupEntry)} }

// view is the table as it stands.
func (l *dedupLog) view() dedupView {
	return dedupView{log: l, chunks: l.chunks, first: l.first, head: l.head, tail: l.tail}
}

// extend checks that v is the table as it stands, before a writer changes it.
func (l *dedupLog) extend(v dedupView) {
	if v.log != l || v.head != l.head || v.tail != l.tail {
		panic("ztree: request-id table changed from a state that is not the newest")
	}
}

// len is the number of live entries.
func (l *dedupLog) len() int { return int(l.tail - l.head) }

// lookup returns the live entry for id.
func (l *dedupLog) lookup(id dedupID) (*dedupEntry, bool) {
	e, ok := l.byID[id]
	return e, ok
}

// push appends e (which must be newer than every entry) and indexes it.
func (l *dedupLog) push(e *dedupEntry) {
	if l.tail == l.first+uint64(len(l.chunks))*dedupChunk {
		l.chunks = append(l.chunks, new([dedupChunk]*dedupEntry))
	}
	e.seq = l.tail
	i := l.tail - l.first
	l.chunks[i/dedupChunk][i%dedupChunk] = e
	l.tail++
	l.byID[dedupID{e.clientID, e.requestID}] = e
}

// oldest returns the oldest live entry.
func (l *dedupLog) oldest() (*dedupEntry, bool) {
	if l.head == l.tail {
		return nil, false
	}
	i := l.head - l.first
	return l.chunks[i/dedupChunk][i%dedupChunk], true
}

// pop forgets the oldest live entry. A chunk whose entries have all been
// evicted leaves the list (views that still hold it keep it alive). Its
// slot in the list's backing array is left as it is, since older views may
// read that array; the array is dropped when append next reallocates it.
func (l *dedupLog) pop() {
	e, ok := l.oldest()
	if !ok {
		return
	}
	delete(l.byID, dedupID{e.clientID, e.requestID})
	l.head++
	if l.head-l.first == dedupChunk {
		l.chunks = l.chunks[1:]
		l.first += dedupChunk
	}
}

// Len is the number of entries in the view.
func (v dedupView) Len() int { return int(v.tail - v.head) }

func (v dedupView) at(seq uint64) *dedupEntry {
	i := seq - v.first
	return v.chunks[i/dedupChunk][i%dedupChunk]
}

// walk calls f on the view's entries, oldest first, until f returns true.
func (v dedupView) walk(f func(*dedupEntry) bool) {
	for seq := v.head; seq < v.tail; seq++ {
		if f(v.at(seq)) {
			return
		}
	}
}

// Get returns the view's entry for (client id, request id). On the newest
// state it is one map lookup; on an older view it may scan. It reads the
// writer's map, so only the writer's goroutine may call it (tests do);
// concurrent readers use walk.
func (v dedupView) Get(clientID, requestID string) (*dedupEntry, bool) {
	if v.log == nil {
		return nil, false
	}
	if e, ok := v.log.byID[dedupID{clientID, requestID}]; ok && e.seq >= v.head && e.seq < v.tail && v.at(e.seq) == e {
		return e, true
	}
	var found *dedupEntry
	v.walk(func(e *dedupEntry) bool {
		if e.clientID == clientID && e.requestID == requestID {
			found = e
		}
		return found != nil
	})
	return found, found != nil
}

// encodeResult is how a remembered result is stored: its deterministic
// encoding, so that replaying it returns a private copy and the table holds
// no message trees.
func encodeResult(res *peerv1.CommandResult) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	if err != nil {
		// Results are built from decoded commands and this package's own
		// messages, so this does not happen; answer a retry with the error
		// rather than with nothing, alike on every node.
		b, _ = proto.Marshal(resultErr(errInvalid("result: %v", err)))
	}
	return b
}

// decodeResult returns a new copy of a stored result.
func decodeResult(b []byte) *peerv1.CommandResult {
	res := new(peerv1.CommandResult)
	if err := proto.Unmarshal(b, res); err != nil {
		return resultErr(errInvalid("result: %v", err)) // stored by encodeResult: does not happen
	}
	return res
}
