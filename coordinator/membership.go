package coordinator

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

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
	if f := s.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			st.Configuration = append(st.Configuration, string(srv.ID))
		}
	}
	if c := s.fsm.config.Load(); c != nil {
		st.ConfigurationIndex, st.ConfigurationTerm = c.index, c.term
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

// removalAskInterval is how often a node that finds itself in its own
// configuration but knows no leader asks its peers whether the cluster's
// leader still lists it; removalAskTimeout bounds one round of asking.
const (
	removalAskInterval = 5 * time.Second
	removalAskTimeout  = 2 * time.Second
)

// Removed is closed when this node finds it was removed from the cluster
// (colony cluster remove): its raft configuration no longer lists it, or,
// when it was removed while it was down, the cluster's leader says so. It
// will never vote, lead or hear from a leader again. The node has logged
// what happened and what to do at ERROR; its owner should Close it and
// stop (colony coordinator exits with an error, as an etcd member does).
func (s *Server) Removed() <-chan struct{} { return s.removed }

// watchRemoval closes s.removed once this node learns it was removed:
//
//   - the configuration it holds, having listed it, lists other servers
//     but not it (the leader replicates a removal to the removed node
//     before it stops replicating to it); a node that starts on state whose
//     configuration already lacks it, and is not joining, was removed too;
//   - or it was down when it was removed: it starts on a configuration that
//     still lists it, and no leader ever contacts it again. While it knows
//     no leader (at start, then every removalAskInterval) it asks its peers
//     (askRemoved), and only a leader's word that it is not a member
//     counts: a partitioned node, or one whose peers are down, hears no such
//     word and goes on waiting.
func (s *Server) watchRemoval(hadState bool) {
	wasMember := hadState && len(s.cfg.Join) == 0
	t := time.NewTicker(removalPollInterval)
	defer t.Stop()
	var asked time.Time
	var members map[string]*peerv1.RegisterMember // knownMembers as of membersAt
	var membersAt [3]uint64                       // applied index, last log index, registry generation
	for {
		f := s.raft.GetConfiguration()
		if f.Error() == nil {
			servers := f.Configuration().Servers
			in := slices.ContainsFunc(servers, func(srv raft.Server) bool { return string(srv.ID) == s.cfg.NodeID })
			switch {
			case in:
				wasMember = true
				if _, leader := s.raft.LeaderWithID(); leader != "" || time.Since(asked) < removalAskInterval {
					break
				}
				asked = time.Now()
				// A node with no leader rarely gets new entries: read the
				// log again only when it did.
				if at := [3]uint64{s.fsm.applied.Load(), s.raft.LastIndex(), s.fsm.membersGen.Load()}; members == nil || at != membersAt {
					members, membersAt = s.knownMembers(), at
				}
				if v := s.askRemoved(s.ctx, members); v != nil {
					s.log.Error("this node was removed from the cluster while it was down: the cluster's leader no longer lists it, "+
						"so it will not vote, lead or serve again. Stop it. To bring it back, wipe its data dir and start it "+
						"with --join ADDR (a member's gRPC address), which adds it again; colony cluster status shows the members",
						"leader", v.leader, "term", v.term, "members", strings.Join(v.members, ","),
						"configuration_index", v.index, "configuration_term", v.indexTerm, "data_dir", s.cfg.DataDir)
					close(s.removed)
					return
				}
			case wasMember && len(servers) > 0:
				// A configuration without this node is the removal only if
				// the leader says so too: a node that was wiped and joined
				// again replays, after a snapshot that lists its old self,
				// the entry that removed it before the one that added it
				// back. Ask at most every removalAskInterval; with no
				// leader reachable, keep running.
				if time.Since(asked) < removalAskInterval {
					break
				}
				asked = time.Now()
				if at := [3]uint64{s.fsm.applied.Load(), s.raft.LastIndex(), s.fsm.membersGen.Load()}; members == nil || at != membersAt {
					members, membersAt = s.knownMembers(), at
				}
				if s.askRemoved(s.ctx, members) == nil {
					break
				}
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

// removal is a leader's word that this node is not in the cluster's
// configuration.
type removal struct {
	leader  string
	term    uint64   // the leader's term
	members []string // the leader's configuration
	// index, indexTerm: the leader's newest configuration entry, the
	// removal or a later change (0 when the leader has applied none since
	// it started).
	index, indexTerm uint64
}

// askRemoved asks every other member of members (knownMembers) for its
// status and returns the word of one that leads
// with a configuration that lacks this node; nil when none does (the peers
// are down or unreachable, none leads, or the leader lists this node).
//
// A leader is believed only in a term no older than this node's last log
// entry. This node's configuration lists it, so its log holds the entry
// that added it (or the bootstrap); the leader of that entry's term, and
// every later leader (which holds every committed entry), lists it unless
// a later entry removed it. An older leader that has not heard it was
// deposed may not know the entry that added this node, and is not asked
// to judge.
func (s *Server) askRemoved(ctx context.Context, members map[string]*peerv1.RegisterMember) *removal {
	lastTerm, err := strconv.ParseUint(s.raft.Stats()["last_log_term"], 10, 64)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, removalAskTimeout)
	defer cancel()
	answers := make(chan *peerv1.NodeStatusResponse, len(members))
	var wg sync.WaitGroup
	for id, m := range members {
		if id == s.cfg.NodeID || m.GrpcAddress == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, err := s.peers.peer(m.GrpcAddress).NodeStatus(ctx, &peerv1.NodeStatusRequest{}); err == nil {
				answers <- st
			}
		}()
	}
	wg.Wait()
	close(answers)
	for st := range answers {
		if r := removedBy(st, s.cfg.NodeID, lastTerm); r != nil {
			return r
		}
	}
	return nil
}

// maxRegistryScan bounds how many log entries knownMembers reads.
const maxRegistryScan = 1 << 16

// knownMembers is the member registry as this node's log has it: the FSM's
// (as of the entries it applied) updated by the registrations and removals
// in the entries it holds but has not applied. A node restarted with no
// leader applies nothing past its snapshot, and the registrations that
// name its peers' gRPC addresses may be only in its log. At most the
// newest maxRegistryScan entries are read (a snapshot is taken well before
// that many, by default).
func (s *Server) knownMembers() map[string]*peerv1.RegisterMember {
	m := maps.Clone(s.memberMap())
	first, last := s.fsm.applied.Load()+1, s.raft.LastIndex()
	if last >= maxRegistryScan && first < last-maxRegistryScan+1 {
		first = last - maxRegistryScan + 1
	}
	var l raft.Log
	for i := first; i <= last && s.ctx.Err() == nil; i++ {
		if s.logs.GetLog(i, &l) != nil || l.Type != raft.LogCommand {
			continue // compacted, or not a command
		}
		var cmd peerv1.Command
		if proto.Unmarshal(l.Data, &cmd) != nil {
			continue
		}
		switch op := cmd.Op.(type) {
		case *peerv1.Command_RegisterMember:
			m[op.RegisterMember.Id] = op.RegisterMember
		case *peerv1.Command_ForgetMember:
			delete(m, op.ForgetMember.Id)
		}
	}
	return m
}

// removedBy returns a peer's word that node self is not a member: st is
// the status of a leader, in a term no older than lastTerm (self's last
// log entry's), whose configuration lists other servers but not self. Nil
// for any other answer (see askRemoved).
func removedBy(st *peerv1.NodeStatusResponse, self string, lastTerm uint64) *removal {
	if st.State != raft.Leader.String() || st.Term < lastTerm || len(st.Configuration) == 0 ||
		slices.Contains(st.Configuration, self) {
		return nil
	}
	return &removal{leader: st.Id, term: st.Term, members: st.Configuration, index: st.ConfigurationIndex, indexTerm: st.ConfigurationTerm}
}
