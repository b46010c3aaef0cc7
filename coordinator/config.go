package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/coordinator/raftlog"
	"github.com/colonymesh/colony/internal/trust"
)

// Config.LogStore values (package raftlog).
const (
	// LogStoreAuto (empty, the default) keeps the store a data dir holds
	// and gives a new data dir pebble: raftlog.Auto.
	LogStoreAuto = raftlog.Auto
	// LogStoreBolt is raft-boltdb (raft.db): raftlog.Bolt.
	LogStoreBolt = raftlog.Bolt
	// LogStorePebble is a cockroachdb/pebble database (raft-pebble), one
	// fsync per append batch: raftlog.Pebble. Opening a data dir that holds
	// a raft.db migrates it; boltdb then refuses that data dir.
	LogStorePebble = raftlog.Pebble
)

// Config configures one coordinator node. Start from DefaultConfig.
type Config struct {
	// NodeID names this node in the raft configuration. Required, stable
	// across restarts.
	NodeID string
	// DataDir holds the raft log (raft.db or raft-pebble) and snapshots. Required.
	DataDir string

	// RaftAddr is the address the raft transport listens on ("127.0.0.1:0"
	// picks a free port). Required.
	RaftAddr string
	// RaftAdvertise is the raft address other nodes dial. Empty means the
	// address RaftAddr is bound to (which must then not be unspecified).
	RaftAdvertise string
	// RaftPeerAddrs maps raft server IDs to the address this node dials to
	// reach them, instead of the address in the raft configuration. Empty
	// means the configured addresses. For tests that route each pair's raft
	// traffic through a fault proxy; see package raftnet.
	RaftPeerAddrs map[string]string
	// GRPCAddr is the address the gRPC API listens on. Required.
	GRPCAddr string
	// GRPCAdvertise is the gRPC address other nodes and clients use to reach
	// this node. Empty means the bound address.
	GRPCAdvertise string

	// Bootstrap makes this node create the cluster when it has no raft state
	// yet: with Peers as the initial voters, or alone when Peers is empty.
	// Every initial member may be started with the same Bootstrap and Peers;
	// nodes that already have state ignore it.
	Bootstrap bool
	// Peers is the initial voter set for Bootstrap: raft server ID to raft
	// address. It must include this node.
	Peers map[string]string
	// Join lists gRPC addresses of existing members. A node without raft state
	// asks them to add it (as a non-voter, promoted once caught up unless
	// NonvoterOnly).
	Join []string
	// NonvoterOnly asks, when joining, never to be promoted to voter.
	NonvoterOnly bool

	// Raft timings. The defaults suit a LAN; see REFERENCES.md.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long followers wait to learn a commit index on
	// an idle cluster, and so how stale their watches can be.
	CommitTimeout time.Duration
	// DiskStallTimeout is how long a raft log write may hang before this
	// node, as leader, fails its heartbeats so that a node with a working
	// disk takes over (raftlog.StallGuard). Zero means 5s; negative, never.
	DiskStallTimeout time.Duration
	// MaxAppendEntries is the most entries per AppendEntries and per group commit.
	MaxAppendEntries int
	// SnapshotInterval and SnapshotThreshold: raft checks every interval
	// whether threshold entries were written since the last snapshot.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	// TrailingLogs is how many entries are kept after a snapshot, so slow
	// followers catch up from the log instead of a snapshot.
	TrailingLogs uint64
	// LogStore selects the raft log and stable store (package raftlog):
	// LogStoreAuto (empty, the default), LogStoreBolt or LogStorePebble.
	LogStore string
	// NoSync turns off fsync of the raft log. Only for benchmarks that want
	// to measure the cost of durability; never in production.
	NoSync bool

	// MaxDataBytes limits a znode's data. Zero means 1 MiB.
	MaxDataBytes int
	// MaxOps limits the ops in one multi. Zero means 1024.
	MaxOps int
	// MinSessionTTL and MaxSessionTTL clamp requested session TTLs.
	MinSessionTTL time.Duration
	MaxSessionTTL time.Duration

	// LeaderWait is how long a write or linearizable read waits for a
	// leader (during an election) before failing with Unavailable, when the
	// caller's context allows that long.
	LeaderWait time.Duration
	// ReapInterval is how often the leader looks for TTL and container nodes
	// to delete.
	ReapInterval time.Duration

	// MaxWatchesPerConn limits the open watches of one client connection on
	// this node, MaxWatches all of the node's. Zero means 10,000 and
	// 100,000.
	MaxWatchesPerConn int
	MaxWatches        int
	// MaxSessions limits the cluster's open sessions (checked on the node a
	// client opens one through). Zero means 100,000.
	MaxSessions int
	// MaxSessionsPerConn limits the open sessions opened through one client
	// connection on this node, so one runaway client cannot use up
	// MaxSessions. Zero means 1,000.
	MaxSessionsPerConn int
	// MaxConcurrentHandshakes, when positive, limits the TLS handshakes
	// of incoming connections this node runs at once; more wait their
	// turn, in arrival order (admission.go). Zero means no limit, the
	// default: a slot is held through the client's part of the handshake
	// too, and measured with a fleet coming up on a starved machine a
	// bound of 64 held slots on slow clients, so registrations timed out
	// and clients moved to other members (tests/bench/README.md, "Fleet
	// scale").
	MaxConcurrentHandshakes int
	// MaxParkedReads limits the SESSION reads this node holds while it
	// applies the min_zxid they ask for (committed by the cluster, not yet
	// applied here); one more gets ResourceExhausted. Each waits at most
	// LeaderWait, then gets Unavailable so the client tries another node.
	// Zero means 10,000.
	MaxParkedReads int

	// BreakerIdleExpiry: the leader deletes a breaker pair (its record and
	// history, through the log) that is CLOSED, has no override and got no
	// report for this long. Such a pair holds nothing a new report would
	// not recreate (CLOSED, fresh window), but it held a place in the pair
	// table for good. Zero means 24h: longer than any quiet period of a
	// pair that is still called (nightly jobs included), short enough that
	// a table filled by bad callers empties within a day. A new leader
	// starts every pair's idle clock afresh (reports are soft state), so a
	// pair is never expired early. Negative is invalid.
	BreakerIdleExpiry time.Duration
	// MaxBreakerPairs bounds the pairs the breaker engine tracks, and with
	// them its memory and per-pair metric series. Reports cannot create
	// pairs beyond it; overrides can, into a reserve of max(10, 1%) above
	// it, so an operator can always force-open a new pair. Zero means
	// 10,000.
	MaxBreakerPairs int
	// MaxBreakerPairsPerCaller bounds the pairs one caller service's
	// reports may create, so one caller (a bug, a scan) cannot fill the
	// table for every other. Zero means max(100, MaxBreakerPairs/10).
	MaxBreakerPairsPerCaller int

	// WatchHistoryEvents and WatchHistoryBytes bound the events each node
	// retains for resuming watches. Zero means the watch hub's defaults.
	WatchHistoryEvents int
	WatchHistoryBytes  int
	// WatchBatchBytes bounds the encoded events of one watch message; a
	// single larger event (up to MaxDataBytes of data) goes alone. Zero
	// means 16 KiB.
	WatchBatchBytes int
	// MaxWatchBytesPerConn bounds the bytes of watch messages one client
	// connection may have queued on this node: each watch counts the
	// message it is sending and the one before it (which may still sit in
	// gRPC's buffers) until its next send completes. A watch whose next
	// message does not fit is cut with ResourceExhausted, which clients
	// resume from their last zxid. It is raised to at least two of the
	// largest messages. Zero means 16 MiB. See internal/watchhub/DESIGN.md.
	MaxWatchBytesPerConn int
	// WatchProgressInterval is how often an idle watch that asked for
	// progress_notify gets a progress message. Zero means 5s.
	WatchProgressInterval time.Duration

	// TLS is the node's certificate, key and CA. With it, every listener
	// (the gRPC API, the raft transport) requires TLS and a verified client
	// certificate, the Peer service and raft accept only node certificates
	// of the cluster's trust domain, and the API authorizes each request by
	// the identity in its certificate. Nil runs the node insecure: no TLS,
	// and anyone who reaches a port may do anything; New logs that loudly.
	TLS *trust.Material

	// Logger receives the node's logs, raft's included. Nil discards.
	Logger *slog.Logger
	// TracerProvider traces the node's gRPC server and peer clients (W3C
	// trace context) and its breaker decisions (internal/telemetry names the
	// spans). Nil means no tracing.
	TracerProvider trace.TracerProvider
	// Metrics receives the node's Prometheus collectors (metrics.go; one
	// node per registry). Nil means no metrics.
	Metrics prometheus.Registerer
}

// DefaultConfig returns a configuration with LAN-friendly raft timings and
// the documented limits. Identity, addresses and the data dir are left empty.
// It is the one place the defaults are written: New fills a zero limit from
// it, and colony coordinator's flags read theirs from it.
func DefaultConfig() Config {
	return Config{
		RaftAddr:           "127.0.0.1:7401",
		GRPCAddr:           "127.0.0.1:7400",
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		DiskStallTimeout:   5 * time.Second,
		MaxAppendEntries:   256,
		SnapshotInterval:   30 * time.Second,
		SnapshotThreshold:  16384,
		TrailingLogs:       10240,
		MaxDataBytes:       1 << 20,
		MaxOps:             1024,
		MinSessionTTL:      2 * time.Second,
		MaxSessionTTL:      5 * time.Minute,
		LeaderWait:         5 * time.Second,
		ReapInterval:       time.Second,

		MaxWatchesPerConn:  10000,
		MaxWatches:         100000,
		MaxSessions:        100000,
		MaxSessionsPerConn: 1000,
		MaxParkedReads:     10000,

		BreakerIdleExpiry: 24 * time.Hour,
		MaxBreakerPairs:   10000,
		// MaxBreakerPairsPerCaller stays zero: it follows MaxBreakerPairs.

		WatchBatchBytes:       16 << 10,
		MaxWatchBytesPerConn:  16 << 20,
		WatchProgressInterval: 5 * time.Second,
	}
}

// Validate reports the first problem with c, naming the field.
func (c *Config) Validate() error {
	var errs []error
	req := func(name, v string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
	}
	req("NodeID", c.NodeID)
	req("DataDir", c.DataDir)
	req("RaftAddr", c.RaftAddr)
	req("GRPCAddr", c.GRPCAddr)
	if c.Bootstrap && len(c.Join) > 0 {
		errs = append(errs, errors.New("fields Bootstrap and Join are exclusive: bootstrap creates a new cluster, join enters an existing one"))
	}
	if len(c.Peers) > 0 {
		if _, ok := c.Peers[c.NodeID]; !ok {
			errs = append(errs, fmt.Errorf("field Peers must include this node (%q)", c.NodeID))
		}
	}
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, d))
		}
	}
	pos("HeartbeatTimeout", c.HeartbeatTimeout)
	pos("ElectionTimeout", c.ElectionTimeout)
	pos("LeaderLeaseTimeout", c.LeaderLeaseTimeout)
	pos("CommitTimeout", c.CommitTimeout)
	pos("MinSessionTTL", c.MinSessionTTL)
	pos("LeaderWait", c.LeaderWait)
	pos("ReapInterval", c.ReapInterval)
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("LeaderLeaseTimeout (%v) must not exceed HeartbeatTimeout (%v)", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	if err := raftlog.CheckKind(c.LogStore); err != nil {
		errs = append(errs, err)
	}
	if c.MaxSessionTTL < c.MinSessionTTL {
		errs = append(errs, fmt.Errorf("MaxSessionTTL (%v) must be at least MinSessionTTL (%v)", c.MaxSessionTTL, c.MinSessionTTL))
	}
	if c.MaxDataBytes < 0 || c.MaxOps < 0 || c.MaxAppendEntries < 0 {
		errs = append(errs, errors.New("MaxDataBytes, MaxOps and MaxAppendEntries must not be negative"))
	}
	if c.MaxWatchesPerConn < 0 || c.MaxWatches < 0 || c.MaxSessionsPerConn < 0 || c.MaxSessions < 0 || c.MaxParkedReads < 0 {
		errs = append(errs, errors.New("MaxWatchesPerConn, MaxWatches, MaxSessionsPerConn, MaxSessions and MaxParkedReads must not be negative (zero means the default)"))
	}
	if c.MaxConcurrentHandshakes < 0 {
		errs = append(errs, fmt.Errorf("MaxConcurrentHandshakes %d must not be negative (zero means the default)", c.MaxConcurrentHandshakes))
	}
	if c.BreakerIdleExpiry < 0 || c.MaxBreakerPairs < 0 || c.MaxBreakerPairsPerCaller < 0 {
		errs = append(errs, errors.New("BreakerIdleExpiry, MaxBreakerPairs and MaxBreakerPairsPerCaller must not be negative (zero means the default)"))
	}
	if c.WatchBatchBytes < 0 || c.MaxWatchBytesPerConn < 0 || c.WatchProgressInterval < 0 {
		errs = append(errs, errors.New("WatchBatchBytes, MaxWatchBytesPerConn and WatchProgressInterval must not be negative (zero means the default)"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("coordinator config: %w", err)
	}
	return nil
}

// withDefaults fills the zero limits of c from DefaultConfig (and
// MaxBreakerPairsPerCaller from MaxBreakerPairs).
func (c *Config) withDefaults() {
	def := DefaultConfig()
	fill := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	fill(&c.MaxDataBytes, def.MaxDataBytes)
	fill(&c.MaxOps, def.MaxOps)
	fill(&c.MaxAppendEntries, def.MaxAppendEntries)
	fill(&c.MaxWatchesPerConn, def.MaxWatchesPerConn)
	fill(&c.MaxWatches, def.MaxWatches)
	fill(&c.WatchBatchBytes, def.WatchBatchBytes)
	fill(&c.MaxWatchBytesPerConn, def.MaxWatchBytesPerConn)
	fill(&c.MaxSessionsPerConn, def.MaxSessionsPerConn)
	fill(&c.MaxSessions, def.MaxSessions)
	fill(&c.MaxBreakerPairs, def.MaxBreakerPairs)
	fill(&c.MaxParkedReads, def.MaxParkedReads)
	if c.WatchProgressInterval == 0 {
		c.WatchProgressInterval = def.WatchProgressInterval
	}
	if c.DiskStallTimeout == 0 {
		c.DiskStallTimeout = def.DiskStallTimeout
	}
	if c.BreakerIdleExpiry == 0 {
		c.BreakerIdleExpiry = def.BreakerIdleExpiry
	}
	if c.MaxBreakerPairsPerCaller == 0 {
		c.MaxBreakerPairsPerCaller = max(100, c.MaxBreakerPairs/10)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
