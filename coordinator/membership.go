package coordinator

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/coordinator/raftdiag"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// clusterStatus reports this node's view of the cluster and asks every
// member for its own (state, applied index, time since it last heard from
// the leader).
func (s *Server) clusterStatus(ctx context.Context) (*colonyv1.StatusResponse, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	_, leaderID := s.raft.LeaderWithID()
	resp := &colonyv1.StatusResponse{
		Header:       s.header(),
		LeaderId:     string(leaderID),
		Term:         s.raft.CurrentTerm(),
		CommitIndex:  s.raft.CommitIndex(),
		AppliedIndex: s.fsm.applied.Load(),
	}
	if addr, err := s.leaderAddr(); err == nil {
		resp.LeaderGrpcAddress = addr
	}
	registry := s.memberMap()
	servers := f.Configuration().Servers
	resp.Members = make([]*colonyv1.Member, len(servers))
	statuses := make([]*peerv1.NodeStatusResponse, len(servers)) // for the diagnostics (raftdiag)
	var wg sync.WaitGroup
	for i, srv := range servers {
		m := &colonyv1.Member{
			Id:          string(srv.ID),
			RaftAddress: string(srv.Address),
			Leader:      srv.ID == leaderID,
		}
		if srv.Suffrage != raft.Voter {
			m.Suffrage = colonyv1.Suffrage_SUFFRAGE_NONVOTER
		}
		resp.Members[i] = m
		var st *peerv1.NodeStatusResponse
		if string(srv.ID) == s.cfg.NodeID {
			m.GrpcAddress = s.addr
			st = s.nodeStatus()
		} else if r, ok := registry[string(srv.ID)]; ok {
			m.GrpcAddress = r.GrpcAddress
		} else {
			m.Error = "no gRPC address registered yet"
			continue
		}
		if st != nil {
			fillMember(m, st)
			statuses[i] = st
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			st, err := s.peers.peer(m.GrpcAddress).NodeStatus(cctx, &peerv1.NodeStatusRequest{})
			if err != nil {
				m.Error = status.Convert(err).Message()
				return
			}
			fillMember(m, st)
			statuses[i] = st
		}()
	}
	wg.Wait()
	markCatchingUp(resp, statuses, uint64(s.cfg.MaxAppendEntries))
	raftdiag.FillStatus(resp, statuses)
	slices.SortFunc(resp.Members, func(a, b *colonyv1.Member) int { return strings.Compare(a.Id, b.Id) })
	return resp, nil
}

// markCatchingUp says, in a member's error, that it answers but cannot serve
// yet: a follower that has not learned a commit index since it started
// (commit 0: raft has not replicated to it yet) or that is more than one
// append (maxAppend) behind the leader's commit index. Reads through it get
// Unavailable until it catches up (read.go).
func markCatchingUp(resp *colonyv1.StatusResponse, statuses []*peerv1.NodeStatusResponse, maxAppend uint64) {
	var leaderCommit uint64
	for i, st := range statuses {
		if st != nil && resp.Members[i].Leader {
			leaderCommit = st.CommitIndex
		}
	}
	for i, st := range statuses {
		m := resp.Members[i]
		if st == nil || m.Leader || m.Error != "" || st.AppliedIndex >= leaderCommit {
			continue
		}
		if st.CommitIndex == 0 || leaderCommit-st.AppliedIndex > maxAppend {
			m.Error = fmt.Sprintf("catching up: applied %d of %d", st.AppliedIndex, leaderCommit)
		}
	}
}

func fillMember(m *colonyv1.Member, st *peerv1.NodeStatusResponse) {
	m.State = st.State
	m.Term = st.Term
	m.AppliedIndex = st.AppliedIndex
	m.CommitIndex = st.CommitIndex
	m.LastContactMs = st.LastContactMs
}

func (s *Server) nodeStatus() *peerv1.NodeStatusResponse {
	st := &peerv1.NodeStatusResponse{
		Id:           s.cfg.NodeID,
		State:        s.raft.State().String(),
		Term:         s.raft.CurrentTerm(),
		AppliedIndex: s.fsm.applied.Load(),
		CommitIndex:  s.raft.CommitIndex(),
		LastIndex:    s.raft.LastIndex(),
	}
	if s.raft.State() != raft.Leader {
		if lc := s.raft.LastContact(); !lc.IsZero() {
			st.LastContactMs = time.Since(lc).Milliseconds()
		} else {
			st.LastContactMs = -1 // never heard from a leader
		}
	}
	s.diag.FillNodeStatus(st)
	return st
}

// addMember adds a node as a non-voter; the leader promotes it once it has
// caught up, unless it asked to stay a non-voter. Adding a member that is
// already in the configuration at the same address is a no-op.
func (s *Server) addMember(ctx context.Context, req *colonyv1.AddMemberRequest) error {
	err := s.withLeader(ctx, func(ctx context.Context) error {
		if s.raft.State() != raft.Leader {
			addr, err := s.leaderAddr()
			if err != nil {
				return err
			}
			_, err = s.peers.cluster(addr).AddMember(ctx, req)
			return err
		}
		// Record the address and the promotion intent first, so a new leader
		// knows both.
		reg := &peerv1.RegisterMember{Id: req.Id, RaftAddress: req.RaftAddress, GrpcAddress: req.GrpcAddress, NonvoterOnly: req.NonvoterOnly}
		if _, _, err := s.applyLocal(ctx, &peerv1.Command{Op: &peerv1.Command_RegisterMember{RegisterMember: reg}}); err != nil {
			return err
		}
		if srv, ok := s.configServer(req.Id); ok && string(srv.Address) == req.RaftAddress {
			return nil
		}
		return s.raft.AddNonvoter(raft.ServerID(req.Id), raft.ServerAddress(req.RaftAddress), 0, 10*time.Second).Error()
	})
	if err != nil {
		return err
	}
	s.log.Info("member added", "member", req.Id, "raft", req.RaftAddress, "grpc", req.GrpcAddress)
	return nil
}

func (s *Server) configServer(id string) (raft.Server, bool) {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return raft.Server{}, false
	}
	for _, srv := range f.Configuration().Servers {
		if srv.ID == raft.ServerID(id) {
			return srv, true
		}
	}
	return raft.Server{}, false
}

// removeMember removes a node from the raft configuration and the registry.
func (s *Server) removeMember(ctx context.Context, req *colonyv1.RemoveMemberRequest) error {
	err := s.withLeader(ctx, func(ctx context.Context) error {
		if s.raft.State() != raft.Leader {
			addr, err := s.leaderAddr()
			if err != nil {
				return err
			}
			_, err = s.peers.cluster(addr).RemoveMember(ctx, req)
			return err
		}
		if _, ok := s.configServer(req.Id); !ok {
			return fmt.Errorf("%w: member %q is not in the cluster", ztree.ErrNoNode, req.Id)
		}
		return s.raft.RemoveServer(raft.ServerID(req.Id), 0, 10*time.Second).Error()
	})
	if err != nil {
		return err
	}
	// Through propose: if the removed member was this leader, the next one
	// commits it.
	forget := &peerv1.Command{Op: &peerv1.Command_ForgetMember{ForgetMember: &peerv1.ForgetMember{Id: req.Id}}}
	if _, _, err := s.propose(ctx, forget); err != nil {
		return fmt.Errorf("member removed from raft, but not from the address registry: %w", err)
	}
	s.log.Info("member removed", "member", req.Id)
	return nil
}

// transferLeadership hands leadership to target (or to the most up-to-date
// voter) and waits until a leader is known again; it returns the new
// leader's id.
func (s *Server) transferLeadership(ctx context.Context, req *colonyv1.TransferLeadershipRequest) (string, error) {
	err := s.withLeader(ctx, func(ctx context.Context) error {
		if s.raft.State() != raft.Leader {
			addr, err := s.leaderAddr()
			if err != nil {
				return err
			}
			_, err = s.peers.cluster(addr).TransferLeadership(ctx, req)
			return err
		}
		if req.TargetId == s.cfg.NodeID {
			return nil
		}
		var srv raft.Server
		if req.TargetId != "" {
			var ok bool
			if srv, ok = s.configServer(req.TargetId); !ok {
				return fmt.Errorf("%w: member %q is not in the cluster", ztree.ErrNoNode, req.TargetId)
			}
			if srv.Suffrage != raft.Voter {
				return fmt.Errorf("%w: target_id: member %q is not a voter", ztree.ErrInvalidArgument, req.TargetId)
			}
		}
		term := s.raft.CurrentTerm()
		if err := s.transfers.allow(term, req.TargetId); err != nil {
			return fmt.Errorf("%w: %v", api.ErrTransferUnsafe, err)
		}
		var err error
		if req.TargetId == "" {
			err = s.raft.LeadershipTransfer().Error()
		} else {
			err = s.raft.LeadershipTransferToServer(srv.ID, srv.Address).Error()
		}
		s.transfers.done(term, req.TargetId, err)
		return err
	})
	if err != nil {
		return "", err
	}
	if err := s.WaitLeader(ctx); err != nil {
		return "", err
	}
	_, id := s.raft.LeaderWithID()
	return string(id), nil
}

// removalPollInterval is how often a node checks whether it is still in
// the cluster's configuration.
const removalPollInterval = time.Second

// Removed is closed when this node finds it was removed from the cluster
// (colony cluster remove): its raft configuration no longer lists it, so
// it will never vote, lead or hear from a leader again. The node has
// logged what happened and what to do at ERROR; its owner should Close it
// and stop (colony coordinator exits with an error, as an etcd member
// does).
func (s *Server) Removed() <-chan struct{} { return s.removed }

// watchRemoval closes s.removed once the configuration this node holds,
// having listed it, lists other servers but not it. (The leader replicates
// a removal to the removed node before it stops replicating to it.) A node
// that starts on state whose configuration already lacks it, and is not
// joining, was removed while down.
func (s *Server) watchRemoval(hadState bool) {
	wasMember := hadState && len(s.cfg.Join) == 0
	t := time.NewTicker(removalPollInterval)
	defer t.Stop()
	for {
		f := s.raft.GetConfiguration()
		if f.Error() == nil {
			servers := f.Configuration().Servers
			in := slices.ContainsFunc(servers, func(srv raft.Server) bool { return string(srv.ID) == s.cfg.NodeID })
			switch {
			case in:
				wasMember = true
			case wasMember && len(servers) > 0:
				ids := make([]string, len(servers))
				for i, srv := range servers {
					ids[i] = string(srv.ID)
				}
				s.log.Error("this node was removed from the cluster: the cluster's configuration no longer lists it, "+
					"so it will not vote, lead or serve again. Stop it. To bring it back, wipe its data dir and start it "+
					"with --join ADDR (a member's gRPC address); colony cluster status shows the members",
					"members", strings.Join(ids, ","), "data_dir", s.cfg.DataDir)
				close(s.removed)
				return
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}
