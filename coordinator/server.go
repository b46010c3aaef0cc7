package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/coordinator/internal/leaderverify"
	"github.com/colonymesh/colony/coordinator/nodemetrics"
	"github.com/colonymesh/colony/coordinator/raftdiag"
	"github.com/colonymesh/colony/coordinator/raftlog"
	"github.com/colonymesh/colony/coordinator/raftnet"
	"github.com/colonymesh/colony/coordinator/replication"
	"github.com/colonymesh/colony/internal/hclogslog"
	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/internal/watchhub"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

// Server is one coordinator node: a raft member holding the znode tree, and
// the gRPC server for the public API and for its peers.
type Server struct {
	cfg    Config
	log    *slog.Logger
	limits ztree.Limits

	raft      *raft.Raft
	transport *raft.NetworkTransport
	observed  *raftdiag.Transport // s.transport as raft uses it (observe.go)
	store     io.Closer           // the raft log and stable store
	logs      raft.LogStore       // the raft log, as raft reads it
	dataDir   *dataDir            // locked while the node runs
	hadState  bool                // raft state existed when the node started
	removed   chan struct{}       // closed when this node finds it was removed (membership.go)
	fsm       *fsm
	hub       *watchhub.Hub

	grpc    *grpc.Server
	grpcLis net.Listener
	addr    string // advertised gRPC address

	peers    *peerPool
	verifier *leaderverify.Verifier
	// api serves the public services (package api) and keeps their
	// per-connection limits.
	api      *api.Service
	sessions *sessionTracker
	// parkedReads counts the reads waiting for this node's FSM (read.go).
	parkedReads atomic.Int64

	// Telemetry: tracing.go, metrics.go, observe.go.
	tracer            trace.Tracer
	metrics           *nodemetrics.Metrics
	diag              *raftdiag.Diagnostics
	transfers         transferGuard // refuses transfers raft cannot start safely
	unregisterMetrics func()

	// leader holds the state of this node's current leadership term, nil
	// when it does not lead. Guarded by leaderMu.
	leaderMu sync.Mutex
	leader   *leaderTerm

	ctx    context.Context // ends when Close starts
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the server starts

	closeOnce sync.Once
	closeErr  error
}

// New starts a coordinator node: it opens (or creates) the raft state in
// cfg.DataDir, starts raft and the gRPC server, and bootstraps or joins as
// configured. It returns once the node is serving; a leader may not be known
// yet (see WaitLeader).
func New(cfg Config) (*Server, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger.With("node", cfg.NodeID),
		limits: ztree.Limits{MaxDataBytes: cfg.MaxDataBytes, MaxOps: cfg.MaxOps},
		hub: watchhub.New(watchhub.Config{
			MaxEvents:     cfg.WatchHistoryEvents,
			MaxBytes:      cfg.WatchHistoryBytes,
			MaxBatchBytes: cfg.WatchBatchBytes,
		}),
		ctx:     ctx,
		cancel:  cancel,
		removed: make(chan struct{}),
	}
	s.fsm = newFSM(s.hub)
	s.sessions = newSessionTracker(s)
	s.fsm.onApplied = s.sessions.observeApplied
	s.peers = newPeerPool(ctx, s.goFunc, s.peerCredentials(), cfg.MaxDataBytes, cfg.LeaderWait)
	s.initTelemetry()
	s.logSecurity()
	if err := s.start(); err != nil {
		cancel()
		s.shutdownRaft()
		s.wg.Wait()
		s.hub.Close()
		s.peers.close()
		s.dataDir.remove() // a failed start leaves no directory it made
		return nil, err
	}
	if err := s.registerMetrics(); err != nil {
		s.Close()
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	return s, nil
}

func (s *Server) start() error {
	dd, err := openDataDir(s.cfg.DataDir)
	if err != nil {
		return err
	}
	s.dataDir = dd

	// The gRPC listener first: the advertised gRPC address must be known
	// before this node registers itself.
	lis, err := net.Listen("tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listening for gRPC on %s: %w", s.cfg.GRPCAddr, err)
	}
	s.grpcLis = lis
	s.addr = s.cfg.GRPCAdvertise
	if s.addr == "" {
		s.addr = lis.Addr().String()
	}

	if err := s.startRaft(); err != nil {
		lis.Close()
		return err
	}

	// One gRPC server for the public services (package api) and the peer
	// service. Requests up to this size reach the validation and get an
	// error naming the field and the limit; larger ones are refused by gRPC
	// itself (ResourceExhausted, naming the message size and this limit).
	s.api = api.New(apiNode{s}, s.apiConfig())
	s.grpc = grpc.NewServer(
		grpc.Creds(s.serverCredentials()),
		grpc.UnaryInterceptor(s.api.UnaryInterceptor),
		grpc.StreamInterceptor(s.api.StreamInterceptor),
		grpc.WaitForHandlers(true),
		telemetry.ServerOption(s.cfg.TracerProvider),
		grpc.MaxRecvMsgSize(maxMessageBytes(s.cfg.MaxDataBytes)),
		grpc.MaxSendMsgSize(maxMessageBytes(s.cfg.MaxDataBytes)),
		grpc.StatsHandler(s.api.StatsHandler()),
	)
	s.api.Register(s.grpc)
	peerv1.RegisterPeerServer(s.grpc, &peerAPI{s: s})
	s.goFunc(func() {
		if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("gRPC server stopped", "err", err)
		}
	})

	s.goFunc(s.runLeadership)
	s.goFunc(s.runRegistration)
	s.goFunc(func() { s.watchRemoval(s.hadState) })
	if len(s.cfg.Join) > 0 {
		s.goFunc(s.runJoin)
	}
	return nil
}

func (s *Server) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeID)
	rc.Logger = hclogslog.New(s.log.With("component", "raft"))
	rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	rc.ElectionTimeout = s.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = s.cfg.CommitTimeout
	rc.MaxAppendEntries = s.cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	if s.cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = s.cfg.SnapshotInterval
	}
	if s.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	}
	if s.cfg.TrailingLogs > 0 {
		rc.TrailingLogs = s.cfg.TrailingLogs
	}
	rc.NoLegacyTelemetry = true
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}

	kind := raftlog.Resolve(s.cfg.DataDir, s.cfg.LogStore)
	opened, err := raftlog.Open(s.cfg.DataDir, kind, s.cfg.NoSync)
	if err != nil {
		return err
	}
	s.log.Info("raft log store opened", "store", kind, "data_dir", s.cfg.DataDir)
	store := &raftlog.WatchedStore{Store: opened}
	s.store = store
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	s.logs = logs
	snaps, err := raft.NewFileSnapshotStoreWithLogger(s.cfg.DataDir, 2, rc.Logger.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("opening snapshot store: %w", err)
	}

	var advertise net.Addr
	if s.cfg.RaftAdvertise != "" {
		advertise, err = net.ResolveTCPAddr("tcp", s.cfg.RaftAdvertise)
		if err != nil {
			return fmt.Errorf("raft advertise address %q: %w", s.cfg.RaftAdvertise, err)
		}
	}
	s.transport, err = raftnet.NewTransport(raftnet.Config{
		Bind: s.cfg.RaftAddr, Advertise: advertise, Self: s.cfg.NodeID, PeerAddrs: s.cfg.RaftPeerAddrs,
		TLS: s.cfg.TLS, Logger: rc.Logger.Named("transport"),
	})
	if err != nil {
		return fmt.Errorf("raft transport on %s: %w", s.cfg.RaftAddr, err)
	}

	existing, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fmt.Errorf("reading raft state: %w", err)
	}
	s.hadState = existing
	stall := raftlog.NewStallGuard(store, s.cfg.DiskStallTimeout, s.log)
	s.observed = s.observedTransport(stall, replication.NewHold(rc.HeartbeatTimeout/10, s.ctx.Done(), s.diag, stall))
	s.fsm.onCommitted = s.observed.Committed
	s.goFunc(func() { s.observed.RunCommitPush(s.ctx) })
	s.raft, err = raft.NewRaft(rc, nodemetrics.TimedFSM{BatchingFSM: s.fsm, Observer: s.metrics.FSMApply}, logs, store, snaps, s.observed)
	if err != nil {
		return fmt.Errorf("starting raft: %w", err)
	}
	s.diag.Start(s.ctx, s.raft, s.goFunc)
	s.verifier = leaderverify.New(s.raft, &s.wg)
	if s.cfg.Bootstrap && !existing {
		peers := s.cfg.Peers
		if len(peers) == 0 {
			peers = map[string]string{s.cfg.NodeID: string(s.transport.LocalAddr())}
		}
		conf := raftnet.Voters(peers)
		if err := s.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrapping cluster: %w", err)
		}
		s.log.Info("bootstrapped cluster", "voters", slices.Sorted(maps.Keys(peers)))
	}
	return nil
}

// maxMessageBytes is the largest gRPC message a node accepts or sends: a
// multi carrying its whole data budget (2x the data limit) plus headroom for
// paths and framing, and never below gRPC's 4 MiB default.
func maxMessageBytes(maxData int) int {
	return max(2*maxData+(2<<20), 4<<20)
}

// Addr is the gRPC address clients and peers use for this node.
func (s *Server) Addr() string { return s.addr }

// RaftAddr is this node's raft transport address.
func (s *Server) RaftAddr() string { return string(s.transport.LocalAddr()) }

// ID is this node's raft server ID.
func (s *Server) ID() string { return s.cfg.NodeID }

// IsLeader reports whether this node is the raft leader.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// WaitLeader blocks until the cluster has a leader that has registered its
// address, so that writes through this node can be forwarded.
func (s *Server) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := s.leaderAddr(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// WaitReady blocks until WaitLeader would return and this node's tree holds
// the well-known directories (/colony/services and the breakers' roots),
// which the leader's breaker engine creates when its term starts: until
// then a registration or a policy under them fails with NoNode.
func (s *Server) WaitReady(ctx context.Context) error {
	if err := s.WaitLeader(ctx); err != nil {
		return err
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		v := s.fsm.tree.View()
		ready := true
		for _, p := range contract.WellKnownDirs {
			if _, _, err := v.Get(p); err != nil {
				ready = false
				break
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the breaker engine's directories: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (s *Server) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Close shuts the node down gracefully: a leader first hands leadership to
// another voter (so the cluster does not wait an election timeout), then
// watches end and the gRPC server stops (clients fail over to other nodes),
// then the node's own loops stop, and only then raft and the stores.
//
// The order matters: with BatchApplyCh, raft never answers a future still
// queued in its apply channel when it shuts down (hashicorp/raft#498), so
// everything that may wait on a raft future (handlers, the leader's duties,
// registration) must be finished while raft still runs and answers them.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.raft.State() == raft.Leader && s.otherVoters() > 0 {
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.log.Warn("leadership transfer on shutdown failed", "err", err)
			} else {
				s.log.Info("transferred leadership before shutdown")
			}
		}
		s.cancel()
		s.hub.Close() // ends watch streams so GracefulStop can finish
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			s.grpc.Stop() // cancels handlers' contexts and waits for them (WaitForHandlers)
			<-stopped
		}
		s.wg.Wait()
		s.closeErr = errors.Join(s.shutdownRaft(), s.dataDir.unlock())
		s.peers.close()
		s.unregisterMetrics()
	})
	return s.closeErr
}

func (s *Server) shutdownRaft() error {
	var errs []error
	if s.raft != nil {
		s.observed.ClosePipelines() // else raft.Shutdown can hang (raftdiag)
		errs = append(errs, s.raft.Shutdown().Error())
	}
	if s.transport != nil {
		// Close alone leaves pooled outbound connections open, so peers'
		// connection handlers would wait on them until this process exits.
		s.transport.CloseStreams()
		errs = append(errs, s.transport.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}

func (s *Server) otherVoters() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter && srv.ID != raft.ServerID(s.cfg.NodeID) {
			n++
		}
	}
	return n
}
