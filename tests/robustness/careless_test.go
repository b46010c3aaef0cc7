//go:build unix

package robustness

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// carelessRoot is where the careless client writes; only it writes there.
const carelessRoot = "/rb-careless"

// carelessBigValues is how many values the large-value watch resume writes
// per round, each carelessBigBytes long: together above the 4 MiB gRPC
// message limit a 1 MiB znode limit gives (coordinator maxMessageBytes), so
// a watch that batches by count, not bytes, cannot send them in one message.
const (
	carelessBigValues = 4
	carelessBigBytes  = 1 << 20 // the coordinator's default MaxDataBytes
	// carelessMaxResumes bounds how often the client may re-subscribe while
	// it resumes one watch over the large values: a few per fault, never a
	// loop (issue 13: 2,765 re-subscriptions in 5 s).
	carelessMaxResumes = 10
	// carelessWatchBudget is how long one large-value watch may take to
	// deliver every value (or a resync) under faults.
	carelessWatchBudget = 30 * time.Second
	// resumeLogMsg is the client's debug record for a persistent watch that
	// re-subscribes after its stream broke; the actor counts them.
	resumeLogMsg = "coordinator client: watch stream broke, resuming"
)

// carelessPaths are the znodes the run's setup creates for the actor.
func carelessPaths() []string {
	ps := []string{carelessRoot, carelessRoot + "/ids", carelessRoot + "/eph", carelessRoot + "/big"}
	for j := range carelessBigValues {
		ps = append(ps, fmt.Sprintf("%s/big/v%d", carelessRoot, j))
	}
	return ps
}

// carelessActor behaves as a careless client would, during the faults, and
// checks that the coordinator still keeps its promises (issue 13 items 1-3):
//
//   - ids: clients A and B (two client.Client instances with client ids of
//     their own) create different znodes with the same request id; then A
//     reuses the id for a different create. Both first creates must be
//     applied (final reads show every acknowledged one); A's reuse must be
//     refused with InvalidArgument and never applied.
//   - sessions: A opens a session (request id O) with an ephemeral; B opens
//     one with the same request id O and must get a session of its own. A
//     asks to close its session with the request id of its earlier create
//     (refused: InvalidArgument); the session must still be keep-alive-able
//     and hold its ephemeral. Then A closes it for real, twice (the same id,
//     then a new one): keep-alives get NotFound, the ephemeral is gone, the
//     session is not listed, and a retried Open with O answers NotFound,
//     never OK. After the run no session of the actor is still open.
//   - big watch (every other round): A sets carelessBigValues values of
//     1 MiB, then watches their parent from the zxid before them: the watch
//     delivers every acknowledged value (or an explicit resync) within
//     carelessWatchBudget and the client re-subscribes at most
//     carelessMaxResumes times.
//
// An outcome the faults leave unknown (Unavailable, DeadlineExceeded, no
// answer) is never a failure; later checks only use what was acknowledged.
type carelessActor struct {
	eps    []string
	seed   uint64
	events *eventLog
	cls    [2]*client.Client // A and B
	// big writes the large values as A (same client id), with attempts
	// long enough for 1 MiB writes under -race and faults.
	big   *client.Client
	ids   [2]string // their client ids
	conns []*grpc.ClientConn
	// resumes counts A's watch re-subscriptions (from its debug log).
	resumes atomic.Int64
	// bigDone is closed when run has returned, its last watch checked.
	bigDone chan struct{}

	mu         sync.Mutex
	acked      []string // paths whose create was acknowledged: must exist at the end
	forbidden  []string // paths a refused request named: must never exist
	sessions   []uint64 // every session the actor was answered with
	counts     map[string]int
	violations []string
	log        []string
}

func newCarelessActor(eps []string, tlsCfg *tls.Config, seed uint64, events *eventLog) (*carelessActor, error) {
	a := &carelessActor{eps: eps, seed: seed, events: events, counts: map[string]int{}, bigDone: make(chan struct{})}
	for i, name := range []string{"a", "b"} {
		a.ids[i] = fmt.Sprintf("rb-careless-%d-%s", seed, name)
		// Each client sends its own id (colony-client-id); the ids are
		// fixed per seed so a report names them.
		cfg := client.Config{Endpoints: eps, TLS: tlsCfg, RequestTimeout: attemptTimeout, DialTimeout: time.Second, ClientID: a.ids[i]}
		if i == 0 {
			cfg.Logger = slog.New(&countingHandler{msg: resumeLogMsg, n: &a.resumes})
		}
		cl, err := client.New(cfg)
		if err != nil {
			a.close()
			return nil, err
		}
		a.cls[i] = cl
	}
	big, err := client.New(client.Config{Endpoints: eps, TLS: tlsCfg, RequestTimeout: 5 * time.Second, DialTimeout: time.Second})
	if err != nil {
		a.close()
		return nil, err
	}
	a.big = big
	for _, ep := range eps {
		conn, err := dial(ep, tlsCfg)
		if err != nil {
			a.close()
			return nil, err
		}
		a.conns = append(a.conns, conn)
	}
	return a, nil
}

func (a *carelessActor) close() {
	for _, cl := range append(a.cls[:], a.big) {
		if cl != nil {
			cl.Close()
		}
	}
	for _, c := range a.conns {
		c.Close()
	}
}

// indeterminate reports whether err leaves a request's outcome unknown.
func indeterminate(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, client.ErrUnavailable) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

func (a *carelessActor) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.violations = append(a.violations, msg)
	a.log = append(a.log, "FAIL: "+msg)
}

func (a *carelessActor) note(check, format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.counts[check]++
	a.log = append(a.log, fmt.Sprintf("%s: %s", check, fmt.Sprintf(format, args...)))
}

// run plays rounds until ctx ends: the id and session rounds in turn, and
// beside them the large-value watch rounds, whose last watch may go on in
// watchCtx (the watches' context, which outlives the workload) so a round
// cut short by the workload's end still gets checked.
func (a *carelessActor) run(ctx, watchCtx context.Context) {
	defer close(a.bigDone)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ctx.Err() == nil; n++ {
			a.bigWatch(ctx, watchCtx, n)
			sleepCtx(ctx, 200*time.Millisecond)
		}
	}()
	defer wg.Wait()
	rng := rand.New(rand.NewPCG(a.seed, 50))
	for n := 0; ctx.Err() == nil; n++ {
		a.ids1(ctx, n)
		if ctx.Err() != nil {
			return
		}
		a.sessionRound(ctx, n)
		sleepCtx(ctx, time.Duration(100+rng.IntN(400))*time.Millisecond)
	}
}

// opCtx is one request's budget: long enough to fail over across nodes.
func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 5*time.Second)
}

// ids1 is the shared and reused request id round.
func (a *carelessActor) ids1(ctx context.Context, n int) {
	id := fmt.Sprintf("rb-careless-%d-id-%d", a.seed, n)
	pa := fmt.Sprintf("%s/ids/a-%d", carelessRoot, n)
	pb := fmt.Sprintf("%s/ids/b-%d", carelessRoot, n)
	var errs [2]error
	for who, p := range []string{pa, pb} {
		cctx, cancel := opCtx(ctx)
		var created string
		created, _, errs[who] = a.cls[who].Create(client.WithRequestID(cctx, id), p, []byte(p))
		cancel()
		switch {
		case errs[who] == nil && created != p:
			a.fail("ids: client %s created %s with request id %s (the other client's too) and was answered with %s, another create's result", a.ids[who], p, id, created)
		case errs[who] == nil:
			a.mu.Lock()
			a.acked = append(a.acked, p)
			a.mu.Unlock()
			a.note("shared-id-create", "client %d create %s with request id %s: OK", who, p, id)
		case indeterminate(errs[who]):
			a.note("unknown", "client %d create %s with request id %s: %v", who, p, id, errs[who])
		default:
			a.fail("ids: client %s created %s with request id %s (the other client's too): %v; want it applied", a.ids[who], p, id, errs[who])
		}
	}
	if errs[0] != nil {
		return // A's first create may not be applied: the reuse below could legitimately be a first use
	}
	// The same client and id, a different command: refused, never applied.
	other := pa + "-reused"
	a.mu.Lock()
	a.forbidden = append(a.forbidden, other)
	a.mu.Unlock()
	cctx, cancel := opCtx(ctx)
	_, _, err := a.cls[0].Create(client.WithRequestID(cctx, id), other, []byte(other))
	cancel()
	switch {
	case status.Code(err) == codes.InvalidArgument:
		a.note("reused-id-refused", "create %s with request id %s of an earlier create: %v", other, id, err)
	case indeterminate(err):
		a.note("unknown", "create %s with reused request id %s: %v", other, id, err)
	case err == nil:
		a.fail("ids: client %s reused request id %s (its create of %s) for a create of %s and was answered OK; want InvalidArgument", a.ids[0], id, pa, other)
	default:
		a.fail("ids: client %s reused request id %s for a different create (%s): %v; want InvalidArgument", a.ids[0], id, other, err)
	}
}

// sessionRound is the double close and retried open round.
func (a *carelessActor) sessionRound(ctx context.Context, n int) {
	openID := fmt.Sprintf("rb-careless-%d-open-%d", a.seed, n)
	octx, cancel := opCtx(ctx)
	sa, err := a.cls[0].OpenSession(client.WithRequestID(octx, openID), sessionTTL, "rb-careless-a")
	cancel()
	if err != nil {
		if !indeterminate(err) {
			a.fail("sessions: client A's open (request id %s): %v", openID, err)
		}
		return
	}
	defer a.closeQuietly(sa)
	a.addSession(sa.ID())
	eph := fmt.Sprintf("%s/eph/a-%d", carelessRoot, n)
	createID := fmt.Sprintf("rb-careless-%d-eph-%d", a.seed, n)
	cctx, cancel := opCtx(ctx)
	_, _, err = a.cls[0].Create(client.WithRequestID(cctx, createID), eph, nil, client.Ephemeral(sa.ID()))
	cancel()
	if err != nil {
		if !indeterminate(err) && !errors.Is(err, client.ErrSessionExpired) {
			a.fail("sessions: ephemeral create %s in session %d: %v", eph, sa.ID(), err)
		}
		return
	}

	// B opens with A's request id: a session of its own.
	octx, cancel = opCtx(ctx)
	sb, err := a.cls[1].OpenSession(client.WithRequestID(octx, openID), sessionTTL, "rb-careless-b")
	cancel()
	switch {
	case err == nil:
		a.addSession(sb.ID())
		// Closed at the end of the round: if B was answered A's session,
		// closing it now would end A's and void the checks below.
		defer a.closeQuietly(sb)
		if sb.ID() == sa.ID() || sb.ID() == 0 {
			a.fail("sessions: client B opened with client A's request id %s and was answered session %d (A's is %d); want a session of its own", openID, sb.ID(), sa.ID())
		} else {
			a.note("shared-id-open", "B opened session %d with A's request id %s (A's session %d)", sb.ID(), openID, sa.ID())
		}
	case indeterminate(err):
		a.note("unknown", "B's open with request id %s: %v", openID, err)
	case strings.Contains(err.Error(), "opened by this request has ended") &&
		!strings.Contains(err.Error(), fmt.Sprintf("session %#x ", sa.ID())):
		// B's own first attempt opened a session, its reply was lost to a
		// fault, and the session expired (nobody knew to keep it alive)
		// before the client's retry with the same id: the retry is told so.
		a.note("shared-id-open-ended", "B's open with request id %s was applied but its session ended before the retry: %v", openID, err)
	default:
		a.fail("sessions: client B opened with client A's request id %s: %v; want a session of its own", openID, err)
	}

	// A closes with the request id of its create: refused, and the session
	// lives on, keep-alive-able, with its ephemeral.
	cctx, cancel = opCtx(ctx)
	err = a.cls[0].CloseSession(client.WithRequestID(cctx, createID), sa.ID())
	cancel()
	switch {
	case status.Code(err) == codes.InvalidArgument:
		a.note("reused-id-close-refused", "close of session %d with its create's request id %s: %v", sa.ID(), createID, err)
	case indeterminate(err):
		a.note("unknown", "close of session %d with reused request id %s: %v", sa.ID(), createID, err)
	case err == nil:
		a.fail("sessions: client A closed session %d with request id %s (its create of %s) and was answered OK; want InvalidArgument", sa.ID(), createID, eph)
	default:
		a.fail("sessions: client A closed session %d with request id %s of a different command: %v; want InvalidArgument", sa.ID(), createID, err)
	}
	if err == nil || status.Code(err) == codes.InvalidArgument {
		a.checkAlive(ctx, sa, eph)
	}

	// The real close, then the same again, then with a new id.
	closeID := fmt.Sprintf("rb-careless-%d-close-%d", a.seed, n)
	cctx, cancel = opCtx(ctx)
	err = a.cls[0].CloseSession(client.WithRequestID(cctx, closeID), sa.ID())
	cancel()
	if err != nil {
		if !indeterminate(err) && !errors.Is(err, client.ErrSessionExpired) {
			a.fail("sessions: close of session %d (request id %s): %v", sa.ID(), closeID, err)
		}
		return // unknown, or it expired (a fault): the checks below need a known close
	}
	for i, id := range []string{closeID, closeID + "-again"} {
		cctx, cancel = opCtx(ctx)
		err = a.cls[0].CloseSession(client.WithRequestID(cctx, id), sa.ID())
		cancel()
		a.note("double-close", "close %d of closed session %d with request id %s: %v", i+2, sa.ID(), id, err)
	}
	a.checkClosed(ctx, sa.ID(), eph)

	// A retried Open with the original id after the Close: NotFound.
	octx, cancel = opCtx(ctx)
	again, err := a.cls[0].OpenSession(client.WithRequestID(octx, openID), sessionTTL, "rb-careless-a")
	cancel()
	switch {
	case status.Code(err) == codes.NotFound:
		a.note("retried-open-notfound", "open retried with request id %s after session %d closed: %v", openID, sa.ID(), err)
	case indeterminate(err):
		a.note("unknown", "open retried with request id %s: %v", openID, err)
	case err == nil:
		a.addSession(again.ID())
		a.closeQuietly(again)
		a.fail("sessions: an Open retried with request id %s after its session %d was closed answered OK with session %d; want NotFound", openID, sa.ID(), again.ID())
	default:
		a.fail("sessions: an Open retried with request id %s after its session %d was closed: %v; want NotFound", openID, sa.ID(), err)
	}
}

func (a *carelessActor) addSession(id uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sessions = append(a.sessions, id)
}

// closeQuietly stops a session's keep-alives and closes it (a fresh request
// id; a session already gone closes without error).
func (a *carelessActor) closeQuietly(s *client.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Close(ctx)
}

// checkAlive checks a session whose Close was refused: a keep-alive is
// acknowledged and its ephemeral exists. A keep-alive answered NotFound is
// a failure if the session is still listed (a ghost nobody can keep alive
// or expire); if not, a fault may have expired it.
func (a *carelessActor) checkAlive(ctx context.Context, s *client.Session, eph string) {
	sent := time.Now()
	code, err := a.keepAlive(ctx, s.ID())
	switch code {
	case codes.OK:
		exists, known := a.exists(ctx, eph)
		switch {
		case !known:
		case !exists && time.Since(sent) < s.TTL():
			a.fail("sessions: session %d is keep-alive-able after its refused Close, but its ephemeral %s is gone", s.ID(), eph)
		default:
			a.note("refused-close-alive", "session %d acknowledged a keep-alive after its refused Close; ephemeral present %v", s.ID(), exists)
		}
	case codes.NotFound:
		// A fault may have expired it, and the expiry may take a moment
		// to be applied after the leader forgot it; a ghost stays listed.
		deadline := time.Now().Add(3 * s.TTL())
		for {
			listed, known := a.listed(ctx, s.ID())
			if known && !listed {
				a.note("unknown", "session %d gone after its refused Close (a fault may have expired it)", s.ID())
				return
			}
			if time.Now().After(deadline) || !sleepUntil(ctx, 200*time.Millisecond) {
				if known && ctx.Err() == nil {
					a.fail("sessions: after a refused Close, session %d answers keep-alives with NotFound (%v) but is still open in the session list %v later: a ghost nobody can keep alive or expire", s.ID(), err, 3*s.TTL())
				}
				return
			}
		}
	default:
		a.note("unknown", "keep-alive of session %d after its refused Close: %v", s.ID(), err)
	}
}

// checkClosed checks a session whose Close was acknowledged: keep-alives
// get NotFound, its ephemeral is gone and it is not listed.
func (a *carelessActor) checkClosed(ctx context.Context, id uint64, eph string) {
	code, err := a.keepAlive(ctx, id)
	switch code {
	case codes.NotFound:
		a.note("closed-keepalive-notfound", "keep-alive of closed session %d: %v", id, err)
	case codes.OK:
		a.fail("sessions: a keep-alive of session %d was acknowledged after its Close was", id)
	default:
		if err != nil && !indeterminate(err) {
			a.fail("sessions: keep-alive of closed session %d: %v; want NotFound", id, err)
		}
	}
	if exists, known := a.exists(ctx, eph); known && exists {
		a.fail("sessions: ephemeral %s of session %d exists after the session's Close was acknowledged", eph, id)
	}
	if listed, known := a.listed(ctx, id); known && listed {
		a.fail("sessions: session %d is still listed after its Close was acknowledged", id)
	}
}

// keepAlive sends one keep-alive as client A, failing over while the
// outcome is unknown, for up to a few seconds.
func (a *carelessActor) keepAlive(ctx context.Context, id uint64) (codes.Code, error) {
	var err error
	for i := range 2 * len(a.conns) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		_, err = colonyv1.NewSessionsClient(a.conns[i%len(a.conns)]).KeepAlive(actx, &colonyv1.KeepAliveRequest{SessionId: id})
		cancel()
		if !indeterminate(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil && indeterminate(err) {
		return codes.Unknown, err
	}
	return status.Code(err), err
}

// exists reads path linearizably; known is false when no node answered.
func (a *carelessActor) exists(ctx context.Context, path string) (exists, known bool) {
	for i := range 2 * len(a.conns) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		_, err := colonyv1.NewTreeClient(a.conns[i%len(a.conns)]).Get(actx, &colonyv1.GetRequest{Path: path})
		cancel()
		switch {
		case err == nil:
			return true, true
		case status.Code(err) == codes.NotFound:
			return false, true
		case !indeterminate(err) || ctx.Err() != nil:
			return false, false
		}
	}
	return false, false
}

// listed reports whether session id is in a linearizable session list.
func (a *carelessActor) listed(ctx context.Context, id uint64) (listed, known bool) {
	for i := range 2 * len(a.conns) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		l, err := colonyv1.NewSessionsClient(a.conns[i%len(a.conns)]).List(actx, &colonyv1.ListSessionsRequest{})
		cancel()
		if err == nil {
			return slices.ContainsFunc(l.GetSessions(), func(s *colonyv1.SessionInfo) bool { return s.GetSessionId() == id }), true
		}
		if !indeterminate(err) || ctx.Err() != nil {
			return false, false
		}
	}
	return false, false
}

// bigValue is the j-th large value of round n: a header naming it, then
// filler up to carelessBigBytes.
func bigValue(n, j int) []byte {
	v := bytes.Repeat([]byte{byte('a' + j)}, carelessBigBytes)
	copy(v, fmt.Sprintf("round %d value %d|", n, j))
	return v
}

// bigWatch writes the large values (in ctx, the workload's), then resumes
// a watch over them (in watchCtx).
func (a *carelessActor) bigWatch(ctx, watchCtx context.Context, n int) {
	cl := a.cls[0]
	var h *colonyv1.ResponseHeader
	rctx, cancel := opCtx(ctx)
	_, _, err := cl.Get(rctx, carelessRoot+"/big", client.WithHeader(&h))
	cancel()
	if err != nil {
		a.note("unknown", "big watch round %d: reading the start zxid: %v", n, err)
		return
	}
	from := h.GetZxid()
	want := map[uint64]int{} // acknowledged zxid -> value index
	// All at once, as a careless client would: a follower used to forward
	// them to the leader in one batch above the 4 MiB message limit, and all
	// of them failed (README, "Bugs found" 4).
	var mu sync.Mutex
	var wg sync.WaitGroup
	for j := range carelessBigValues {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := fmt.Sprintf("%s/big/v%d", carelessRoot, j)
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			st, err := a.big.Set(wctx, p, bigValue(n, j), client.AnyVersion)
			cancel()
			switch {
			case err == nil:
				mu.Lock()
				want[st.GetMzxid()] = j
				mu.Unlock()
			case indeterminate(err):
				a.note("unknown", "big watch round %d: set %s: %v", n, p, err)
			default:
				a.fail("big watch: set of %d bytes on %s: %v", carelessBigBytes, p, err)
			}
		}()
	}
	wg.Wait()
	if len(want) == 0 {
		return
	}
	before := a.resumes.Load()
	ctx = watchCtx
	wctx, cancel := context.WithTimeout(ctx, carelessWatchBudget)
	defer cancel()
	w, err := cl.Watch(wctx, carelessRoot+"/big", colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive(), client.AfterZxid(from))
	if err != nil {
		switch {
		case errors.Is(err, client.ErrResync):
			a.note("big-watch-resync", "round %d: the watch from zxid %d was answered with a resync: %v", n, from, err)
		case indeterminate(err) && ctx.Err() == nil && wctx.Err() == nil:
			a.note("unknown", "big watch round %d: %v", n, err)
		case ctx.Err() != nil:
		default:
			a.fail("big watch: watching %s after zxid %d over %d values of %d bytes: %v (the client re-subscribed %d times)", carelessRoot+"/big", from, len(want), carelessBigBytes, err, a.resumes.Load()-before)
		}
		return
	}
	defer w.Close()
	got := 0
	for got < len(want) {
		ev, err := w.Next(wctx)
		if err != nil {
			resumes := a.resumes.Load() - before
			switch {
			case errors.Is(err, client.ErrResync):
				a.note("big-watch-resync", "round %d: resync after %d of %d values: %v", n, got, len(want), err)
			case ctx.Err() != nil: // the workload ended
			default:
				a.fail("big watch: resuming a watch from zxid %d over %d values of %d bytes delivered %d of them in %v, then: %v (the client re-subscribed %d times)",
					from, len(want), carelessBigBytes, got, carelessWatchBudget, err, resumes)
			}
			a.checkResumes(n, resumes)
			return
		}
		j, ok := want[ev.GetZxid()]
		if !ok {
			continue // a value whose Set had no answer
		}
		if wantV := bigValue(n, j); !bytes.Equal(ev.GetData(), wantV) {
			a.fail("big watch: the event at zxid %d of %s carries %d bytes starting %q; want %d bytes starting %q",
				ev.GetZxid(), ev.GetPath(), len(ev.GetData()), valuePrefix(ev.GetData()), len(wantV), valuePrefix(wantV))
		}
		got++
	}
	resumes := a.resumes.Load() - before
	a.note("big-watch-delivered", "round %d: %d values of %d bytes delivered after zxid %d, %d re-subscriptions", n, got, carelessBigBytes, from, resumes)
	a.checkResumes(n, resumes)
}

func (a *carelessActor) checkResumes(n int, resumes int64) {
	if resumes > carelessMaxResumes {
		a.fail("big watch: round %d: the client re-subscribed %d times while resuming one watch over %d values of %d bytes; want at most %d",
			n, resumes, carelessBigValues, carelessBigBytes, carelessMaxResumes)
	}
}

func valuePrefix(b []byte) string {
	s, _, _ := strings.Cut(string(b[:min(len(b), 32)]), "|")
	return s
}

// finish runs after the workload stopped: every acknowledged create is
// there, no refused one is, and no session of the actor is open any more
// (each was closed or left to expire within its TTL).
func (a *carelessActor) finish(r *run) {
	select {
	case <-a.bigDone:
	case <-time.After(carelessWatchBudget + 20*time.Second):
		a.fail("the careless client did not stop within %v", carelessWatchBudget+20*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*sessionTTL+20*time.Second)
	defer cancel()
	a.mu.Lock()
	acked, forbidden, ours := slices.Clone(a.acked), slices.Clone(a.forbidden), slices.Clone(a.sessions)
	a.mu.Unlock()
	check := func(p string, want bool) {
		var got bool
		err := retryAdmin(ctx, r.c, func(ctx context.Context, n *Node) error {
			_, err := n.Tree().Get(ctx, &colonyv1.GetRequest{Path: p})
			got = err == nil
			if status.Code(err) == codes.NotFound {
				return nil
			}
			return err
		})
		switch {
		case err != nil:
			a.fail("final read of %s: %v", p, err)
		case got != want && want:
			a.fail("ids: the create of %s was acknowledged (its request id shared with another client) but the final read does not find it", p)
		case got != want:
			a.fail("ids: %s exists, but its create reused a request id for a different command and must not be applied", p)
		}
	}
	for _, p := range acked {
		check(p, true)
	}
	for _, p := range forbidden {
		check(p, false)
	}
	var alive []uint64
	for i := 0; ; i++ {
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		l, err := colonyv1.NewSessionsClient(a.conns[i%len(a.conns)]).List(actx, &colonyv1.ListSessionsRequest{})
		acancel()
		if err == nil {
			alive = alive[:0]
			for _, s := range l.GetSessions() {
				if slices.Contains(ours, s.GetSessionId()) {
					alive = append(alive, s.GetSessionId())
				}
			}
			if len(alive) == 0 {
				break
			}
		}
		if !sleepUntil(ctx, 200*time.Millisecond) {
			a.fail("sessions: %v still open (or no answer: %v) %v after the workload ended, though each was closed or left to expire (TTL %v)",
				alive, err, 2*sessionTTL+20*time.Second, sessionTTL)
			break
		}
	}
}

// check reports the actor's failures and writes careless.txt.
func (a *carelessActor) check(r *run) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, v := range a.violations {
		r.fail("careless client: %s", v)
	}
	r.files["careless.txt"] = strings.Join(a.log, "\n") + "\n"
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(a.counts)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, a.counts[k]))
	}
	r.t.Logf("careless client: %s; %d acknowledged creates with shared ids, %d sessions, %d failures", strings.Join(parts, ", "), len(a.acked), len(a.sessions), len(a.violations))
}

// countingHandler is a slog handler that counts the records with one
// message (at any level) and discards everything.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
