package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/certcmd"
	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/cmd/colony/internal/demo"
	"github.com/colonymesh/colony/coordinator"
)

type coordinatorFlags struct {
	cfg      coordinator.Config
	peers    string
	join     string
	peerAddr string // --raft-peer-addr
	logLevel string
	dev      bool
	tls      certcmd.ServerFlags

	metricsAddr string // coordinator_telemetry.go
	pprof       bool
	demo        bool    // demo.go
	ui          uiFlags // ui.go
}

func newCoordinatorCmd() *cobra.Command {
	f := &coordinatorFlags{cfg: coordinator.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator node (raft member serving the znode tree over gRPC)",
		Long: `Run a coordinator node.

A 3-node cluster on one machine:

  colony coordinator --id n1 --data-dir /tmp/c1 --grpc-addr 127.0.0.1:7400 --raft-addr 127.0.0.1:7401 \
      --bootstrap --peers n1=127.0.0.1:7401,n2=127.0.0.1:7411,n3=127.0.0.1:7421
  colony coordinator --id n2 --data-dir /tmp/c2 --grpc-addr 127.0.0.1:7410 --raft-addr 127.0.0.1:7411 \
      --bootstrap --peers n1=127.0.0.1:7401,n2=127.0.0.1:7411,n3=127.0.0.1:7421
  colony coordinator --id n3 --data-dir /tmp/c3 --grpc-addr 127.0.0.1:7420 --raft-addr 127.0.0.1:7421 \
      --bootstrap --peers n1=127.0.0.1:7401,n2=127.0.0.1:7411,n3=127.0.0.1:7421

A fourth node joins through any member (it is promoted to voter once caught up):

  colony coordinator --id n4 --data-dir /tmp/c4 --grpc-addr 127.0.0.1:7430 --raft-addr 127.0.0.1:7431 \
      --join 127.0.0.1:7400

Security: a node needs a certificate (--certs-dir DIR with ca.crt and
node-<id>.crt/.key, made by ` + "`colony cert`" + `, or --cacert, --cert and --key).
Every client, sidecar and peer must then present a certificate of the same CA;
what each may do follows from the role in it. --insecure runs without TLS
(development only); ` + "`colony dev`" + ` makes its own certificates.

Observability: --metrics-addr 127.0.0.1:7402 serves Prometheus metrics at
/metrics (off by default); OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317
exports traces to an OTLP/gRPC collector (nothing is exported without it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCoordinator(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	c := &f.cfg // DefaultConfig: every flag's default is the library's
	fl.StringVar(&c.NodeID, "id", "", "node id, stable across restarts (required)")
	fl.StringVar(&c.DataDir, "data-dir", "", "directory for the raft log and snapshots (required)")
	fl.StringVar(&c.RaftAddr, "raft-addr", c.RaftAddr, "raft transport listen address")
	fl.StringVar(&c.RaftAdvertise, "raft-advertise", "", "raft address other nodes dial (default: the bound raft address)")
	fl.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC API listen address")
	fl.StringVar(&c.GRPCAdvertise, "grpc-advertise", "", "gRPC address other nodes and clients use (default: the bound address)")
	fl.BoolVar(&c.Bootstrap, "bootstrap", false, "create the cluster if this node has no state (with --peers as the voters, or alone)")
	fl.StringVar(&f.peers, "peers", "", "initial voters for --bootstrap: id=raft-addr,id=raft-addr,...")
	fl.StringVar(&f.peerAddr, "raft-peer-addr", "", "raft addresses this node dials instead of the configured ones (fault-injection tests): id=addr,id=addr,...")
	fl.MarkHidden("raft-peer-addr") // for tests that put a proxy between nodes, not for operators
	fl.StringVar(&f.join, "join", "", "gRPC addresses of existing members to join through: addr,addr,...")
	fl.BoolVar(&c.NonvoterOnly, "nonvoter", false, "when joining, stay a non-voter (read scaling, no vote)")
	fl.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", c.HeartbeatTimeout, "raft heartbeat timeout")
	fl.DurationVar(&c.ElectionTimeout, "election-timeout", c.ElectionTimeout, "raft election timeout")
	fl.DurationVar(&c.LeaderLeaseTimeout, "leader-lease-timeout", c.LeaderLeaseTimeout, "raft leader lease timeout")
	fl.DurationVar(&c.CommitTimeout, "commit-timeout", c.CommitTimeout, "raft commit timeout (bounds follower staleness when idle)")
	fl.IntVar(&c.MaxAppendEntries, "max-append-entries", c.MaxAppendEntries, "most entries per append and group commit")
	fl.DurationVar(&c.SnapshotInterval, "snapshot-interval", c.SnapshotInterval, "how often raft considers a snapshot")
	fl.Uint64Var(&c.SnapshotThreshold, "snapshot-threshold", c.SnapshotThreshold, "entries since the last snapshot that trigger one")
	fl.Uint64Var(&c.TrailingLogs, "trailing-logs", c.TrailingLogs, "entries kept after a snapshot")
	fl.StringVar(&c.LogStore, "log-store", coordinator.LogStoreAuto, "raft log store: pebble (raft-pebble; migrates a raft.db, one way) or boltdb (raft-boltdb, raft.db); unset, a data dir keeps the store it holds and a new one gets pebble")
	fl.BoolVar(&c.NoSync, "unsafe-no-fsync", false, "do not fsync the raft log (benchmarks only: acknowledged writes can be lost on power failure)")
	fl.IntVar(&c.MaxDataBytes, "max-data-bytes", c.MaxDataBytes, "largest znode data")
	fl.DurationVar(&c.MinSessionTTL, "min-session-ttl", c.MinSessionTTL, "smallest session TTL granted")
	fl.DurationVar(&c.MaxSessionTTL, "max-session-ttl", c.MaxSessionTTL, "largest session TTL granted")
	fl.IntVar(&c.MaxWatchesPerConn, "max-watches-per-conn", c.MaxWatchesPerConn, "open watches one client connection may hold on this node")
	fl.IntVar(&c.MaxWatches, "max-watches", c.MaxWatches, "open watches this node serves")
	fl.IntVar(&c.MaxWatchBytesPerConn, "max-watch-bytes-per-conn", c.MaxWatchBytesPerConn, "bytes of watch messages one client connection may have queued on this node; a watch that would exceed it is cut (clients resume it)")
	fl.DurationVar(&c.WatchProgressInterval, "watch-progress-interval", c.WatchProgressInterval, "how often an idle watch that asked for progress notifications gets one")
	fl.DurationVar(&c.DiskStallTimeout, "disk-stall-timeout", c.DiskStallTimeout, "a raft log write hung this long makes a leader fail its heartbeats, so a node with a working disk takes over; negative: never")
	fl.IntVar(&c.MaxSessions, "max-sessions", c.MaxSessions, "open sessions in the cluster (checked where a session is opened)")
	fl.IntVar(&c.MaxSessionsPerConn, "max-sessions-per-conn", c.MaxSessionsPerConn, "open sessions opened through one client connection on this node")
	fl.IntVar(&c.MaxConcurrentHandshakes, "max-concurrent-handshakes", c.MaxConcurrentHandshakes, "TLS handshakes of incoming connections this node runs at once, more waiting their turn (0: no limit; a bound holds slots through slow clients' part of the handshake, which measured worse for a fleet coming up)")
	fl.DurationVar(&c.BreakerIdleExpiry, "breaker-idle-expiry", c.BreakerIdleExpiry, "the leader deletes a breaker pair that is CLOSED, has no override and got no report for this long")
	fl.IntVar(&c.MaxBreakerPairs, "max-breaker-pairs", c.MaxBreakerPairs, "caller -> callee pairs the breaker engine tracks (overrides get a reserve of max(10, 1%) above it)")
	fl.IntVar(&c.MaxBreakerPairsPerCaller, "max-breaker-pairs-per-caller", c.MaxBreakerPairsPerCaller, "pairs one caller service's reports may create (0: max(100, max-breaker-pairs/10))")
	fl.DurationVar(&c.LeaderWait, "leader-wait", c.LeaderWait, "how long requests wait for a leader during an election")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	f.tls.Register(fl, "node-<id>")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:7402 (default: off)")
	fl.BoolVar(&f.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof/ on --metrics-addr")
	addUIFlags(fl, &f.ui, "ui-")
	// No backquotes in usage strings: pflag takes a backquoted word for
	// the flag's value name ("--demo colony demo").
	fl.BoolVar(&f.demo, "demo", false, "with --dev: also run a small demo mesh in this process (colony demo fails and heals it)")
	fl.BoolVar(&f.dev, "dev", false, "single-node development mode: --id dev, bootstrap alone, data in $TMPDIR/colony-dev unless --data-dir")
	return cmd
}

func newDevCmd() *cobra.Command {
	cmd := newCoordinatorCmd()
	cmd.Use = "dev"
	cmd.Short = "Run Colony on one machine with an embedded single-node coordinator"
	cmd.Long = "Run a single-node coordinator for development (the same as `colony coordinator --dev`)."
	fl := cmd.Flags()
	fl.Set("dev", "true")
	fl.Set("demo", "true")
	fl.Lookup("demo").DefValue = "true"
	fl.Lookup("demo").Usage = "also run a small demo mesh in this process (colony demo fails and heals it; --demo=false for none)"
	fl.Lookup("id").Usage = "node id (default \"dev\")"
	fl.Lookup("data-dir").Usage = "directory for the raft log, snapshots and dev's certificates (default " + cli.DevDataDir() + "; delete it to start afresh)"
	// dev is one node that bootstraps alone: the cluster-forming flags
	// and the test-only ones do not apply.
	for _, name := range []string{"dev", "bootstrap", "peers", "join", "nonvoter", "raft-peer-addr", "raft-advertise", "grpc-advertise"} {
		fl.MarkHidden(name)
	}
	defaultDevUI(cmd)
	return cmd
}

func runCoordinator(ctx context.Context, f *coordinatorFlags) error {
	cfg := f.cfg
	if f.dev {
		if cfg.NodeID == "" {
			cfg.NodeID = "dev"
		}
		if cfg.DataDir == "" {
			cfg.DataDir = cli.DevDataDir()
		}
		cfg.Bootstrap = true
	}
	if cfg.NodeID == "" || cfg.DataDir == "" {
		var missing []string
		if cfg.NodeID == "" {
			missing = append(missing, "--id")
		}
		if cfg.DataDir == "" {
			missing = append(missing, "--data-dir")
		}
		verb := "is"
		if len(missing) > 1 {
			verb = "are"
		}
		return cli.Hint(fmt.Errorf("%s %s required: a coordinator node needs a stable id and a data directory of its own", strings.Join(missing, " and "), verb),
			"To try Colony on one machine, `colony dev` runs a single node with neither.\n`colony coordinator --help` shows how to start a cluster.")
	}
	if f.peers != "" {
		cfg.Peers = map[string]string{}
		for _, p := range strings.Split(f.peers, ",") {
			id, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || id == "" || addr == "" {
				return fmt.Errorf("--peers: want id=raft-addr, got %q", p)
			}
			cfg.Peers[id] = addr
		}
	}
	if f.peerAddr != "" {
		cfg.RaftPeerAddrs = map[string]string{}
		for _, p := range strings.Split(f.peerAddr, ",") {
			id, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || id == "" || addr == "" {
				return fmt.Errorf("--raft-peer-addr: want id=addr, got %q", p)
			}
			cfg.RaftPeerAddrs[id] = addr
		}
	}
	if f.join != "" {
		for _, a := range strings.Split(f.join, ",") {
			if a = strings.TrimSpace(a); a != "" {
				cfg.Join = append(cfg.Join, a)
			}
		}
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	var dev *devCerts
	if cfg.TLS, dev, err = coordinatorTLS(f, cfg.NodeID, cfg.DataDir, log); err != nil {
		return err
	}

	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	tel, err := startCoordinatorTelemetry(ctx, &cfg, f.metricsAddr, f.pprof, log)
	if err != nil {
		return err
	}
	defer tel.close() // after srv.Close: the stopping node's last spans are exported

	srv, err := coordinator.New(cfg)
	if err != nil {
		return err
	}
	log.Info("coordinator serving", "id", cfg.NodeID, "grpc", srv.Addr(), "raft", srv.RaftAddr(), "data", cfg.DataDir)
	if f.dev {
		fmt.Fprintf(os.Stderr, "\nColony dev coordinator on %s (data in %s).\n", srv.Addr(), cfg.DataDir)
		try := "go run ./cmd/colony kv create /hello world --endpoints " + srv.Addr()
		if dev != nil && dev.dir != cli.DevTLSDir() {
			// Client commands look for dev's certificates in the default data dir only.
			try = cli.CertsDirEnv + "=" + dev.dir + " " + try
		}
		if dev != nil {
			fmt.Fprintf(os.Stderr, "TLS: certificates in %s (client commands on this machine use admin-dev by themselves).\n", dev.dir)
		}
		fmt.Fprintf(os.Stderr, "Try: %s\n\n", try)
	}
	uiOpts := uiOptions{grpcAddr: srv.Addr(), tls: cfg.TLS}
	if f.dev && dev != nil {
		// Browsers do not trust dev's CA: serve HTTP on loopback, and let
		// operators in with a token dev makes once (the login link is
		// printed).
		uiOpts.plainHTTP = true
		uiOpts.devTokenFile = filepath.Join(dev.dir, "ui-token")
	}
	ui, err := startUIWith(f.ui, uiOpts, log)
	if err != nil {
		srv.Close()
		return err
	}
	defer ui.close() // on early returns; shutdown closes it first
	var mesh *demo.Mesh
	switch {
	case f.dev && f.demo && cfg.TLS != nil && dev == nil:
		// Given certificates hold no sidecar certificates for the demo's
		// services; dev's own (no certificate flags) do.
		log.Warn("no demo mesh: it runs on colony dev's own certificates, and certificates were given")
	case f.dev && f.demo:
		if mesh, err = startDevDemo(srv.Addr(), dev, tel.sidecarTracing(ctx), log); err != nil {
			srv.Close()
			return err
		}
	}
	var removed error
	select {
	case <-ctx.Done():
	case <-srv.Removed():
		// Logged at ERROR by the node with what to do. A removed member
		// exits, as an etcd member does, so a supervisor sees it.
		removed = fmt.Errorf("node %s was removed from the cluster", cfg.NodeID)
	}
	log.Info("shutting down")
	ui.close() // first: browsers see the node go at once
	if mesh != nil {
		mesh.Close()
	}
	// Close hands leadership to another voter first when this node leads,
	// then stops serving clients, then stops raft and closes the log.
	return errors.Join(removed, srv.Close())
}
