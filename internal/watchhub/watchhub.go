// Package watchhub delivers znode change events from the coordinator's FSM to
// watchers, in zxid order, never duplicated and never silently dropped.
//
// The FSM apply goroutine calls Publish with the events of each applied raft
// entry. Publish appends them to one shared, bounded ring of events, each with
// a global sequence number, and wakes every waiting watcher by closing a
// broadcast channel. It never waits for watchers: there are no per-watcher
// queues and no registry of watchers to walk. Each Subscription reads the ring
// lock-free at its own cursor and filters the events itself.
//
// The ring holds at most Config.MaxEvents events and Config.MaxBytes bytes;
// older events are evicted. The horizon is the largest zxid that may have lost
// events to eviction (or the index of the last Reset). Subscribe can resume
// from any zxid at or after the horizon; earlier, and for a subscription whose
// next event was evicted before it read it, the hub answers ErrResync: the
// watcher must re-read the state and watch again. Resuming is by zxid, and
// Next never splits one zxid's events (a multi) between two batches, so a
// watcher that resumes after the last zxid it saw never misses or repeats part
// of a zxid.
//
// Events are shared: every watcher gets the same *colonyv1.Event values, which
// nobody may modify.
package watchhub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

var (
	// ErrResync means a watcher may have missed events: its resume point is
	// older than the retained history, it fell too far behind, or the node
	// restored a snapshot. The watcher must re-read the state and watch again
	// from the read's zxid. Errors that carry the reason wrap ErrResync.
	ErrResync = errors.New("watchhub: resync required")
	// ErrClosed is returned by Subscribe and Next once the hub or the
	// subscription is closed.
	ErrClosed = errors.New("watchhub: closed")
	// ErrInvalidFilter is wrapped by Subscribe's error for a bad Filter.
	ErrInvalidFilter = errors.New("watchhub: invalid filter")
)

// errSnapshotRestored is the reason given to subscriptions that outlive a Reset.
var errSnapshotRestored = fmt.Errorf("%w: snapshot restored", ErrResync)

// Config sizes a Hub. The zero value is ready to use.
type Config struct {
	MaxEvents int // retained events; zero means 65536
	MaxBytes  int // retained bytes of event data+path; zero means 64 MiB
	MaxBatch  int // most events returned by one Next; zero means 256
	// MaxBatchBytes bounds the encoded size (proto.Size) of the events one
	// Next returns; a single larger event is returned alone. Zero means
	// 16 KiB.
	MaxBatchBytes int
}

// Defaults for the zero values of Config's fields.
const (
	DefaultMaxEvents     = 65536
	DefaultMaxBytes      = 64 << 20
	DefaultMaxBatch      = 256
	DefaultMaxBatchBytes = 16 << 10
)

// Filter selects the events of one watch.
type Filter struct {
	// Path is the watched znode: absolute, without a trailing slash ("/" is
	// the root).
	Path string
	// Kind is the watch kind. DATA, CHILDREN and EXISTS are one-shot: they
	// deliver the first matching event and end.
	Kind colonyv1.WatchKind
	// Recursive also matches every descendant of Path (PERSISTENT only).
	// Recursive watches do not get CHILDREN_CHANGED events, as in ZooKeeper.
	Recursive bool
}

func (f Filter) validate() error {
	switch {
	case f.Path == "" || f.Path[0] != '/':
		return fmt.Errorf("%w: path %q must start with /", ErrInvalidFilter, f.Path)
	case len(f.Path) > 1 && f.Path[len(f.Path)-1] == '/':
		return fmt.Errorf("%w: path %q must not end with /", ErrInvalidFilter, f.Path)
	case f.Kind < colonyv1.WatchKind_WATCH_KIND_DATA || f.Kind > colonyv1.WatchKind_WATCH_KIND_PERSISTENT:
		return fmt.Errorf("%w: unknown kind %d", ErrInvalidFilter, f.Kind)
	case f.Recursive && f.Kind != colonyv1.WatchKind_WATCH_KIND_PERSISTENT:
		return fmt.Errorf("%w: recursive requires kind %s, got %s",
			ErrInvalidFilter, colonyv1.WatchKind_WATCH_KIND_PERSISTENT, f.Kind)
	}
	return nil
}

// oneShot reports whether the watch ends after its first event.
func (f Filter) oneShot() bool { return f.Kind != colonyv1.WatchKind_WATCH_KIND_PERSISTENT }

// match reports whether ev is one of the filter's events.
func (f Filter) match(ev *colonyv1.Event) bool {
	t := ev.GetType()
	switch f.Kind {
	case colonyv1.WatchKind_WATCH_KIND_DATA:
		return ev.GetPath() == f.Path &&
			(t == colonyv1.EventType_EVENT_TYPE_DATA_CHANGED || t == colonyv1.EventType_EVENT_TYPE_DELETED)
	case colonyv1.WatchKind_WATCH_KIND_EXISTS:
		return ev.GetPath() == f.Path &&
			(t == colonyv1.EventType_EVENT_TYPE_CREATED || t == colonyv1.EventType_EVENT_TYPE_DATA_CHANGED ||
				t == colonyv1.EventType_EVENT_TYPE_DELETED)
	case colonyv1.WatchKind_WATCH_KIND_CHILDREN:
		return ev.GetPath() == f.Path &&
			(t == colonyv1.EventType_EVENT_TYPE_CHILDREN_CHANGED || t == colonyv1.EventType_EVENT_TYPE_DELETED)
	case colonyv1.WatchKind_WATCH_KIND_PERSISTENT:
		if !f.Recursive {
			return ev.GetPath() == f.Path
		}
		return t != colonyv1.EventType_EVENT_TYPE_CHILDREN_CHANGED && under(ev.GetPath(), f.Path)
	}
	return false
}

// under reports whether p is root or a descendant of root. "/ab" is not under
// "/a"; everything is under "/".
func under(p, root string) bool {
	if root == "/" {
		return strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, root) && (len(p) == len(root) || p[len(root)] == '/')
}

// record is one retained event with its sequence number. Records are
// immutable once stored, so a reader that loads a record from a slot sees a
// consistent (seq, event) pair.
type record struct {
	seq  uint64
	ev   *colonyv1.Event
	size int // bytes of data+path, for MaxBytes
	wire int // proto.Size(ev), for MaxBatchBytes
}

// Hub is the shared, bounded event history of one node. Publish and Reset
// must be called from a single goroutine (the FSM's); every other method is
// safe for concurrent use.
type Hub struct {
	maxBytes      int
	maxBatch      int
	maxBatchBytes int
	// ring holds the event with sequence number s in ring[s%len(ring)].
	// Only writers (holding mu) store; readers load without locks and check
	// the record's seq to detect that it has been evicted.
	ring []atomic.Pointer[record]

	// Read by subscriptions without locks.
	next   atomic.Uint64 // sequence number of the next event; every smaller one is published
	index  atomic.Uint64 // last published index
	gen    atomic.Uint64 // incremented by every Reset
	closed atomic.Bool
	wake   atomic.Value // chan struct{}, closed and replaced to wake all waiting Next calls
	subs   atomic.Int64 // live subscriptions

	// mu serialises the writers (Publish, Reset, Close) with Subscribe.
	mu      sync.Mutex
	first   uint64 // oldest retained sequence number; first == next when empty
	bytes   int    // retained bytes of event data+path
	horizon uint64 // largest zxid that may have lost events from the ring
}

// New returns an empty hub at index 0.
func New(cfg Config) *Hub {
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = DefaultMaxEvents
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	h := &Hub{
		maxBytes:      cfg.MaxBytes,
		maxBatch:      cfg.MaxBatch,
		maxBatchBytes: cfg.MaxBatchBytes,
		ring:          make([]atomic.Pointer[record], cfg.MaxEvents),
	}
	h.wake.Store(make(chan struct{}))
	return h
}

// Publish records the events of the raft entries applied up to index and
// wakes the waiting watchers. Every event has a zxid greater than the previous
// index and at most index, in nondecreasing order, and all the events of one
// zxid come in one call. Index() becomes index even when events is empty.
// Publish never blocks on watchers; a call that breaks these rules is a bug
// in the caller and panics. It does nothing after Close.
func (h *Hub) Publish(index uint64, events []*colonyv1.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return
	}
	prev := h.index.Load()
	if index < prev {
		panic(fmt.Sprintf("watchhub: Publish index %d is below the last index %d", index, prev))
	}
	last := prev + 1
	for _, ev := range events {
		if z := ev.GetZxid(); z < last || z > index {
			panic(fmt.Sprintf("watchhub: Publish(%d) event zxid %d out of order (last index %d)", index, z, prev))
		}
		last = ev.GetZxid()
	}

	next := h.next.Load()
	size := uint64(len(h.ring))
	// One allocation for the entry's records. It keeps an evicted event of
	// a multi alive until the rest of the multi is evicted too, which they
	// soon are: they are next in line.
	recs := make([]record, len(events))
	for i, ev := range events {
		n := len(ev.GetPath()) + len(ev.GetData())
		// Make room: the slot of next must be free and the bytes must fit,
		// but an event larger than MaxBytes on its own is still kept.
		for next-h.first == size || (h.bytes+n > h.maxBytes && h.first < next) {
			h.evictOldest()
		}
		recs[i] = record{seq: next, ev: ev, size: n, wire: proto.Size(ev)}
		h.ring[next%size].Store(&recs[i])
		h.bytes += n
		next++
	}
	// Publish the events before waking anyone: a reader that loads the new
	// wake channel is then sure to see them.
	h.next.Store(next)
	h.index.Store(index)
	if len(events) > 0 {
		h.broadcast()
	}
}

// evictOldest drops the oldest retained event. h.mu must be held.
func (h *Hub) evictOldest() {
	slot := &h.ring[h.first%uint64(len(h.ring))]
	rec := slot.Load()
	slot.Store(nil)
	h.bytes -= rec.size
	h.horizon = rec.ev.GetZxid()
	h.first++
}

// broadcast wakes every waiting Next. h.mu must be held.
func (h *Hub) broadcast() {
	close(h.wake.Swap(make(chan struct{})).(chan struct{}))
}

// Reset drops the history after a snapshot was restored at index: every
// existing subscription's next Next returns ErrResync, Index() becomes index
// and Subscribe accepts only resume points at or after index. It does
// nothing after Close.
func (h *Hub) Reset(index uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return
	}
	// Bump the generation before clearing slots, so a reader that finds a
	// cleared slot also sees the new generation and reports the right reason.
	h.gen.Add(1)
	next := h.next.Load()
	for s := h.first; s < next; s++ {
		h.ring[s%uint64(len(h.ring))].Store(nil)
	}
	// Sequence numbers keep growing: they are never reused, so no old cursor
	// can match a new event.
	h.first = next
	h.bytes = 0
	h.horizon = index
	h.index.Store(index)
	h.broadcast()
}

// Index returns the last published (or reset) index.
func (h *Hub) Index() uint64 { return h.index.Load() }

// Subscribers returns the number of live subscriptions: subscribed, and
// neither closed nor ended (one-shot fired, resync).
func (h *Hub) Subscribers() int { return int(h.subs.Load()) }

// Close ends the hub: every Next and Subscribe returns ErrClosed, and
// Publish and Reset do nothing.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Swap(true) {
		return
	}
	// The closed channel stays in place: every later wait returns at once.
	close(h.wake.Load().(chan struct{}))
}

// Subscribe starts a watch that delivers the events matching f with a zxid
// greater than after. after may be beyond Index(): the watch then waits for
// those events. If after is older than the retained history, Subscribe
// returns an error wrapping ErrResync. The caller must Close the
// subscription.
func (h *Hub) Subscribe(f Filter, after uint64) (*Subscription, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return nil, ErrClosed
	}
	if after < h.horizon {
		return nil, fmt.Errorf("%w: zxid %d is older than the retained history (events after zxid %d)",
			ErrResync, after, h.horizon)
	}
	// Start at the first retained event past after. Every retained slot is
	// set while mu is held, and zxids never decrease along the ring.
	next := h.next.Load()
	cursor := h.first + uint64(sort.Search(int(next-h.first), func(i int) bool {
		return h.ring[(h.first+uint64(i))%uint64(len(h.ring))].Load().ev.GetZxid() > after
	}))
	h.subs.Add(1)
	return &Subscription{
		hub:    h,
		filter: f,
		after:  after,
		cursor: cursor,
		gen:    h.gen.Load(),
		done:   make(chan struct{}),
	}, nil
}

// Subscription is one watch, reading the hub's history at its own cursor.
// Next must not be called concurrently with itself; Close may be called at
// any time, from any goroutine.
type Subscription struct {
	hub    *Hub
	filter Filter
	after  uint64 // deliver only zxids above after (it may be ahead of the ring)
	cursor uint64 // sequence number of the next event to read
	gen    uint64 // the hub's Reset generation when subscribed
	err    error  // sticky end of the watch (io.EOF or a resync), owned by Next
	// fragment and progress describe the last read, owned by Next.
	fragment bool   // the last batch's last zxid continues after it
	progress uint64 // every event with a zxid up to this one has been read

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	released  atomic.Bool // whether this subscription left hub.subs
}

// Next blocks until at least one matching event is available and returns the
// matching events in zxid order: at most Config.MaxBatch of them and at most
// Config.MaxBatchBytes of encoded events, except that a single event larger
// than that comes alone. A batch ends on a zxid boundary unless one zxid's
// events do not fit: then Fragment reports that the last zxid continues in
// the next batch. A one-shot watch (DATA, CHILDREN, EXISTS) returns its first
// matching event alone, and io.EOF after that.
//
// Next returns an error wrapping ErrResync when events may have been missed,
// ErrClosed once the hub or the subscription is closed, and ctx.Err() if ctx
// ends while waiting. io.EOF and resync errors are final; after ctx.Err()
// Next may be called again.
func (s *Subscription) Next(ctx context.Context) ([]*colonyv1.Event, error) {
	if s.err != nil {
		return nil, s.err
	}
	h := s.hub
	for {
		// Load the wake channel before looking at the ring, so an event
		// published after the look closes this channel.
		wake := h.wake.Load().(chan struct{})
		select {
		case <-s.done:
			return nil, ErrClosed
		default:
		}
		if h.closed.Load() {
			return nil, ErrClosed
		}
		events, err := s.read()
		if err != nil {
			s.end(err)
			return nil, err
		}
		if len(events) > 0 {
			if s.filter.oneShot() {
				s.end(io.EOF)
			}
			return events, nil
		}
		select {
		case <-wake:
		case <-s.done:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Fragment reports whether the last batch Next returned ended inside a zxid:
// more events of its last zxid follow in the next batch.
func (s *Subscription) Fragment() bool { return s.fragment }

// Progress is the zxid up to which the subscription has read every event
// (matching or not) in the last Next: a watch that resumes after it misses
// nothing. It is only meaningful after a Next that returned no fragment.
func (s *Subscription) Progress() uint64 { return s.progress }

// read advances the cursor over the published events and returns the
// matching ones (possibly none).
func (s *Subscription) read() ([]*colonyv1.Event, error) {
	h := s.hub
	if h.gen.Load() != s.gen {
		return nil, errSnapshotRestored
	}
	var (
		out   []*colonyv1.Event
		last  uint64 // zxid of the last event in out
		bytes int    // encoded size of out
		// Where the zxid of the record at the cursor began: its first
		// record's seq and how much of out came before it.
		zxid    uint64
		zCursor uint64
		zLen    int
	)
	s.fragment = false
	// Publish stores next before index, so once the cursor reaches this
	// next every event up to this index has been read.
	index := h.index.Load()
	size := uint64(len(h.ring))
	next := h.next.Load()
	for s.cursor < next {
		rec := h.ring[s.cursor%size].Load()
		if rec == nil || rec.seq != s.cursor {
			// Evicted (the slot was cleared or reused) before we read it.
			if h.gen.Load() != s.gen {
				return nil, errSnapshotRestored
			}
			return nil, fmt.Errorf("%w: watcher fell behind: its next event was evicted (history holds at most %d events, %d bytes)",
				ErrResync, size, h.maxBytes)
		}
		ev := rec.ev
		if ev.GetZxid() != zxid {
			zxid, zCursor, zLen = ev.GetZxid(), s.cursor, len(out)
		}
		if len(out) > 0 && (len(out) >= h.maxBatch || bytes+rec.wire > h.maxBatchBytes) {
			// The batch is full. It ends on a zxid boundary: if it holds
			// part of this zxid after earlier ones, that part goes back to
			// the next batch. Only a zxid too large for any batch is split.
			if ev.GetZxid() == last {
				if zLen > 0 {
					s.cursor, out = zCursor, out[:zLen]
				} else {
					s.fragment = true
				}
			}
			break
		}
		s.cursor++
		if ev.GetZxid() <= s.after || !s.filter.match(ev) {
			continue
		}
		out = append(out, ev)
		last = ev.GetZxid()
		bytes += rec.wire
		if s.filter.oneShot() {
			break
		}
	}
	if s.cursor == next {
		s.progress = max(s.after, index)
	}
	return out, nil
}

// end makes err the final answer of Next and releases the subscription.
func (s *Subscription) end(err error) {
	s.err = err
	s.release()
}

func (s *Subscription) release() {
	if !s.released.Swap(true) {
		s.hub.subs.Add(-1)
	}
}

// Close ends the subscription: a pending or later Next returns ErrClosed
// (unless it already ended with io.EOF or a resync). Close is idempotent.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.release()
	})
}
