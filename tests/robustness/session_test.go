//go:build unix

package robustness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// sessionTTL is the TTL the session workload asks for: short, so pauses and
// partitions of a few seconds outlast it.
const sessionTTL = 2 * time.Second

// ephRoot is the parent of the session workload's ephemeral nodes; only
// the workload writes under it.
const ephRoot = "/rb-eph"

// sessionWorkload runs two session holders through the client proxies.
// Each session gets 1-3 ephemeral nodes under ephRoot, created over its
// first few hundred milliseconds, and ends in one of three ways the seed
// picks: Close; abandoned (the client goes away without closing it, so the
// leader expires it a TTL later); or held until the coordinator expires it
// (a fault) or the workload ends. Observers record what clients can see of
// the ephemerals: two persistent recursive watches of ephRoot (resumed on
// the next node after the last zxid, like the key watches), and a reader
// that, through random nodes, lists ephRoot (linearizable, or the node's
// own possibly stale state), gets a known ephemeral, and lists the open
// sessions, keeping each answer's zxid (the index of the state it shows).
//
// Checks: a session was not expired before TTL after the send time of its
// last acknowledged keep-alive (when a keep-alive or the holder's Close
// finds it expired, and when a linearizable session list that answered
// before then lacks it); and checkEphemerals: a session's ephemerals are
// deleted in one entry, which is the one that ends the session, and none
// is observable after it.
type sessionWorkload struct {
	eps    []string
	tls    *tls.Config // the clients' TLS; nil: plaintext
	seed   uint64
	events *eventLog
	// canaryDelete (ROBUSTNESS_CANARY=ephemeral-delete) makes each holder
	// delete one of its ephemerals itself before the session ends: the
	// ephemeral check must fail.
	canaryDelete bool
	recs         []*watchRecorder
	conns        []*grpc.ClientConn // the reader's, one per node

	holdersDone chan struct{}

	mu         sync.Mutex
	sessions   []*ephSession
	obs        []ephObservation
	opened     int
	expired    int
	lost       int // given up by the client (no keep-alive acknowledged in TTL)
	closed     int
	abandoned  int
	violations []string
	errs       []string
}

// ephSession is one session the workload opened and the ephemerals it
// tried to create.
type ephSession struct {
	ID         uint64
	Holder     int
	Ephemerals []ephNode
	// End is how it ended: "closed", "abandoned" (client gone, left to
	// expire), "expired" (the coordinator said so), "lost" (the client gave
	// up), "close-failed" (no answer to Close: left to expire); empty while
	// the holder has it.
	End string
	// CloseZxid is, after an acknowledged Close, the highest zxid the
	// client had seen then: at least the entry that ended the session.
	CloseZxid uint64
	// Deleted names ephemerals the holder deleted itself (only the
	// canary does), which the check must not excuse.
	Deleted []string
	// TTL is the granted TTL, LastAck the send time of the last
	// acknowledged keep-alive (or of the open) once the holder let the
	// session go, and CloseCalled when it asked to close it (zero: never):
	// the session must be open until min(LastAck+TTL, CloseCalled).
	TTL         time.Duration
	LastAck     time.Time
	CloseCalled time.Time
}

// ephNode is one ephemeral create: its outcome is a czxid (acknowledged),
// Refused (a definite error: the session was gone), or unknown.
type ephNode struct {
	Path    string
	Czxid   uint64
	Refused bool
}

// ephObservation is one answer that shows ephemerals, at the state of
// index Zxid on Node.
type ephObservation struct {
	Kind   string // "children", "get" or "sessions"
	Zxid   uint64
	Node   string
	Lin    bool     // a linearizable read (else the node's own state)
	Names  []string // children: the names listed
	Path   string   // get
	Exists bool     // get
	Owner  uint64   // get: the node's ephemeral owner
	// Sessions (sessions): the open sessions and each one's ephemerals.
	Sessions map[uint64]int32
	Final    bool // read after the workload ended and every session did
	// At is when the answer came (sessions): the state it shows was
	// current at some time before.
	At time.Time
}

func (o ephObservation) String() string {
	cons := "local"
	if o.Lin {
		cons = "linearizable"
	}
	return fmt.Sprintf("%s read on %s at zxid %d", cons, o.Node, o.Zxid)
}

func newSessionWorkload(eps []string, tlsCfg *tls.Config, seed uint64, events *eventLog, canaryDelete bool) (*sessionWorkload, error) {
	w := &sessionWorkload{eps: eps, tls: tlsCfg, seed: seed, events: events, canaryDelete: canaryDelete, holdersDone: make(chan struct{})}
	for i := range 2 {
		rec, err := newWatchRecorder(fmt.Sprintf("eph%d", i), ephRoot, eps, tlsCfg, int(seed)+i)
		if err != nil {
			w.close()
			return nil, err
		}
		w.recs = append(w.recs, rec)
	}
	for _, ep := range eps {
		conn, err := dial(ep, tlsCfg)
		if err != nil {
			w.close()
			return nil, err
		}
		w.conns = append(w.conns, conn)
	}
	return w, nil
}

func (w *sessionWorkload) close() {
	for _, r := range w.recs {
		r.close()
	}
	for _, c := range w.conns {
		c.Close()
	}
}

// run starts the watches (until watchCtx ends), then the holders and the
// reader until ctx ends.
func (w *sessionWorkload) run(ctx, watchCtx context.Context) {
	var wg sync.WaitGroup
	for _, rec := range w.recs {
		wg.Add(1)
		go func() { defer wg.Done(); rec.run(watchCtx) }()
	}
	defer wg.Wait()
	for _, rec := range w.recs {
		select {
		case <-rec.started:
		case <-ctx.Done():
			close(w.holdersDone)
			return
		}
	}
	var holders sync.WaitGroup
	for i := range 2 {
		holders.Add(1)
		go func() {
			defer holders.Done()
			w.holder(ctx, i)
		}()
	}
	holders.Add(1)
	go func() {
		defer holders.Done()
		w.reader(ctx)
	}()
	holders.Wait()
	close(w.holdersDone)
}

func (w *sessionWorkload) holder(ctx context.Context, i int) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(30+i)))
	for n := 0; ctx.Err() == nil; n++ {
		w.session(ctx, i, n, rng)
	}
}

// session runs one session of holder i with a client of its own (so it
// can be abandoned by closing the client).
func (w *sessionWorkload) session(ctx context.Context, i, n int, rng *rand.Rand) {
	cl, err := client.New(client.Config{Endpoints: w.eps, TLS: w.tls, RequestTimeout: 1500 * time.Millisecond, DialTimeout: time.Second})
	if err != nil {
		w.record(&w.errs, "session holder %d: %v", i, err)
		sleepCtx(ctx, time.Second)
		return
	}
	defer cl.Close()
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	s, err := cl.OpenSession(octx, sessionTTL, fmt.Sprintf("rb-holder-%d", i))
	cancel()
	if err != nil {
		sleepCtx(ctx, 200*time.Millisecond)
		return
	}
	es := &ephSession{ID: s.ID(), Holder: i, TTL: s.TTL()}
	w.mu.Lock()
	w.opened++
	w.sessions = append(w.sessions, es)
	w.mu.Unlock()

	k := 1 + rng.IntN(3)
	if w.canaryDelete {
		k = max(k, 2)
	}
	how := rng.IntN(3) // 0: Close, 1: abandon, 2: hold until it ends
	hold := time.Duration(300+rng.IntN(2700)) * time.Millisecond
	if how == 2 {
		hold = 8 * time.Second // then Close, so sessions keep turning over
	}
	for j := range k {
		p := fmt.Sprintf("%s/h%d-%d-%d", ephRoot, i, n, j)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, st, err := cl.Create(cctx, p, []byte(fmt.Sprint(s.ID())), client.Ephemeral(s.ID()))
		cancel()
		node := ephNode{Path: p}
		switch {
		case err == nil:
			node.Czxid = st.GetCzxid()
		case errors.Is(err, client.ErrSessionExpired):
			node.Refused = true
		}
		w.mu.Lock()
		es.Ephemerals = append(es.Ephemerals, node)
		w.mu.Unlock()
		select {
		case <-s.Done():
		case <-ctx.Done():
		case <-time.After(time.Duration(30+rng.IntN(300)) * time.Millisecond):
			continue
		}
		break
	}
	if w.canaryDelete && es.Ephemerals[0].Czxid != 0 {
		// The canary: an ephemeral deleted on its own, not by its
		// session's end.
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := cl.Delete(dctx, es.Ephemerals[0].Path, client.AnyVersion); err == nil {
			w.mu.Lock()
			es.Deleted = append(es.Deleted, es.Ephemerals[0].Path)
			w.mu.Unlock()
		}
		cancel()
	}
	timer := time.NewTimer(hold)
	defer timer.Stop()
	select {
	case <-s.Done():
		w.ended(s, es)
		return
	case <-ctx.Done():
		how = 0 // the workload ends: close it
	case <-timer.C:
	}
	if how == 1 {
		cl.Close() // stops its keep-alives
		w.mu.Lock()
		es.End, es.LastAck = "abandoned", s.LastAck()
		w.abandoned++
		w.mu.Unlock()
		w.events.note("session", "session %d abandoned (client closed, session left to expire)", s.ID())
		return
	}
	// CloseSession, not Session.Close: that one answers nil for a session
	// that had expired already, which is a different end (and no zxid).
	w.mu.Lock()
	es.CloseCalled, es.LastAck = time.Now(), s.LastAck()
	w.mu.Unlock()
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = cl.CloseSession(cctx, s.ID())
	cancel()
	switch {
	case err == nil:
		w.mu.Lock()
		es.End, es.CloseZxid = "closed", cl.LastZxid() // the answer's zxid: at least the closing entry's
		w.closed++
		w.mu.Unlock()
	case errors.Is(err, client.ErrSessionExpired):
		w.expiredBefore(s, es, "its Close found it expired")
	default:
		w.mu.Lock()
		es.End = "close-failed"
		w.mu.Unlock()
	}
	cctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	s.Close(cctx) // ends its keep-alives
	cancel()
}

// expiredBefore records a session the coordinator had expired when the
// holder learned it (how): the expiry must not have come before TTL after
// the send time of the last acknowledged keep-alive, so now must be past
// that.
func (w *sessionWorkload) expiredBefore(s *client.Session, es *ephSession, how string) {
	since := time.Since(s.LastAck())
	w.mu.Lock()
	w.expired++
	es.End = "expired"
	w.mu.Unlock()
	w.events.note("session", "session %d expired (%s); last acknowledged keep-alive sent %v earlier (TTL %v)", s.ID(), how, since.Round(time.Millisecond), s.TTL())
	if since < s.TTL() {
		w.record(&w.violations, "session %d was expired by the coordinator less than %v after the send time of its last acknowledged keep-alive, before its TTL %v (%s)", s.ID(), since, s.TTL(), how)
	}
}

// ended checks a session that ended while its holder had it.
func (w *sessionWorkload) ended(s *client.Session, es *ephSession) {
	err := s.Err()
	since := time.Since(s.LastAck())
	w.mu.Lock()
	es.LastAck = s.LastAck()
	w.mu.Unlock()
	if status.Code(err) != codes.NotFound {
		w.mu.Lock()
		w.lost++
		es.End, es.CloseCalled = "lost", time.Now()
		w.mu.Unlock()
		w.events.note("session", "session %d lost by the client %v after its last acknowledged keep-alive: %v", s.ID(), since.Round(time.Millisecond), err)
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Close(cctx)
		cancel()
		return
	}
	w.expiredBefore(s, es, "a keep-alive was answered NotFound")
}

// reader observes ephRoot and the open sessions through random nodes until
// ctx ends.
func (w *sessionWorkload) reader(ctx context.Context) {
	rng := rand.New(rand.NewPCG(w.seed, 40))
	for ctx.Err() == nil {
		conn := w.conns[rng.IntN(len(w.conns))]
		lin := rng.IntN(2) == 0
		switch rng.IntN(3) {
		case 0:
			w.readChildren(ctx, conn, lin, false)
		case 1:
			w.readSessions(ctx, conn, false)
		default:
			if p := w.randomPath(rng); p != "" {
				w.readGet(ctx, conn, p, lin)
			}
		}
		sleepCtx(ctx, time.Duration(20+rng.IntN(60))*time.Millisecond)
	}
}

func (w *sessionWorkload) randomPath(rng *rand.Rand) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.sessions) == 0 {
		return ""
	}
	// Mostly recent sessions: the ones whose end is near.
	s := w.sessions[max(0, len(w.sessions)-1-rng.IntN(min(len(w.sessions), 6)))]
	if len(s.Ephemerals) == 0 {
		return ""
	}
	return s.Ephemerals[rng.IntN(len(s.Ephemerals))].Path
}

func consistency(lin bool) colonyv1.Consistency {
	if lin {
		return colonyv1.Consistency_CONSISTENCY_LINEARIZABLE
	}
	// Without a minimum zxid: whatever the node holds, stale or not. The
	// answer's zxid says which state it is.
	return colonyv1.Consistency_CONSISTENCY_SESSION
}

func (w *sessionWorkload) addObservation(o ephObservation) {
	w.mu.Lock()
	w.obs = append(w.obs, o)
	w.mu.Unlock()
}

func (w *sessionWorkload) readChildren(ctx context.Context, conn *grpc.ClientConn, lin, final bool) error {
	rctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	ch, err := colonyv1.NewTreeClient(conn).Children(rctx, &colonyv1.ChildrenRequest{Path: ephRoot, Consistency: consistency(lin)})
	if err != nil {
		return err
	}
	w.addObservation(ephObservation{Kind: "children", Zxid: ch.GetHeader().GetZxid(), Node: ch.GetHeader().GetMemberId(), Lin: lin, Names: ch.GetNames(), Final: final})
	return nil
}

func (w *sessionWorkload) readGet(ctx context.Context, conn *grpc.ClientConn, p string, lin bool) {
	rctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	g, err := colonyv1.NewTreeClient(conn).Get(rctx, &colonyv1.GetRequest{Path: p, Consistency: consistency(lin)})
	switch {
	case err == nil:
		w.addObservation(ephObservation{Kind: "get", Zxid: g.GetHeader().GetZxid(), Node: g.GetHeader().GetMemberId(), Lin: lin,
			Path: p, Exists: true, Owner: g.GetStat().GetEphemeralOwner()})
	case status.Code(err) == codes.NotFound:
		// A NotFound carries no header: the zxid it was read at is
		// unknown, so it proves nothing.
	}
}

func (w *sessionWorkload) readSessions(ctx context.Context, conn *grpc.ClientConn, final bool) (map[uint64]int32, error) {
	rctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	l, err := colonyv1.NewSessionsClient(conn).List(rctx, &colonyv1.ListSessionsRequest{})
	if err != nil {
		return nil, err
	}
	open := map[uint64]int32{}
	for _, s := range l.GetSessions() {
		open[s.GetSessionId()] = s.GetEphemerals()
	}
	w.addObservation(ephObservation{Kind: "sessions", Zxid: l.GetHeader().GetZxid(), Node: l.GetHeader().GetMemberId(), Lin: true, Sessions: open, Final: final, At: time.Now()})
	return open, nil
}

// finish runs after the workload stopped: every session it opened must end
// (closed ones at once, abandoned ones within their TTL), then the final
// state of ephRoot is read and the watches catch up with its last change.
func (w *sessionWorkload) finish(r *run) {
	select {
	case <-w.holdersDone:
	case <-time.After(20 * time.Second):
		w.record(&w.errs, "the session holders did not stop within 20s")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*sessionTTL+20*time.Second)
	defer cancel()
	w.mu.Lock()
	var ours []uint64
	for _, s := range w.sessions {
		ours = append(ours, s.ID)
	}
	w.mu.Unlock()
	var alive []uint64
	for i := 0; ; i++ {
		open, err := w.readSessions(ctx, w.conns[i%len(w.conns)], true)
		if err == nil {
			alive = alive[:0]
			for _, id := range ours {
				if _, ok := open[id]; ok {
					alive = append(alive, id)
				}
			}
			if len(alive) == 0 {
				break
			}
		}
		if !sleepUntil(ctx, 200*time.Millisecond) {
			w.record(&w.violations, "sessions %v still open (or no answer: %v) %v after the workload ended; their TTL is %v", alive, err, 2*sessionTTL+20*time.Second, sessionTTL)
			return
		}
	}
	for i := 0; ; i++ {
		if w.readChildren(ctx, w.conns[i%len(w.conns)], true, true) == nil {
			break
		}
		if !sleepUntil(ctx, 200*time.Millisecond) {
			w.record(&w.errs, "no final read of %s", ephRoot)
			return
		}
	}
	var target uint64
	err := retryAdmin(ctx, r.c, func(ctx context.Context, n *Node) error {
		g, err := n.Tree().Get(ctx, &colonyv1.GetRequest{Path: ephRoot})
		target = g.GetStat().GetPzxid()
		return err
	})
	if err != nil {
		w.record(&w.errs, "reading %s: %v", ephRoot, err)
		return
	}
	for _, rec := range w.recs {
		for rec.seen() < target && ctx.Err() == nil {
			sleepCtx(ctx, 50*time.Millisecond)
		}
		if rec.seen() < target {
			w.record(&w.errs, "watch %s stalled: it has seen up to zxid %d, the last change under %s is at %d", rec.name, rec.seen(), ephRoot, target)
		}
	}
}

func (w *sessionWorkload) record(list *[]string, format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	*list = append(*list, fmt.Sprintf(format, args...))
}

func (w *sessionWorkload) check(r *run) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		r.fail("sessions: %s", v)
	}
	for _, e := range w.errs {
		r.fail("sessions: %s", e)
	}
	var sessions []ephSession
	for _, s := range w.sessions {
		cp := *s
		cp.Ephemerals = slices.Clone(s.Ephemerals)
		sessions = append(sessions, cp)
	}
	var streams [][]watchSegment
	for _, rec := range w.recs {
		streams = append(streams, rec.snapshot())
	}
	errs, ends := checkEphemerals(sessions, streams, w.obs)
	for _, e := range errs {
		r.fail("ephemerals: %s", e)
	}
	for _, e := range checkWatches(w.recs, nil, nil) {
		r.fail("ephemerals watch: %s", e)
	}
	var b strings.Builder
	nEph := 0
	for _, s := range sessions {
		fmt.Fprintf(&b, "session %d holder %d end %q close-zxid %d ephemerals deleted at %d\n", s.ID, s.Holder, s.End, s.CloseZxid, ends[s.ID])
		for _, e := range s.Ephemerals {
			fmt.Fprintf(&b, "  %s czxid %d refused %v\n", e.Path, e.Czxid, e.Refused)
			if e.Czxid != 0 {
				nEph++
			}
		}
	}
	for _, o := range w.obs {
		fmt.Fprintf(&b, "observed: %s %s names=%v path=%s exists=%v owner=%d sessions=%v final=%v\n", o.Kind, o, o.Names, o.Path, o.Exists, o.Owner, o.Sessions, o.Final)
	}
	r.files["sessions.txt"] = b.String()
	for _, rec := range w.recs {
		r.files["watch-"+rec.name+".txt"] = rec.dump()
	}
	r.t.Logf("sessions: %d opened (%d closed, %d abandoned, %d expired by the coordinator, %d given up by the client); %d ephemerals acknowledged, %d sessions seen ending, %d observations",
		w.opened, w.closed, w.abandoned, w.expired, w.lost, nEph, len(ends), len(w.obs))
}

// checkEphemerals checks that each session's ephemerals vanish in the one
// entry that ends the session, and are never observable after it:
//   - from the watches: every DELETED event of a session's ephemerals has
//     the same zxid (the session's end), at or before the zxid the client
//     had seen when its Close was acknowledged; every event names the
//     session as the node's owner; no event of the session's ephemerals (a
//     create racing the end included) comes after that zxid;
//   - from the session lists: the session is open in every list read at an
//     index from its open up to before that zxid, with as many ephemerals
//     as were created by then, and in none read at or after it;
//   - from reads of ephRoot and of the nodes: no ephemeral of the session
//     in any state at or after its end (or, when no deletion was seen, after
//     the first list without the session), and every one it created in
//     every state between its create and the end;
//   - the final read, after every session ended, lists no ephemeral.
//
// It returns the failures and each session's end zxid as seen.
func checkEphemerals(sessions []ephSession, streams [][]watchSegment, obs []ephObservation) ([]string, map[uint64]uint64) {
	var errs []string
	fail := func(format string, args ...any) {
		if len(errs) < 50 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	owner := map[string]uint64{} // path -> the session that created it
	byID := map[uint64]*ephSession{}
	for i := range sessions {
		s := &sessions[i]
		byID[s.ID] = s
		for _, e := range s.Ephemerals {
			owner[e.Path] = s.ID
		}
	}
	created := map[string]uint64{} // path -> czxid, from the watches
	deleted := map[string]uint64{} // path -> zxid of its deletion
	type evRef struct {
		ev  *colonyv1.Event
		rec int
	}
	var all []evRef
	for ri, segs := range streams {
		for _, seg := range segs {
			for _, ev := range seg.Events {
				all = append(all, evRef{ev, ri})
				p, z := ev.GetPath(), ev.GetZxid()
				sid, ok := owner[p]
				if !ok {
					fail("watch %d: %v of %s at zxid %d: a node under %s the workload did not create", ri, ev.GetType(), p, z, ephRoot)
					continue
				}
				if o := ev.GetStat().GetEphemeralOwner(); o != sid {
					fail("watch %d: %v of %s at zxid %d names session %d as its owner; session %d created it", ri, ev.GetType(), p, z, o, sid)
				}
				switch ev.GetType() {
				case colonyv1.EventType_EVENT_TYPE_CREATED:
					created[p] = z
				case colonyv1.EventType_EVENT_TYPE_DELETED:
					deleted[p] = z
				default:
					fail("watch %d: %v of %s at zxid %d: nothing changes an ephemeral's data", ri, ev.GetType(), p, z)
				}
			}
		}
	}
	// Each session's end, as its ephemerals' deletion.
	ends := map[uint64]uint64{}
	complete := map[uint64]bool{} // every create's outcome is known
	czxid := map[string]uint64{}
	for _, s := range sessions {
		zs := map[uint64][]string{}
		complete[s.ID] = true
		for _, e := range s.Ephemerals {
			c := e.Czxid
			if c == 0 {
				c = created[e.Path]
			} else if w := created[e.Path]; w != 0 && w != c {
				fail("%s: created at zxid %d by the acknowledgement, %d by the watch", e.Path, c, w)
			}
			if c != 0 {
				czxid[e.Path] = c
			} else if !e.Refused {
				complete[s.ID] = false
			}
			if z, ok := deleted[e.Path]; ok {
				zs[z] = append(zs[z], path.Base(e.Path))
			}
		}
		switch len(zs) {
		case 0:
		case 1:
			for z := range zs {
				ends[s.ID] = z
			}
		default:
			var parts []string
			for _, z := range slices.Sorted(maps.Keys(zs)) {
				parts = append(parts, fmt.Sprintf("%v at %d", zs[z], z))
			}
			fail("session %d (%s): its ephemerals were deleted in different entries (%s), not all in the one that ended it", s.ID, s.End, strings.Join(parts, ", "))
			ends[s.ID] = slices.Max(slices.Collect(maps.Keys(zs)))
		}
		if z, ok := ends[s.ID]; ok && s.CloseZxid != 0 && z > s.CloseZxid {
			fail("session %d: its ephemerals were deleted at zxid %d, after its Close was acknowledged with zxid %d", s.ID, z, s.CloseZxid)
		}
	}
	// Nothing of a session after its end.
	for _, r := range all {
		sid := owner[r.ev.GetPath()]
		if end, ok := ends[sid]; ok && r.ev.GetZxid() > end {
			fail("watch %d: %v of %s at zxid %d, after its session %d ended at zxid %d", r.rec, r.ev.GetType(), r.ev.GetPath(), r.ev.GetZxid(), sid, end)
		}
	}
	// The session lists pin each session's end to its ephemerals' deletion;
	// for a session whose deletion no watch saw, the first list without it
	// bounds its end.
	dead := maps.Clone(ends)
	for _, o := range obs {
		if o.Kind != "sessions" {
			continue
		}
		for _, s := range sessions {
			n, open := o.Sessions[s.ID]
			end, known := ends[s.ID]
			if !open && o.Zxid >= s.ID && !o.At.IsZero() && !s.LastAck.IsZero() {
				// A linearizable list shows every change committed before
				// it answered: the session was gone by then.
				alive := s.LastAck.Add(s.TTL)
				if !s.CloseCalled.IsZero() && s.CloseCalled.Before(alive) {
					alive = s.CloseCalled
				}
				if o.At.Before(alive) {
					fail("session %d is gone in the %s, answered %v before the end of its TTL %v after the send time of its last acknowledged keep-alive (and before any Close): expired early",
						s.ID, o, alive.Sub(o.At).Round(time.Millisecond), s.TTL)
				}
			}
			switch {
			case !known:
				if !open && o.Zxid >= s.ID && (dead[s.ID] == 0 || o.Zxid < dead[s.ID]) {
					dead[s.ID] = o.Zxid
				}
			case open && o.Zxid >= end:
				fail("session %d is open in the %s, after its ephemerals were deleted at zxid %d", s.ID, o, end)
			case !open && o.Zxid >= s.ID && o.Zxid < end:
				fail("session %d is not open in the %s, but its ephemerals lived until zxid %d", s.ID, o, end)
			case open && complete[s.ID]:
				want := int32(0)
				for _, e := range s.Ephemerals {
					if c := czxid[e.Path]; c != 0 && c <= o.Zxid {
						want++
					}
				}
				if n != want {
					fail("session %d has %d ephemerals in the %s; it had created %d by then", s.ID, n, o, want)
				}
			}
		}
	}
	for _, o := range obs {
		switch o.Kind {
		case "children":
			listed := map[string]bool{}
			for _, name := range o.Names {
				p := ephRoot + "/" + name
				listed[p] = true
				sid, ok := owner[p]
				if !ok {
					fail("%s lists %s, which the workload did not create", o, p)
					continue
				}
				if d := dead[sid]; d != 0 && o.Zxid >= d {
					fail("%s lists %s of session %d, which ended at zxid %d", o, p, sid, d)
				} else if o.Final {
					fail("the final %s lists %s of session %d, after every session ended", o, p, sid)
				}
			}
			for _, s := range sessions {
				end, ok := ends[s.ID]
				if !ok {
					continue
				}
				for _, e := range s.Ephemerals {
					if c := czxid[e.Path]; c != 0 && c <= o.Zxid && o.Zxid < end && !listed[e.Path] {
						fail("%s does not list %s (created at zxid %d), but its session %d ended only at zxid %d", o, e.Path, c, s.ID, end)
					}
				}
			}
		case "get":
			sid := owner[o.Path]
			if o.Owner != sid {
				fail("%s: %s has owner %d; session %d created it", o, o.Path, o.Owner, sid)
			}
			if d := dead[sid]; d != 0 && o.Zxid >= d {
				fail("%s: %s of session %d exists, but the session ended at zxid %d", o, o.Path, sid, d)
			}
		}
	}
	return errs, ends
}
