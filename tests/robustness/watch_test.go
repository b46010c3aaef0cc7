//go:build unix

package robustness

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"google.golang.org/grpc"

	"github.com/colonymesh/colony/internal/wiretime"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// watchRecorder keeps a persistent recursive watch on one path open for the
// whole run, through the client proxies: when a stream fails it resumes on
// the next node after the last zxid it received, as a client must; after a
// resync it starts a fresh watch (a new segment). It records every event in
// the order received.
type watchRecorder struct {
	name  string
	path  string
	conns []*grpc.ClientConn
	cur   int

	mu       sync.Mutex
	segments []*watchSegment
	lastZxid uint64 // the zxid the watcher has seen up to (events or start)
	silent   int    // streams given up because they went silent (no progress)
	silences []silentStream
	started  chan struct{}
	once     sync.Once
}

// silentStream is a stream given up because it went silent: the node it was on,
// when it was given up, and for how long it had sent nothing.
type silentStream struct {
	Node string
	At   time.Time
	For  time.Duration
}

// watchSegment is one run of a watch: its first stream and the resumed
// streams after it, until a resync.
type watchSegment struct {
	Start   uint64 // events after this zxid are promised
	Streams []string
	Events  []*colonyv1.Event
	Resync  string // why it ended with a resync; empty if it did not
}

func newWatchRecorder(name, path string, endpoints []string, tlsCfg *tls.Config, first int) (*watchRecorder, error) {
	w := &watchRecorder{name: name, path: path, started: make(chan struct{})}
	for _, ep := range endpoints {
		conn, err := dial(ep, tlsCfg)
		if err != nil {
			w.close()
			return nil, err
		}
		w.conns = append(w.conns, conn)
	}
	w.cur = first % len(w.conns)
	return w, nil
}

func (w *watchRecorder) close() {
	for _, conn := range w.conns {
		conn.Close()
	}
}

// run watches until ctx ends.
func (w *watchRecorder) run(ctx context.Context) {
	var after *uint64
	for ctx.Err() == nil {
		resync, _ := w.stream(ctx, after) // no answer: resume on the next node
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		if resync {
			after = nil // a fresh watch: a new segment
		} else if len(w.segments) > 0 {
			z := w.lastZxid
			after = &z
		}
		w.mu.Unlock()
		w.cur = (w.cur + 1) % len(w.conns)
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

// stream runs one Watch stream. It reports whether it ended in a resync.
func (w *watchRecorder) stream(ctx context.Context, after *uint64) (bool, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := colonyv1.NewWatchClient(w.conns[w.cur]).Watch(sctx, &colonyv1.WatchRequest{
		Path: w.path, Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, Recursive: true, AfterZxid: after,
		ProgressNotify: true,
	})
	if err != nil {
		return false, err
	}
	// The first message says the watch is registered; a node that cannot
	// register it in time is skipped.
	first := make(chan struct{})
	timer := time.AfterFunc(5*time.Second, func() {
		select {
		case <-first:
		default:
			cancel()
		}
	})
	defer timer.Stop()
	// As the Go client does: a stream that promised progress messages and
	// sends nothing for three intervals is dead (its node paused, cut off
	// or stuck); it is given up and resumed on the next node, and the
	// segment says so.
	var silence time.Duration
	var silent atomic.Bool
	watchdog := time.AfterFunc(time.Hour, func() { silent.Store(true); cancel() })
	watchdog.Stop()
	defer watchdog.Stop()
	var seg *watchSegment
	var node string // the member serving this stream
	for {
		if silence > 0 {
			watchdog.Reset(silence)
		}
		resp, err := st.Recv()
		watchdog.Stop()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream ended")
			}
			if silent.Load() {
				w.mu.Lock()
				w.silent++
				w.silences = append(w.silences, silentStream{Node: node, At: time.Now(), For: silence})
				if seg != nil {
					seg.Streams[len(seg.Streams)-1] += fmt.Sprintf(" (silent for %v: given up)", silence)
				}
				w.mu.Unlock()
			}
			return false, err
		}
		if ms := resp.GetProgressIntervalMs(); resp.GetCreated() && ms > 0 {
			silence = 3 * wiretime.UMillis(ms)
		}
		w.mu.Lock()
		if resp.GetCreated() {
			select {
			case <-first:
			default:
				close(first)
			}
			node = resp.GetHeader().GetMemberId()
			desc := fmt.Sprintf("%s start %d", node, resp.GetStartZxid())
			if after == nil {
				seg = &watchSegment{Start: resp.GetStartZxid()}
				w.segments = append(w.segments, seg)
				w.lastZxid = resp.GetStartZxid()
			} else {
				seg = w.segments[len(w.segments)-1]
				if resp.GetStartZxid() != *after {
					desc += fmt.Sprintf(" (asked after %d)", *after)
				}
			}
			seg.Streams = append(seg.Streams, desc)
			w.once.Do(func() { close(w.started) })
		}
		if seg == nil && resp.GetResync() {
			// Told to resync before the watch was created: the node no
			// longer holds the events after the asked zxid (every node
			// restarted, so none has them in memory). The segment ends
			// here, and a fresh watch starts the next one.
			if after != nil && len(w.segments) > 0 {
				last := w.segments[len(w.segments)-1]
				last.Resync = resp.GetResyncReason()
				last.Streams = append(last.Streams, fmt.Sprintf("%s: resync after %d", resp.GetHeader().GetMemberId(), *after))
			}
			w.mu.Unlock()
			return true, nil
		}
		if seg != nil {
			for _, ev := range resp.GetEvents() {
				seg.Events = append(seg.Events, ev)
				w.lastZxid = max(w.lastZxid, ev.GetZxid())
			}
			if resp.GetResync() {
				seg.Resync = resp.GetResyncReason()
				w.mu.Unlock()
				return true, nil
			}
		}
		w.mu.Unlock()
	}
}

// seen returns the zxid the watcher has received events up to.
func (w *watchRecorder) seen() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastZxid
}

// snapshot returns a copy of the segments.
// silentStreams is how many of w's streams went silent and were given up.
// A passing run shows it: a stall that progress notifications recovered
// from (issue 13 item 10) must not go unseen just because it recovered.
func silentStreams(ws []*watchRecorder) int {
	n := 0
	for _, w := range ws {
		w.mu.Lock()
		n += w.silent
		w.mu.Unlock()
	}
	return n
}

func (w *watchRecorder) snapshot() []watchSegment {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]watchSegment, len(w.segments))
	for i, s := range w.segments {
		out[i] = *s
		out[i].Events = append([]*colonyv1.Event(nil), s.Events...)
		out[i].Streams = append([]string(nil), s.Streams...)
	}
	return out
}

func (w *watchRecorder) dump() string {
	var b strings.Builder
	for i, s := range w.snapshot() {
		fmt.Fprintf(&b, "segment %d: start %d, streams %v, resync %q\n", i, s.Start, s.Streams, s.Resync)
		for _, ev := range s.Events {
			fmt.Fprintf(&b, "  %d %s %s v%d %q\n", ev.GetZxid(), ev.GetType(), ev.GetPath(), ev.GetStat().GetVersion(), ev.GetData())
		}
	}
	return b.String()
}

// eventKey identifies an event: one zxid may carry several (a multi).
type eventKey struct {
	zxid uint64
	path string
	typ  colonyv1.EventType
}

func keyOf(ev *colonyv1.Event) eventKey {
	return eventKey{ev.GetZxid(), ev.GetPath(), ev.GetType()}
}

func sameEvent(a, b *colonyv1.Event) bool {
	return keyOf(a) == keyOf(b) && bytes.Equal(a.GetData(), b.GetData()) &&
		a.GetStat().GetVersion() == b.GetStat().GetVersion() && a.GetStat().GetMzxid() == b.GetStat().GetMzxid()
}

// checkWatches checks the recorders' streams against each other, the
// acknowledged writes and the final state:
//   - within a recorder, events come in zxid order and never twice, across
//     resumed streams too (only a resync starts over);
//   - the same event (zxid, path, type) is the same on every node;
//   - no gaps: every event any recorder got, and every acknowledged write
//     under the watched path, is in every segment whose range covers its
//     zxid (a segment ends only with an explicit resync, or at the end of
//     the run after the recorder caught up with the last write);
//   - a recorder that never resynced, replayed from the empty start, ends
//     in the final state of every key.
func checkWatches(recs []*watchRecorder, acked map[uint64]string, final map[string]regState) []string {
	var errs []string
	union := map[eventKey]*colonyv1.Event{}
	for _, r := range recs {
		for si, s := range r.snapshot() {
			var last uint64
			seenKeys := map[eventKey]bool{}
			for _, ev := range s.Events {
				k := keyOf(ev)
				if seenKeys[k] {
					errs = append(errs, fmt.Sprintf("watch %s segment %d: event %v delivered twice", r.name, si, k))
				}
				seenKeys[k] = true
				if ev.GetZxid() < last {
					errs = append(errs, fmt.Sprintf("watch %s segment %d: event at zxid %d after zxid %d", r.name, si, ev.GetZxid(), last))
				}
				if ev.GetZxid() <= s.Start {
					errs = append(errs, fmt.Sprintf("watch %s segment %d: event at zxid %d, not after the start %d", r.name, si, ev.GetZxid(), s.Start))
				}
				last = ev.GetZxid()
				if u, ok := union[k]; ok && !sameEvent(u, ev) {
					errs = append(errs, fmt.Sprintf("watch %s: event %v differs between nodes: %v vs %v", r.name, k, u, ev))
				}
				union[k] = ev
			}
		}
	}
	for _, r := range recs {
		for si, s := range r.snapshot() {
			if len(s.Events) == 0 {
				continue
			}
			lo, hi := s.Start, s.Events[len(s.Events)-1].GetZxid()
			have := map[eventKey]bool{}
			haveZxid := map[uint64]bool{}
			for _, ev := range s.Events {
				have[keyOf(ev)] = true
				haveZxid[ev.GetZxid()] = true
			}
			var missing []string
			for k := range union {
				if k.zxid > lo && k.zxid <= hi && !have[k] {
					missing = append(missing, fmt.Sprintf("%d %s %s", k.zxid, k.typ, k.path))
				}
			}
			for z, what := range acked {
				if z > lo && z <= hi && !haveZxid[z] {
					missing = append(missing, fmt.Sprintf("%d (acknowledged %s)", z, what))
				}
			}
			if len(missing) > 0 {
				sort.Strings(missing)
				errs = append(errs, fmt.Sprintf("watch %s segment %d (zxids %d..%d, streams %v): gap, missing %d events: %s",
					r.name, si, lo, hi, s.Streams, len(missing), strings.Join(missing[:min(len(missing), 10)], "; ")))
			}
		}
	}
	// An acknowledged write outside every segment's range fell in a window
	// that every recorder skipped with an explicit resync: allowed, and the
	// per-segment check above covers every write inside a range.
	// Replay.
	for _, r := range recs {
		segs := r.snapshot()
		if len(segs) != 1 {
			continue
		}
		state := map[string]regState{}
		for _, ev := range segs[0].Events {
			switch ev.GetType() {
			case colonyv1.EventType_EVENT_TYPE_CREATED, colonyv1.EventType_EVENT_TYPE_DATA_CHANGED:
				state[ev.GetPath()] = regState{Exists: true, Value: string(ev.GetData()), Version: ev.GetStat().GetVersion()}
			case colonyv1.EventType_EVENT_TYPE_DELETED:
				delete(state, ev.GetPath())
			}
		}
		for key, want := range final {
			got := state[key]
			if got != want {
				errs = append(errs, fmt.Sprintf("watch %s: replaying its events gives %s = %+v, the final read %+v", r.name, key, got, want))
			}
		}
	}
	return errs
}

// explainSilences says, for each stream of ws that went silent, which faults
// touched its node while it was silent. A stream on a paused, killed or
// cut-off node is expected to go quiet; one with no fault on its node is
// the unexplained stall of issue 13 item 10, and its report names it.
func explainSilences(ws []*watchRecorder, start time.Time, timeline []timelineEvent) []string {
	var out []string
	for _, w := range ws {
		w.mu.Lock()
		ss := slices.Clone(w.silences)
		w.mu.Unlock()
		for _, s := range ss {
			from, to := s.At.Add(-s.For).Sub(start), s.At.Sub(start)
			var faults []string
			for _, e := range timeline {
				end := e.End
				if end == 0 {
					end = e.Start
				}
				if e.Start <= to && end >= from-time.Second && mentions(e.What, s.Node) {
					faults = append(faults, fmt.Sprintf("%s %q", e.Kind, e.What))
				}
			}
			why := "UNEXPLAINED: no fault on that node then"
			if len(faults) > 0 {
				why = "faults on that node: " + strings.Join(faults, "; ")
			}
			out = append(out, fmt.Sprintf("%s on %s, silent %.1fs-%.1fs: %s", w.name, s.Node, from.Seconds(), to.Seconds(), why))
		}
	}
	return out
}

// mentions reports whether text names node as a word ("n2", not "n21").
func mentions(text, node string) bool {
	if node == "" {
		return false
	}
	for _, f := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if f == node {
			return true
		}
	}
	return false
}
