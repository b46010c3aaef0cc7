package watchhub_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/internal/watchhub"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	created  = colonyv1.EventType_EVENT_TYPE_CREATED
	deleted  = colonyv1.EventType_EVENT_TYPE_DELETED
	changed  = colonyv1.EventType_EVENT_TYPE_DATA_CHANGED
	children = colonyv1.EventType_EVENT_TYPE_CHILDREN_CHANGED

	kindData       = colonyv1.WatchKind_WATCH_KIND_DATA
	kindChildren   = colonyv1.WatchKind_WATCH_KIND_CHILDREN
	kindExists     = colonyv1.WatchKind_WATCH_KIND_EXISTS
	kindPersistent = colonyv1.WatchKind_WATCH_KIND_PERSISTENT
)

// everything matches every event type but CHILDREN_CHANGED.
var everything = watchhub.Filter{Path: "/", Kind: kindPersistent, Recursive: true}

func event(zxid uint64, t colonyv1.EventType, path string) *colonyv1.Event {
	return &colonyv1.Event{Type: t, Path: path, Zxid: zxid}
}

// publishOne publishes one DATA_CHANGED event on /n at each zxid in [from, to]
// and returns them.
func publishOne(h *watchhub.Hub, from, to uint64) []*colonyv1.Event {
	var evs []*colonyv1.Event
	for z := from; z <= to; z++ {
		ev := event(z, changed, "/n")
		h.Publish(z, []*colonyv1.Event{ev})
		evs = append(evs, ev)
	}
	return evs
}

// poll returns what Next has without waiting: with a cancelled context Next
// still reads what is published and only fails where it would block.
func poll(t *testing.T, s *watchhub.Subscription) ([]*colonyv1.Event, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Next(ctx)
}

// mustPoll expects Next to return exactly want (the same pointers).
func mustPoll(t *testing.T, s *watchhub.Subscription, want ...*colonyv1.Event) {
	t.Helper()
	got, err := poll(t, s)
	if err != nil {
		t.Fatalf("Next: %v, want %d events", err, len(want))
	}
	if !sameEvents(got, want) {
		t.Fatalf("Next = %v, want %v", zxids(got), zxids(want))
	}
}

func mustSubscribe(t *testing.T, h *watchhub.Hub, f watchhub.Filter, after uint64) *watchhub.Subscription {
	t.Helper()
	s, err := h.Subscribe(f, after)
	if err != nil {
		t.Fatalf("Subscribe(%+v, %d): %v", f, after, err)
	}
	t.Cleanup(s.Close)
	return s
}

func sameEvents(a, b []*colonyv1.Event) bool {
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

func zxids(evs []*colonyv1.Event) []uint64 {
	var z []uint64
	for _, ev := range evs {
		z = append(z, ev.GetZxid())
	}
	return z
}

func TestFilters(t *testing.T) {
	data := watchhub.Filter{Path: "/a", Kind: kindData}
	exists := watchhub.Filter{Path: "/a", Kind: kindExists}
	kids := watchhub.Filter{Path: "/a", Kind: kindChildren}
	node := watchhub.Filter{Path: "/a", Kind: kindPersistent}
	tree := watchhub.Filter{Path: "/a", Kind: kindPersistent, Recursive: true}
	root := watchhub.Filter{Path: "/", Kind: kindPersistent, Recursive: true}
	rootNode := watchhub.Filter{Path: "/", Kind: kindPersistent}

	tests := []struct {
		name   string
		filter watchhub.Filter
		typ    colonyv1.EventType
		path   string
		want   bool
	}{
		{"data/changed", data, changed, "/a", true},
		{"data/deleted", data, deleted, "/a", true},
		{"data/created", data, created, "/a", false},
		{"data/children", data, children, "/a", false},
		{"data/child path", data, changed, "/a/b", false},
		{"data/sibling prefix", data, changed, "/ab", false},
		{"data/parent", data, changed, "/", false},

		{"exists/created", exists, created, "/a", true},
		{"exists/changed", exists, changed, "/a", true},
		{"exists/deleted", exists, deleted, "/a", true},
		{"exists/children", exists, children, "/a", false},
		{"exists/child path", exists, created, "/a/b", false},

		{"children/children", kids, children, "/a", true},
		{"children/deleted", kids, deleted, "/a", true},
		{"children/created", kids, created, "/a", false},
		{"children/changed", kids, changed, "/a", false},
		{"children/child's children", kids, children, "/a/b", false},
		{"children/child created", kids, created, "/a/b", false},

		{"persistent/created", node, created, "/a", true},
		{"persistent/changed", node, changed, "/a", true},
		{"persistent/deleted", node, deleted, "/a", true},
		{"persistent/children", node, children, "/a", true},
		{"persistent/child path", node, created, "/a/b", false},
		{"persistent/sibling prefix", node, created, "/ab", false},
		{"persistent root/root", rootNode, changed, "/", true},
		{"persistent root/child", rootNode, changed, "/a", false},

		{"recursive/self", tree, created, "/a", true},
		{"recursive/self deleted", tree, deleted, "/a", true},
		{"recursive/self children", tree, children, "/a", false},
		{"recursive/child", tree, changed, "/a/b", true},
		{"recursive/grandchild", tree, deleted, "/a/b/c", true},
		{"recursive/descendant children", tree, children, "/a/b", false},
		{"recursive/sibling prefix", tree, created, "/ab", false},
		{"recursive/sibling prefix child", tree, created, "/ab/c", false},
		{"recursive/parent", tree, changed, "/", false},

		{"recursive root/root", root, changed, "/", true},
		{"recursive root/deep", root, created, "/x/y/z", true},
		{"recursive root/children", root, children, "/x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := watchhub.New(watchhub.Config{})
			defer h.Close()
			s := mustSubscribe(t, h, tt.filter, 0)
			ev := event(1, tt.typ, tt.path)
			h.Publish(1, []*colonyv1.Event{ev})
			got, err := poll(t, s)
			switch {
			case tt.want && (err != nil || !sameEvents(got, []*colonyv1.Event{ev})):
				t.Fatalf("Next = %v, %v; want the event", got, err)
			case !tt.want && !errors.Is(err, context.Canceled):
				t.Fatalf("Next = %v, %v; want no event", got, err)
			}
		})
	}
}

func TestSubscribeValidatesFilter(t *testing.T) {
	h := watchhub.New(watchhub.Config{})
	defer h.Close()
	tests := []struct {
		name   string
		filter watchhub.Filter
	}{
		{"empty path", watchhub.Filter{Kind: kindData}},
		{"relative path", watchhub.Filter{Path: "a", Kind: kindData}},
		{"trailing slash", watchhub.Filter{Path: "/a/", Kind: kindPersistent}},
		{"unknown kind", watchhub.Filter{Path: "/a", Kind: 42}},
		{"recursive data", watchhub.Filter{Path: "/a", Kind: kindData, Recursive: true}},
		{"recursive exists", watchhub.Filter{Path: "/a", Kind: kindExists, Recursive: true}},
		{"recursive children", watchhub.Filter{Path: "/a", Kind: kindChildren, Recursive: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := h.Subscribe(tt.filter, 0); !errors.Is(err, watchhub.ErrInvalidFilter) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("Subscribe = %v, want ErrInvalidFilter", err)
			}
		})
	}
	if h.Subscribers() != 0 {
		t.Fatalf("Subscribers = %d, want 0", h.Subscribers())
	}
}

func TestOneShotFiresOnce(t *testing.T) {
	for _, kind := range []colonyv1.WatchKind{kindData, kindExists} {
		t.Run(kind.String(), func(t *testing.T) {
			h := watchhub.New(watchhub.Config{})
			defer h.Close()
			s := mustSubscribe(t, h, watchhub.Filter{Path: "/a", Kind: kind}, 0)
			if got := h.Subscribers(); got != 1 {
				t.Fatalf("Subscribers = %d, want 1", got)
			}
			// Two matching events in one zxid (a multi), then another.
			first, second := event(1, changed, "/a"), event(1, changed, "/a")
			h.Publish(1, []*colonyv1.Event{event(1, changed, "/other"), first, second})
			h.Publish(2, []*colonyv1.Event{event(2, deleted, "/a")})

			mustPoll(t, s, first)
			for range 2 {
				if got, err := s.Next(context.Background()); err != io.EOF {
					t.Fatalf("Next after firing = %v, %v; want io.EOF", got, err)
				}
			}
			if got := h.Subscribers(); got != 0 {
				t.Fatalf("Subscribers after firing = %d, want 0", got)
			}
		})
	}
	t.Run("CHILDREN waits for its event", func(t *testing.T) {
		h := watchhub.New(watchhub.Config{})
		defer h.Close()
		s := mustSubscribe(t, h, watchhub.Filter{Path: "/a", Kind: kindChildren}, 0)
		ev := event(3, children, "/a")
		done := make(chan error)
		go func() {
			got, err := s.Next(context.Background())
			if err == nil && !sameEvents(got, []*colonyv1.Event{ev}) {
				err = errors.New("wrong events")
			}
			done <- err
		}()
		h.Publish(1, []*colonyv1.Event{event(1, changed, "/a")})
		h.Publish(2, nil)
		h.Publish(3, []*colonyv1.Event{ev, event(3, children, "/a")})
		if err := <-done; err != nil {
			t.Fatalf("Next: %v", err)
		}
		if _, err := s.Next(context.Background()); err != io.EOF {
			t.Fatalf("second Next: %v, want io.EOF", err)
		}
	})
}

func TestResumeReplaysMissingEvents(t *testing.T) {
	h := watchhub.New(watchhub.Config{})
	defer h.Close()
	var all []*colonyv1.Event
	for z := uint64(1); z <= 10; z++ {
		evs := []*colonyv1.Event{event(z, created, "/a")}
		if z%3 == 0 { // a multi
			evs = append(evs, event(z, changed, "/b"), event(z, deleted, "/c"))
		}
		h.Publish(z, evs)
		all = append(all, evs...)
	}
	h.Publish(12, nil) // an entry without events
	for after := uint64(0); after <= 12; after++ {
		var want []*colonyv1.Event
		for _, ev := range all {
			if ev.Zxid > after {
				want = append(want, ev)
			}
		}
		s := mustSubscribe(t, h, everything, after)
		if len(want) == 0 {
			if got, err := poll(t, s); !errors.Is(err, context.Canceled) {
				t.Fatalf("after %d: Next = %v, %v; want nothing", after, zxids(got), err)
			}
			continue
		}
		mustPoll(t, s, want...)
	}
}

func TestSubscribeAheadOfIndexWaits(t *testing.T) {
	h := watchhub.New(watchhub.Config{})
	defer h.Close()
	s := mustSubscribe(t, h, everything, 5)
	h.Publish(3, []*colonyv1.Event{event(3, created, "/a")})
	h.Publish(5, []*colonyv1.Event{event(5, created, "/b")})
	want := event(7, created, "/c")
	h.Publish(7, []*colonyv1.Event{want})
	mustPoll(t, s, want)
}

func TestResumeBeforeHorizon(t *testing.T) {
	h := watchhub.New(watchhub.Config{MaxEvents: 4})
	defer h.Close()
	all := publishOne(h, 1, 10) // retains 7..10: horizon 6
	for after := uint64(0); after < 6; after++ {
		if s, err := h.Subscribe(everything, after); !errors.Is(err, watchhub.ErrResync) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("Subscribe(after %d) = %v, want ErrResync", after, err)
		}
	}
	mustPoll(t, mustSubscribe(t, h, everything, 6), all[6:]...)
	mustPoll(t, mustSubscribe(t, h, everything, 8), all[8:]...)
}

func TestByteLimitEvicts(t *testing.T) {
	h := watchhub.New(watchhub.Config{MaxBytes: 10})
	defer h.Close()
	big := func(z uint64) *colonyv1.Event {
		return &colonyv1.Event{Type: changed, Path: "/a", Zxid: z, Data: []byte("1234")} // 6 bytes
	}
	s := mustSubscribe(t, h, everything, 0)
	e1, e2 := big(1), big(2)
	h.Publish(1, []*colonyv1.Event{e1})
	mustPoll(t, s, e1)
	h.Publish(2, []*colonyv1.Event{e2}) // evicts e1
	if _, err := h.Subscribe(everything, 0); !errors.Is(err, watchhub.ErrResync) {
		t.Fatalf("Subscribe(0) = %v, want ErrResync", err)
	}
	mustPoll(t, s, e2)
	// An event larger than MaxBytes is still delivered.
	huge := &colonyv1.Event{Type: changed, Path: "/a", Zxid: 3, Data: make([]byte, 100)}
	h.Publish(3, []*colonyv1.Event{huge})
	mustPoll(t, s, huge)
}

func TestSlowSubscriberResyncs(t *testing.T) {
	h := watchhub.New(watchhub.Config{MaxEvents: 4})
	defer h.Close()
	s := mustSubscribe(t, h, everything, 0)
	all := publishOne(h, 1, 3)
	mustPoll(t, s, all...)
	publishOne(h, 4, 10) // 4..6 are evicted before s reads them
	_, err := poll(t, s)
	if !errors.Is(err, watchhub.ErrResync) || !strings.Contains(err.Error(), "fell behind") {
		t.Fatalf("Next = %v, want a fell-behind ErrResync", err)
	}
	// The resync is final, even when more events arrive.
	publishOne(h, 11, 11)
	if _, err2 := poll(t, s); err2 != err {
		t.Fatalf("Next after resync = %v, want %v", err2, err)
	}
	if got := h.Subscribers(); got != 0 {
		t.Fatalf("Subscribers = %d, want 0", got)
	}
}

// TestMultiZxidEviction evicts half of a multi's events: a watcher that had
// read it keeps going, one that had not must resync, and resuming from the
// multi's zxid skips it whole.
func TestMultiZxidEviction(t *testing.T) {
	h := watchhub.New(watchhub.Config{MaxEvents: 4})
	defer h.Close()
	read := mustSubscribe(t, h, everything, 0)
	unread := mustSubscribe(t, h, everything, 0)

	a := event(1, created, "/a")
	multi := []*colonyv1.Event{event(2, created, "/b"), event(2, created, "/c"), event(2, changed, "/a")}
	h.Publish(1, []*colonyv1.Event{a})
	h.Publish(2, multi)
	mustPoll(t, read, append([]*colonyv1.Event{a}, multi...)...)

	e3, e4 := event(3, deleted, "/c"), event(4, deleted, "/b")
	h.Publish(3, []*colonyv1.Event{e3}) // evicts a
	h.Publish(4, []*colonyv1.Event{e4}) // evicts multi[0]: horizon 2

	mustPoll(t, read, e3, e4)
	if _, err := poll(t, unread); !errors.Is(err, watchhub.ErrResync) {
		t.Fatalf("unread Next = %v, want ErrResync", err)
	}
	if _, err := h.Subscribe(everything, 1); !errors.Is(err, watchhub.ErrResync) {
		t.Fatalf("Subscribe(1) = %v, want ErrResync (would deliver half a multi)", err)
	}
	mustPoll(t, mustSubscribe(t, h, everything, 2), e3, e4)
}

func TestBatchesEndOnZxidBoundaries(t *testing.T) {
	h := watchhub.New(watchhub.Config{MaxBatch: 2})
	defer h.Close()
	s := mustSubscribe(t, h, everything, 0)
	multi := []*colonyv1.Event{event(1, created, "/a"), event(1, created, "/b"), event(1, created, "/c")}
	h.Publish(1, multi)
	d := publishOne(h, 2, 4)
	// A zxid larger than a batch is split, and the batch says so.
	mustPoll(t, s, multi[0], multi[1])
	if !s.Fragment() {
		t.Fatal("a batch ending inside zxid 1 is not marked as a fragment")
	}
	mustPoll(t, s, multi[2], d[0])
	if s.Fragment() {
		t.Fatal("a batch ending on a zxid boundary is marked as a fragment")
	}
	mustPoll(t, s, d[1], d[2])

	// A batch that would end inside a zxid after earlier ones stops before
	// that zxid instead.
	e5 := event(5, created, "/e")
	m6 := []*colonyv1.Event{event(6, created, "/f"), event(6, created, "/g")}
	h.Publish(5, []*colonyv1.Event{e5})
	h.Publish(6, m6)
	mustPoll(t, s, e5)
	mustPoll(t, s, m6...)
	if s.Fragment() {
		t.Fatal("a whole zxid is marked as a fragment")
	}
}

// TestBatchesBoundedByBytes: a batch holds at most MaxBatchBytes of encoded
// events (issue 13: five 1 MiB creates in one 5 MiB message broke the 4 MiB
// gRPC limit), and an event larger than that still comes, alone.
func TestBatchesBoundedByBytes(t *testing.T) {
	const limit = 4 << 10
	h := watchhub.New(watchhub.Config{MaxBatchBytes: limit})
	defer h.Close()
	s := mustSubscribe(t, h, everything, 0)
	var want []*colonyv1.Event
	for z := uint64(1); z <= 20; z++ {
		size := 1000
		if z == 7 {
			size = 3 * limit // larger than any batch
		}
		ev := &colonyv1.Event{Type: created, Path: "/n", Zxid: z, Data: make([]byte, size)}
		h.Publish(z, []*colonyv1.Event{ev})
		want = append(want, ev)
	}
	var got []*colonyv1.Event
	for len(got) < len(want) {
		evs, err := poll(t, s)
		if err != nil {
			t.Fatalf("Next after %d events: %v", len(got), err)
		}
		n := 0
		for _, ev := range evs {
			n += proto.Size(ev)
		}
		if n > limit && len(evs) > 1 {
			t.Fatalf("a batch of %d events has %d bytes, over MaxBatchBytes %d", len(evs), n, limit)
		}
		got = append(got, evs...)
	}
	if !sameEvents(got, want) {
		t.Fatalf("events = %v, want %v", zxids(got), zxids(want))
	}
}

// TestProgress: an idle subscription knows it has read everything up to the
// hub's index, so a watch resumed after it misses nothing.
func TestProgress(t *testing.T) {
	h := watchhub.New(watchhub.Config{})
	defer h.Close()
	s := mustSubscribe(t, h, watchhub.Filter{Path: "/other", Kind: kindPersistent}, 0)
	publishOne(h, 1, 3)
	h.Publish(5, nil)
	if evs, err := poll(t, s); err == nil {
		t.Fatalf("Next = %v, want no events", zxids(evs))
	}
	if got := s.Progress(); got != 5 {
		t.Fatalf("Progress = %d, want 5", got)
	}
	ahead := mustSubscribe(t, h, everything, 9)
	if _, err := poll(t, ahead); err == nil {
		t.Fatal("Next returned events before zxid 9")
	}
	if got := ahead.Progress(); got != 9 {
		t.Fatalf("Progress of a watch after 9 = %d, want 9", got)
	}
}

func TestResetForcesResync(t *testing.T) {
	h := watchhub.New(watchhub.Config{})
	defer h.Close()
	idle := mustSubscribe(t, h, everything, 0)
	waiting := mustSubscribe(t, h, watchhub.Filter{Path: "/a", Kind: kindData}, 0)
	publishOne(h, 1, 5)

	done := make(chan error)
	go func() {
		_, err := waiting.Next(context.Background())
		done <- err
	}()
	h.Reset(100)
	if err := <-done; !errors.Is(err, watchhub.ErrResync) || !strings.Contains(err.Error(), "snapshot restored") {
		t.Fatalf("waiting Next = %v, want a snapshot ErrResync", err)
	}
	if _, err := poll(t, idle); !errors.Is(err, watchhub.ErrResync) {
		t.Fatalf("idle Next = %v, want ErrResync", err)
	}
	if got := h.Index(); got != 100 {
		t.Fatalf("Index = %d, want 100", got)
	}
	if _, err := h.Subscribe(everything, 99); !errors.Is(err, watchhub.ErrResync) {
		t.Fatalf("Subscribe(99) = %v, want ErrResync", err)
	}
	s := mustSubscribe(t, h, everything, 100)
	want := publishOne(h, 101, 102)
	mustPoll(t, s, want...)
}

func TestNextReturnsContextError(t *testing.T) {
	h := watchhub.New(watchhub.Config{})
	defer h.Close()
	s := mustSubscribe(t, h, everything, 0)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := s.Next(ctx)
		done <- err
	}()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Next = %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Next = %v, want context.DeadlineExceeded", err)
	}
	// A context error does not end the subscription.
	mustPoll(t, s, publishOne(h, 1, 1)...)
}

func TestCloseWakesEveryone(t *testing.T) {
	h := watchhub.New(watchhub.Config{})
	const n = 50
	errs := make(chan error, n)
	for i := range n {
		f := everything
		if i%2 == 1 {
			f = watchhub.Filter{Path: "/a", Kind: kindExists}
		}
		s := mustSubscribe(t, h, f, 0)
		go func() {
			_, err := s.Next(context.Background())
			errs <- err
		}()
	}
	h.Close()
	for range n {
		if err := <-errs; err != watchhub.ErrClosed {
			t.Fatalf("Next = %v, want ErrClosed", err)
		}
	}
	if _, err := h.Subscribe(everything, 0); err != watchhub.ErrClosed {
		t.Fatalf("Subscribe after Close = %v, want ErrClosed", err)
	}
	h.Publish(1, []*colonyv1.Event{event(1, created, "/a")}) // no-op, no panic
	h.Reset(2)
	h.Close()
}

func TestSubscriptionClose(t *testing.T) {
	h := watchhub.New(watchhub.Config{})
	defer h.Close()
	s := mustSubscribe(t, h, everything, 0)
	other := mustSubscribe(t, h, everything, 0)
	done := make(chan error)
	go func() {
		_, err := s.Next(context.Background())
		done <- err
	}()
	s.Close()
	if err := <-done; err != watchhub.ErrClosed {
		t.Fatalf("Next = %v, want ErrClosed", err)
	}
	s.Close()
	if got := h.Subscribers(); got != 1 {
		t.Fatalf("Subscribers = %d, want 1", got)
	}
	// Other subscriptions are unaffected.
	mustPoll(t, other, publishOne(h, 1, 1)...)
}

func TestPublishRejectsDisorder(t *testing.T) {
	tests := []struct {
		name   string
		index  uint64
		events []*colonyv1.Event
	}{
		{"index goes back", 4, nil},
		{"zxid at previous index", 6, []*colonyv1.Event{event(5, created, "/a")}},
		{"zxid above index", 6, []*colonyv1.Event{event(7, created, "/a")}},
		{"zxids decrease", 8, []*colonyv1.Event{event(7, created, "/a"), event(6, created, "/b")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := watchhub.New(watchhub.Config{})
			defer h.Close()
			h.Publish(5, nil)
			defer func() {
				if recover() == nil {
					t.Fatal("Publish did not panic")
				}
				if h.Index() != 5 {
					t.Fatalf("Index = %d after a rejected Publish, want 5", h.Index())
				}
			}()
			h.Publish(tt.index, tt.events)
		})
	}
}

// TestConcurrentOrdering publishes while watchers subscribe at random points
// and read in random batch sizes. With a ring that holds everything, each
// watcher must see exactly the events after its resume point, in order, each
// once, in batches that never split a zxid. With a small ring a watcher may
// instead be told to resync, but never skip an event.
func TestConcurrentOrdering(t *testing.T) {
	for _, tt := range []struct {
		name      string
		maxEvents int
		mayResync bool
	}{
		{"retains all", 1 << 16, false},
		{"small ring", 256, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const entries = 3000
			// Prepare every entry up front: the watchers check against them.
			batches := make([][]*colonyv1.Event, entries+1)
			var all []*colonyv1.Event
			for z := uint64(1); z <= entries; z++ {
				for i := range z % 4 { // 0 to 3 events per entry
					batches[z] = append(batches[z], event(z, created, "/p/"+string(rune('a'+i))))
				}
				all = append(all, batches[z]...)
			}
			last := all[len(all)-1]

			h := watchhub.New(watchhub.Config{MaxEvents: tt.maxEvents, MaxBatch: 5})
			defer h.Close()
			var wg sync.WaitGroup
			wg.Go(func() {
				for z := uint64(1); z <= entries; z++ {
					h.Publish(z, batches[z])
					runtime.Gosched() // let watchers interleave
				}
			})
			for w := range 16 {
				wg.Go(func() {
					// Spread the watchers over the publishing.
					for h.Index() < uint64(w)*entries/20 {
						runtime.Gosched()
					}
					after := rand.Uint64N(h.Index() + 1)
					s, err := h.Subscribe(everything, after)
					if err != nil {
						if tt.mayResync && errors.Is(err, watchhub.ErrResync) {
							return
						}
						t.Errorf("watcher %d: Subscribe(%d): %v", w, after, err)
						return
					}
					defer s.Close()
					var want []*colonyv1.Event
					for _, ev := range all {
						if ev.Zxid > after {
							want = append(want, ev)
						}
					}
					if len(want) == 0 {
						return // subscribed after the last event
					}
					got := 0
					for got < len(want) {
						evs, err := s.Next(context.Background())
						if err != nil {
							if !tt.mayResync || !errors.Is(err, watchhub.ErrResync) {
								t.Errorf("watcher %d: Next after %d events: %v", w, got, err)
							}
							return
						}
						for _, ev := range evs {
							if got >= len(want) || ev != want[got] {
								t.Errorf("watcher %d (after %d): event %d is zxid %d %s, want zxid %d %s",
									w, after, got, ev.Zxid, ev.Path, want[got].Zxid, want[got].Path)
								return
							}
							got++
						}
						if got < len(want) && want[got].Zxid == want[got-1].Zxid {
							t.Errorf("watcher %d: a batch split zxid %d", w, want[got].Zxid)
							return
						}
					}
					if want[got-1] != last {
						t.Errorf("watcher %d: did not reach the last event", w)
					}
				})
			}
			wg.Wait()
		})
	}
}
