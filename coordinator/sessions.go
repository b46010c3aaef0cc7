package coordinator

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/internal/wiretime"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

// sessionTick is how often the leader looks for expired sessions: the most a
// session outlives its deadline, besides the commit of the expiry.
const sessionTick = 50 * time.Millisecond

// sessionTracker is the leader's record of when each session expires. Only
// the leader has one armed: expiry is decided here and committed through the
// log (ExpireSessions), which deletes the sessions' ephemeral nodes in the
// same entry. Deadlines use the local monotonic clock and are never
// replicated: a new leader arms every session with a full TTL, so a session
// never expires before its TTL after its last acknowledged keep-alive,
// whoever acknowledged it.
type sessionTracker struct {
	s *Server

	mu        sync.Mutex
	active    bool
	deadlines map[uint64]time.Time
	ttls      map[uint64]time.Duration
	expiring  map[uint64]bool // expiry proposed, not yet applied
}

func newSessionTracker(s *Server) *sessionTracker {
	return &sessionTracker{s: s}
}

// arm starts tracking every session in the tree with a full TTL from now.
// It marks the tracker active before reading the tree, under the lock that
// observeApplied takes, so no session opened meanwhile is missed.
func (t *sessionTracker) arm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active = true
	t.deadlines = map[uint64]time.Time{}
	t.ttls = map[uint64]time.Duration{}
	t.expiring = map[uint64]bool{}
	now := time.Now()
	for _, si := range t.s.fsm.tree.View().Sessions() {
		ttl := wiretime.Millis(si.TtlMs)
		t.deadlines[si.SessionId] = now.Add(ttl)
		t.ttls[si.SessionId] = ttl
	}
}

func (t *sessionTracker) disarm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active = false
	t.deadlines, t.ttls, t.expiring = nil, nil, nil
}

// observeApplied runs on the FSM goroutine after every batch: it starts
// tracking sessions the batch opened and stops tracking sessions the batch
// ended. It follows what the applied state holds, never what a command asked
// for or what its reply said: a command answered from the dedup table (a
// retried Open, a Close whose request id was used before) changes nothing in
// the tree and so nothing here. view is the state right after the batch (the
// FSM goroutine is the tree's only writer).
func (t *sessionTracker) observeApplied(entries []ztree.Entry, results []*peerv1.CommandResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return
	}
	view := t.s.fsm.tree.View()
	now := time.Now()
	for i, e := range entries {
		if e.Cmd == nil {
			continue
		}
		switch op := e.Cmd.Op.(type) {
		case *peerv1.Command_OpenSession:
			// A session is opened by the entry whose index is its id; a
			// result naming another id is a replay from the dedup table.
			r := results[i].GetOpenSession()
			if r == nil || r.SessionId != e.Index {
				continue
			}
			si, open := view.Session(r.SessionId) // closed again in this batch?
			if _, known := t.deadlines[r.SessionId]; open && !known {
				ttl := wiretime.Millis(si.TtlMs)
				t.deadlines[r.SessionId] = now.Add(ttl)
				t.ttls[r.SessionId] = ttl
			}
		case *peerv1.Command_CloseSession:
			t.forgetEnded(view, op.CloseSession.SessionId)
		case *peerv1.Command_ExpireSessions:
			for _, id := range op.ExpireSessions.SessionIds {
				t.forgetEnded(view, id)
			}
		}
	}
}

// forgetEnded stops tracking a session if the applied state no longer holds it.
func (t *sessionTracker) forgetEnded(view *ztree.View, id uint64) {
	if _, open := view.Session(id); !open {
		t.forget(id)
	}
}

func (t *sessionTracker) forget(id uint64) {
	delete(t.deadlines, id)
	delete(t.ttls, id)
	delete(t.expiring, id)
}

// touch extends a session by its TTL from now. It reports the TTL, or
// ok=false when the session is unknown, already expiring or not held by the
// applied state. The caller must confirm leadership before acknowledging (a
// deposed leader must not).
func (t *sessionTracker) touch(id uint64) (ttl time.Duration, ok bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return 0, false, api.ErrNotTracking
	}
	ttl, known := t.ttls[id]
	if !known || t.expiring[id] {
		return 0, false, nil
	}
	if _, open := t.s.fsm.tree.View().Session(id); !open {
		// Ended in the applied state; observeApplied is about to forget it.
		return 0, false, nil
	}
	t.deadlines[id] = time.Now().Add(ttl)
	return ttl, true, nil
}

// expire commits the expiry of every session past its deadline.
func (t *sessionTracker) expire(ctx context.Context) {
	t.mu.Lock()
	if !t.active {
		t.mu.Unlock()
		return
	}
	now := time.Now()
	var ids []uint64
	for id, d := range t.deadlines {
		if !t.expiring[id] && now.After(d) {
			t.expiring[id] = true
			ids = append(ids, id)
		}
	}
	t.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	slices.Sort(ids)
	cmd := &peerv1.Command{Op: &peerv1.Command_ExpireSessions{ExpireSessions: &peerv1.ExpireSessions{SessionIds: ids}}}
	if _, _, err := t.s.applyLocal(ctx, cmd); err != nil {
		// Leadership lost or shutting down; the next leader re-arms.
		t.mu.Lock()
		for _, id := range ids {
			if t.expiring != nil {
				delete(t.expiring, id)
			}
		}
		t.mu.Unlock()
		if ctx.Err() == nil {
			t.s.log.Warn("committing session expiry failed", "sessions", len(ids), "err", err)
		}
		return
	}
	t.s.log.Info("sessions expired", "sessions", fmt.Sprint(ids))
}

// keepAlive refreshes a session in the leader's tracker, through the leader
// when this node follows.
func (s *Server) keepAlive(ctx context.Context, id uint64) (time.Duration, error) {
	var ttl time.Duration
	err := s.withLeader(ctx, func(ctx context.Context) error {
		if s.raft.State() == raft.Leader {
			ttls, err := s.leaderKeepAlive(ctx, []uint64{id})
			if err != nil {
				return err
			}
			ttl = ttls[0]
			return nil
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		// Batched with other keep-alives through this node: a sidecar
		// fleet's keep-alives cost the leader one RPC per batch.
		ttl, err = s.peers.keepAliver(addr).Do(ctx, id)
		return err
	})
	if err != nil {
		return 0, err
	}
	if ttl <= 0 {
		return 0, ztree.SessionNotFound(id)
	}
	return ttl, nil
}

// leaderKeepAlive touches sessions in the tracker and confirms leadership
// before anyone is told: a deposed leader that has not noticed yet must not
// acknowledge a keep-alive the new leader never saw. The new leader armed
// every session with a full TTL when it took over, after this keep-alive was
// sent, so the guarantee holds from the client's send time. A zero TTL in
// the result means the session is unknown or expiring.
func (s *Server) leaderKeepAlive(ctx context.Context, ids []uint64) ([]time.Duration, error) {
	lt := s.currentLeaderTerm()
	if lt == nil {
		return nil, raft.ErrNotLeader
	}
	select {
	case <-lt.ready:
	case <-ctx.Done():
		return nil, api.ErrTermNotReady
	}
	ttls := make([]time.Duration, len(ids))
	for i, id := range ids {
		ttl, ok, err := s.sessions.touch(id)
		if err != nil {
			return nil, err
		}
		if ok {
			ttls[i] = ttl
		}
	}
	if err := s.verifier.Verify(ctx); err != nil {
		return nil, err
	}
	return ttls, nil
}
