package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Server-sent events, each a JSON object in data:
//
//	snapshot  breakerList: every pair with its live window (replaces the matrix)
//	pair      pairSummary without window: one pair's record changed
//	deleted   pairState with only caller and callee: the pair's record is gone
//	status    feedStatus: whether the feed is live
//	history   trafficHistory: the live windows' recent samples, on connect
const (
	eventSnapshot = "snapshot"
	eventPair     = "pair"
	eventDeleted  = "deleted"
	eventStatus   = "status"
	eventHistory  = "history"
)

// clientBuffer is how many events a browser may fall behind by before it
// is dropped (its EventSource reconnects and starts from a snapshot).
const clientBuffer = 256

// pingInterval keeps idle streams open through proxies.
const pingInterval = 15 * time.Second

// feedStatus is the status event: whether the shared watch is established
// and the last read of the live windows worked.
type feedStatus struct {
	Watching bool   `json:"watching"`
	Error    string `json:"error,omitempty"`
}

// hub runs the one watch of /colony/breakers and the periodic read of
// the live windows, and fans both out to the browsers' event streams.
type hub struct {
	coord   Coordinator
	log     *slog.Logger
	max     int
	maxPer  int
	poll    time.Duration
	timeout time.Duration
	kick    chan struct{} // asks the poller for a snapshot now

	mu       sync.Mutex
	clients  map[*subscriber]struct{}
	perKey   map[string]int // streams per identity (remote IP for anonymous)
	snapshot []byte         // the newest snapshot event, framed
	status   feedStatus
	pollErr  string
	// records holds each pair's newest record (caller/callee -> state),
	// read when the watch starts and kept current by it: ListBreakers rows
	// lack the evidence the matrix shows for an open breaker.
	records map[string]pairState
	// polls are the newest historyLen reads of the live windows
	// (traffic.go).
	polls []trafficPoll
}

// subscriber is one browser's event stream.
type subscriber struct {
	key     string
	ch      chan []byte
	dropped chan struct{} // closed when the hub drops it for falling behind
}

func newHub(c Coordinator, log *slog.Logger, max, maxPer int, poll, timeout time.Duration) *hub {
	return &hub{
		coord: c, log: log, max: max, maxPer: maxPer, poll: poll, timeout: timeout,
		kick:    make(chan struct{}, 1),
		clients: map[*subscriber]struct{}{},
		perKey:  map[string]int{},
		records: map[string]pairState{},
	}
}

var (
	// errTooManyClients: the dashboard serves MaxClients streams already.
	errTooManyClients = errors.New("dashboard: too many browsers following live updates")
	// errTooManyForIdentity: this identity (or remote IP) has
	// MaxClientsPerIdentity streams already.
	errTooManyForIdentity = errors.New("dashboard: too many live-update streams for one identity")
)

// frame encodes one server-sent event.
func frame(event string, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return fmt.Appendf(nil, "event: %s\ndata: %s\n\n", event, b)
}

// subscribe adds a browser of identity key and queues the current status
// and snapshot for it; a fresh snapshot follows shortly.
func (h *hub) subscribe(key string) (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.perKey[key] >= h.maxPer {
		return nil, errTooManyForIdentity
	}
	if len(h.clients) >= h.max {
		return nil, errTooManyClients
	}
	s := &subscriber{key: key, ch: make(chan []byte, clientBuffer), dropped: make(chan struct{})}
	h.clients[s] = struct{}{}
	h.perKey[key]++
	s.ch <- frame(eventStatus, h.statusLocked())
	if len(h.polls) > 0 {
		s.ch <- frame(eventHistory, h.historyLocked())
	}
	if h.snapshot != nil {
		s.ch <- h.snapshot
	}
	select {
	case h.kick <- struct{}{}:
	default:
	}
	return s, nil
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s)
}

// removeLocked forgets s (once: a dropped stream unsubscribes too).
func (h *hub) removeLocked(s *subscriber) {
	if _, ok := h.clients[s]; !ok {
		return
	}
	delete(h.clients, s)
	if h.perKey[s.key]--; h.perKey[s.key] <= 0 {
		delete(h.perKey, s.key)
	}
}

func (h *hub) clientCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// broadcastLocked queues f for every browser, dropping those whose buffer
// is full rather than waiting for them.
func (h *hub) broadcastLocked(f []byte) {
	for s := range h.clients {
		select {
		case s.ch <- f:
		default:
			h.removeLocked(s)
			close(s.dropped)
		}
	}
}

func (h *hub) statusLocked() feedStatus {
	st := h.status
	if st.Error == "" && h.pollErr != "" {
		st.Error = h.pollErr
	}
	return st
}

// setWatch records the watch's state and tells the browsers.
func (h *hub) setWatch(watching bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status = feedStatus{Watching: watching}
	if err != nil {
		h.status.Error = "watching " + contract.BreakersRoot + ": " + err.Error()
	}
	h.broadcastLocked(frame(eventStatus, h.statusLocked()))
}

// runWatch keeps one persistent recursive watch of /colony/breakers until
// ctx ends, re-establishing it after a resync or an error.
func (h *hub) runWatch(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := h.watchOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		h.setWatch(false, err)
		if errors.Is(err, client.ErrResync) {
			// Watch again at once; the snapshot that follows the new
			// watch covers whatever was missed.
			h.log.Info("breaker watch must resync; watching again", "err", err)
			backoff = 250 * time.Millisecond
			continue
		}
		h.log.Warn("breaker watch failed; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (h *hub) watchOnce(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := h.coord.Watch(wctx, contract.BreakersRoot, colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive())
	if err != nil {
		return err
	}
	defer w.Close()
	// Read every record after the watch is set up: together they miss no
	// change (a record read older than an event is ignored by generation).
	recs, err := readRecords(ctx, h.coord, h.timeout)
	if err != nil {
		return err
	}
	h.mu.Lock()
	clear(h.records)
	for _, r := range recs {
		h.noteLocked(r)
	}
	h.mu.Unlock()
	h.setWatch(true, nil)
	// Changes made before the watch started are in the next snapshot.
	select {
	case h.kick <- struct{}{}:
	default:
	}
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			return err
		}
		st, deleted, ok := parseEvent(ev)
		if !ok {
			continue
		}
		h.mu.Lock()
		if deleted {
			delete(h.records, st.Caller+"/"+st.Callee)
			h.broadcastLocked(frame(eventDeleted, st))
		} else {
			h.noteLocked(st)
			h.broadcastLocked(frame(eventPair, pairSummary{pairState: st}))
		}
		h.mu.Unlock()
	}
}

// attachEvidenceLocked gives l's rows the evidence and cause of their
// generation's record, which ListBreakers rows lack.
func (h *hub) attachEvidenceLocked(l *breakerList) {
	for i := range l.Breakers {
		row := &l.Breakers[i]
		if r, ok := h.records[row.Caller+"/"+row.Callee]; ok && r.Generation == row.Generation {
			row.Evidence, row.Cause = r.Evidence, r.Cause
		}
	}
}

// noteLocked keeps st unless a newer generation of the pair is known.
func (h *hub) noteLocked(st pairState) {
	k := st.Caller + "/" + st.Callee
	if old, ok := h.records[k]; ok && old.Generation > st.Generation {
		return
	}
	h.records[k] = st
}

// parseEvent reads a watch event on a pair's record; ok is false for
// anything else (the per-caller parents, unreadable data).
func parseEvent(ev *colonyv1.Event) (st pairState, deleted, ok bool) {
	rest, ok := strings.CutPrefix(ev.GetPath(), contract.BreakersRoot+"/")
	if !ok {
		return st, false, false
	}
	caller, callee, ok := strings.Cut(rest, "/")
	if !ok || caller == "" || callee == "" || strings.Contains(callee, "/") {
		return st, false, false
	}
	if ev.GetType() == colonyv1.EventType_EVENT_TYPE_DELETED {
		return pairState{Caller: caller, Callee: callee}, true, true
	}
	var rec breaker.PairRecord
	if len(ev.GetData()) == 0 || json.Unmarshal(ev.GetData(), &rec) != nil {
		return st, false, false
	}
	return stateFromRecord(&rec), false, true
}

// readRecords reads every pair's record under /colony/breakers.
func readRecords(ctx context.Context, c Coordinator, timeout time.Duration) ([]pairState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	callers, _, err := c.Children(ctx, contract.BreakersRoot, client.WithSessionConsistency())
	if errors.Is(err, client.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", contract.BreakersRoot, err)
	}
	var paths []string
	for _, caller := range callers {
		p := contract.BreakersRoot + "/" + caller
		callees, _, err := c.Children(ctx, p, client.WithSessionConsistency())
		if errors.Is(err, client.ErrNoNode) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", p, err)
		}
		for _, callee := range callees {
			paths = append(paths, p+"/"+callee)
		}
	}
	out := make([]pairState, len(paths))
	ok := make([]bool, len(paths))
	errs := make([]error, len(paths))
	parallel(len(paths), func(i int) {
		data, _, err := c.Get(ctx, paths[i], client.WithSessionConsistency())
		if errors.Is(err, client.ErrNoNode) {
			return
		}
		if err != nil {
			errs[i] = fmt.Errorf("reading %s: %w", paths[i], err)
			return
		}
		var rec breaker.PairRecord
		if json.Unmarshal(data, &rec) == nil {
			out[i], ok[i] = stateFromRecord(&rec), true
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	recs := out[:0]
	for i, r := range out {
		if ok[i] {
			recs = append(recs, r)
		}
	}
	return recs, nil
}

// runPoll reads every pair's live window every poll interval while a
// browser is connected (and when asked), and sends it as a snapshot.
func (h *hub) runPoll(ctx context.Context) {
	t := time.NewTicker(h.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.kick:
		}
		if h.clientCount() == 0 {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, h.timeout)
		l, err := listBreakers(pctx, h.coord)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.mu.Lock()
		prev := h.pollErr
		if err != nil {
			h.pollErr = "reading the breakers: " + err.Error()
		} else {
			h.pollErr = ""
			h.attachEvidenceLocked(&l)
			h.recordPollLocked(l)
			h.snapshot = frame(eventSnapshot, l)
			h.broadcastLocked(h.snapshot)
		}
		if h.pollErr != prev {
			h.broadcastLocked(frame(eventStatus, h.statusLocked()))
		}
		h.mu.Unlock()
	}
}

// GET /api/events: the live feed, as server-sent events.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	s, err := d.hub.subscribe(principalFrom(r.Context()).Key)
	if errors.Is(err, errTooManyForIdentity) {
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, "", fmt.Sprintf("%v (at most %d; close other tabs)", err, d.cfg.MaxClientsPerIdentity))
		return
	}
	if err != nil {
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "", fmt.Sprintf("%v (at most %d)", err, d.cfg.MaxClients))
		return
	}
	defer d.hub.unsubscribe(s)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: how long the browser waits before reconnecting.
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		var f []byte
		select {
		case <-r.Context().Done():
			return
		case <-d.ctx.Done():
			return
		case <-s.dropped:
			return // fell behind: the browser reconnects and gets a snapshot
		case <-ping.C:
			f = []byte(": ping\n\n")
		case f = <-s.ch:
		}
		if _, err := w.Write(f); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
