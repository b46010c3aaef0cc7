package coordinator

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/coordinator/engine"
	"github.com/colonymesh/colony/internal/ztree"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// leaderTerm is the state of one leadership term of this node. The leader's
// duties (session expiry, reaping, promotion) run in its goroutine and end
// with the term.
type leaderTerm struct {
	term   uint64
	ready  chan struct{} // closed once a Noop of this term is applied
	cancel context.CancelFunc
	done   chan struct{}
	// engine is the breaker engine of this term, set once it has loaded.
	engine atomic.Pointer[engine.Engine]
}

// currentLeaderTerm returns this node's leadership term, or nil.
func (s *Server) currentLeaderTerm() *leaderTerm {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	return s.leader
}

// runLeadership starts and stops the leader's duties as this node gains and
// loses leadership. raft's LeaderCh coalesces flips, so it also re-checks the
// state and term periodically: a lost-and-regained leadership shows up as a
// new term.
func (s *Server) runLeadership() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	defer s.stepDown()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.raft.LeaderCh():
		case <-tick.C:
		}
		leading := s.raft.State() == raft.Leader
		term := s.raft.CurrentTerm()
		lt := s.currentLeaderTerm()
		switch {
		case leading && (lt == nil || lt.term != term):
			s.stepDown()
			s.stepUp(term)
		case !leading && lt != nil:
			s.stepDown()
		}
	}
}

func (s *Server) stepUp(term uint64) {
	ctx, cancel := context.WithCancel(s.ctx)
	lt := &leaderTerm{term: term, ready: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	s.leaderMu.Lock()
	s.leader = lt
	s.leaderMu.Unlock()
	s.log.Info("became leader", "term", term)
	s.goFunc(func() {
		defer close(lt.done)
		s.leaderLoop(ctx, lt)
	})
}

func (s *Server) stepDown() {
	s.leaderMu.Lock()
	lt := s.leader
	s.leader = nil
	s.leaderMu.Unlock()
	if lt == nil {
		return
	}
	lt.cancel()
	<-lt.done
	s.sessions.disarm()
	s.log.Info("leader duties stopped", "term", lt.term)
}

func (s *Server) leaderLoop(ctx context.Context, lt *leaderTerm) {
	// Commit an entry of this term before serving reads (read-index needs
	// it) and before judging sessions: every earlier entry is applied once
	// it is.
	var transferSince time.Time // refused as "transfer in progress" since
	warned := false
	for {
		_, _, err := s.applyLocal(ctx, &peerv1.Command{Op: &peerv1.Command_Noop{Noop: &peerv1.Noop{}}})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		// No transfer of this term can be running yet: raft's flag was left
		// set by an earlier term's transfer (transferguard.go). Say so
		// plainly; raft clears it only when that transfer ends.
		if errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			if transferSince.IsZero() {
				transferSince = time.Now()
			} else if d := time.Since(transferSince); d > 10*s.cfg.ElectionTimeout+30*time.Second && !warned {
				warned = true
				s.log.Error("raft has refused every write of this term for a leadership transfer that is not running (hashicorp/raft#696): this node cannot lead until it restarts; restart it", "for", d.Round(time.Second), "term", lt.term)
			}
		} else {
			transferSince = time.Time{}
		}
		s.log.Warn("leader noop failed, retrying", "err", err)
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return
		}
	}
	// A new leader cannot know when followers last heard from a session:
	// every session gets a full TTL from now.
	s.sessions.arm()
	close(lt.ready)

	var wg sync.WaitGroup
	run := func(every time.Duration, f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					f(ctx)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.runEngine(ctx, lt)
	}()
	run(sessionTick, s.sessions.expire)
	run(s.cfg.ReapInterval, s.reap)
	run(time.Second, s.promote)
	wg.Wait()
}

// runEngine loads the breaker engine from the tree and runs it for the term.
func (s *Server) runEngine(ctx context.Context, lt *leaderTerm) {
	e := engine.New(engineHost{s}, engine.Config{
		MaxPairs:          s.cfg.MaxBreakerPairs,
		MaxPairsPerCaller: s.cfg.MaxBreakerPairsPerCaller,
		IdleExpiry:        s.cfg.BreakerIdleExpiry,
		Limits:            s.limits,
		Logger:            s.log,
		Metrics:           s.metrics.Engine,
		Tracer:            s.tracer,
	})
	for {
		err := e.Start(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("starting the breaker engine failed, retrying", "err", err)
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return
		}
	}
	lt.engine.Store(e)
	e.Run(ctx)
}

// engineHost is the leader as its breaker engine sees it: the applied tree,
// and commits through this node's log. The engine's context ends with the
// term, and applyLocal fails once this node no longer leads.
type engineHost struct{ s *Server }

var _ engine.Host = engineHost{}

func (h engineHost) View() *ztree.View { return h.s.fsm.tree.View() }

func (h engineHost) Commit(ctx context.Context, ops []*colonyv1.Op) (*peerv1.CommandResult, error) {
	cmd := &peerv1.Command{RequestId: newRequestID(), Op: &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: ops}}}
	_, res, err := h.s.applyLocal(ctx, cmd)
	return res, err
}

// reap deletes TTL nodes that outlived their TTL and containers that lost
// their last child, through the log.
func (s *Server) reap(ctx context.Context) {
	targets := s.fsm.tree.View().ReapCandidates(time.Now().UnixMilli(), 1000)
	if len(targets) == 0 {
		return
	}
	cmd := &peerv1.Command{Op: &peerv1.Command_Reap{Reap: &peerv1.Reap{Targets: targets}}}
	if _, _, err := s.applyLocal(ctx, cmd); err != nil && ctx.Err() == nil {
		s.log.Warn("reaping nodes failed", "nodes", len(targets), "err", err)
	}
}

// promote makes caught-up non-voters voters, unless they asked to stay
// non-voters.
func (s *Server) promote(ctx context.Context) {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	members := s.memberMap()
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage != raft.Nonvoter {
			continue
		}
		m, ok := members[string(srv.ID)]
		if !ok || m.NonvoterOnly {
			continue
		}
		commit := s.raft.CommitIndex()
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := s.peers.peer(m.GrpcAddress).NodeStatus(cctx, &peerv1.NodeStatusRequest{})
		cancel()
		if err != nil || st.AppliedIndex+uint64(s.cfg.MaxAppendEntries) < commit {
			continue
		}
		if err := s.raft.AddVoter(srv.ID, srv.Address, 0, 5*time.Second).Error(); err != nil {
			s.log.Warn("promoting non-voter failed", "member", srv.ID, "err", err)
			continue
		}
		s.log.Info("promoted member to voter", "member", srv.ID, "applied", st.AppliedIndex, "commit", commit)
	}
}

// runRegistration keeps this node's entry in the member registry current, so
// every node can reach it over gRPC (to forward to it when it leads).
func (s *Server) runRegistration() {
	for {
		if s.registered() || s.register() {
			if !sleepCtx(s.ctx, 2*time.Second) {
				return
			}
			continue
		}
		if !sleepCtx(s.ctx, 200*time.Millisecond) {
			return
		}
	}
}

func (s *Server) registered() bool {
	m, ok := s.memberMap()[s.cfg.NodeID]
	return ok && m.GrpcAddress == s.addr && m.RaftAddress == s.RaftAddr()
}

func (s *Server) register() bool {
	if !s.inConfiguration() {
		return false // joining: not a member yet
	}
	if s.raft.State() != raft.Leader {
		if _, err := s.leaderAddr(); err != nil {
			return false
		}
	}
	prev := s.memberMap()[s.cfg.NodeID]
	reg := &peerv1.RegisterMember{
		Id: s.cfg.NodeID, RaftAddress: s.RaftAddr(), GrpcAddress: s.addr,
		NonvoterOnly: s.cfg.NonvoterOnly || (prev != nil && prev.NonvoterOnly),
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	_, _, err := s.propose(ctx, &peerv1.Command{Op: &peerv1.Command_RegisterMember{RegisterMember: reg}})
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Debug("registering member address failed, will retry", "err", err)
		}
		return false
	}
	s.log.Info("registered member address", "grpc", s.addr, "raft", s.RaftAddr())
	return true
}

func (s *Server) inConfiguration() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if srv.ID == raft.ServerID(s.cfg.NodeID) {
			return true
		}
	}
	return false
}

// runJoin asks the configured members to add this node until one accepts.
func (s *Server) runJoin() {
	if s.inConfiguration() {
		return // restarted member: it is in the configuration already
	}
	req := &colonyv1.AddMemberRequest{
		Id: s.cfg.NodeID, RaftAddress: s.RaftAddr(), GrpcAddress: s.addr, NonvoterOnly: s.cfg.NonvoterOnly,
	}
	for attempt := 0; ; attempt++ {
		for _, addr := range s.cfg.Join {
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			_, err := s.peers.cluster(addr).AddMember(ctx, req)
			cancel()
			if err == nil {
				s.log.Info("joined cluster", "via", addr)
				return
			}
			if s.ctx.Err() != nil {
				return
			}
			if attempt%10 == 0 {
				s.log.Warn("join attempt failed, retrying", "via", addr, "err", err)
			}
		}
		if !sleepCtx(s.ctx, 500*time.Millisecond) {
			return
		}
	}
}

// memberMap returns the registered members by id, cached until the registry
// changes.
func (s *Server) memberMap() map[string]*peerv1.RegisterMember {
	gen := s.fsm.membersGen.Load()
	return s.peers.members(gen, s.fsm.tree.View())
}

// leaderAddr returns the gRPC address of the current leader.
func (s *Server) leaderAddr() (string, error) {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return "", api.ErrNoLeader
	}
	if string(id) == s.cfg.NodeID {
		return s.addr, nil
	}
	m, ok := s.memberMap()[string(id)]
	if !ok {
		return "", api.ErrNoLeader // elected, not registered yet
	}
	return m.GrpcAddress, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
