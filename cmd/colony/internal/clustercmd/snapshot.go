package clustercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/coordinator/snapshotfile"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// NewSnapshotCmd returns `colony snapshot`: save (a client command, with
// f's flags), status and restore (offline, on files).
func NewSnapshotCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save a coordinator's state to a file, check a file, restore a cluster from one",
		Long: `Back up and restore the coordinator's state: the znode tree (breakers,
policies, history, locks, registrations: everything), sessions and the
request ids that make retries safe.

A snapshot file holds the state as of one raft index, in the format raft's own
snapshots use, followed by its SHA-256: "snapshot status" and "snapshot
restore" refuse a file that was truncated or changed.`,
		Example: `  colony snapshot save backup.snap --endpoints 10.0.0.1:7400
  colony snapshot status backup.snap
  colony snapshot restore backup.snap --data-dir /var/lib/colony-restored --id n1 --raft-addr 10.0.0.1:7401`,
	}
	save := newSnapshotSaveCmd(f)
	f.Register(save, save.Flags())
	cmd.AddCommand(save, newSnapshotStatusCmd(), newSnapshotRestoreCmd())
	return cmd
}

func newSnapshotSaveCmd(f *cli.Flags) *cobra.Command {
	var local bool
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Stream a consistent snapshot from a coordinator node into FILE",
		Long: `Stream a consistent snapshot of the coordinator's state into FILE: from the
first of --endpoints that answers, as of an index that includes every write
acknowledged before the command started (or, with --local, whatever that node
has applied: for a cluster that lost its quorum).

The file is written beside FILE, synced, checked and only then renamed to FILE,
so FILE is never half-written. On a terminal, stderr shows the progress; the
last line says what was saved. --timeout bounds the wait for the node to start
sending; the transfer itself runs until done or Ctrl-C.`,
		Example: `  colony snapshot save backup.snap
  colony snapshot save /backups/colony-$(date +%F).snap --endpoints 10.0.0.2:7400
  colony snapshot save rescue.snap --local --endpoints 10.0.0.3:7400   # no quorum`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = f.Run(true, func(ctx context.Context, s *cli.Env, args []string) error {
		eps, err := cli.EndpointsOf(cmd)
		if err != nil {
			return err
		}
		req := &colonyv1.SnapshotRequest{}
		if local {
			req.Consistency = colonyv1.Consistency_CONSISTENCY_SESSION
		}
		return saveSnapshot(s, ctx, eps, req, args[0])
	})
	cmd.Flags().BoolVar(&local, "local", false, "take the snapshot from what the node has applied, without asking the leader")
	return cmd
}

// savedSnapshot is the summary of snapshot save, in -o json.
type savedSnapshot struct {
	File       string `json:"file"`
	MemberID   string `json:"memberId"`
	Endpoint   string `json:"endpoint"`
	DurationMs int64  `json:"durationMs"`
	snapshotfile.Info
}

// saveSnapshot streams a snapshot from the first endpoint that starts one
// into file.
func saveSnapshot(s *cli.Env, ctx context.Context, eps []string, req *colonyv1.SnapshotRequest, file string) error {
	start := time.Now()
	var errs []error
	for _, ep := range eps {
		member, info, err := saveSnapshotFrom(s, ctx, ep, req, file, start)
		if err == nil {
			out := savedSnapshot{File: file, MemberID: member, Endpoint: ep, DurationMs: time.Since(start).Milliseconds(), Info: *info}
			return printSaved(s, out)
		}
		var started *streamError
		if errors.As(err, &started) || ctx.Err() != nil {
			return err // failed during the transfer: starting over elsewhere is the user's call
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			return err
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return fmt.Errorf("%w: %w", client.ErrUnavailable, errors.Join(errs...))
}

// streamError is a failure after the node started sending.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// saveSnapshotFrom streams the snapshot from one endpoint into a temporary
// file beside file, syncs and checks it, and renames it to file. It returns
// the id of the member that served it and what the file holds.
func saveSnapshotFrom(s *cli.Env, ctx context.Context, ep string, req *colonyv1.SnapshotRequest, file string, start time.Time) (string, *snapshotfile.Info, error) {
	creds := insecure.NewCredentials()
	if s.TLS != nil {
		creds = credentials.NewTLS(s.TLS)
	}
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(creds))
	if err != nil {
		return "", nil, fmt.Errorf("endpoint %q: %w", ep, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Only the start is bounded by --timeout: a large snapshot takes longer.
	setup := time.AfterFunc(s.Flags.Timeout, func() {
		cancel(status.Errorf(codes.DeadlineExceeded, "no snapshot from %s within --timeout %v", ep, s.Flags.Timeout))
	})
	stream, err := colonyv1.NewMaintenanceClient(conn).Snapshot(sctx, req)
	var first *colonyv1.SnapshotResponse
	if err == nil {
		first, err = stream.Recv()
	}
	if !setup.Stop() {
		err = context.Cause(sctx)
	}
	if err != nil {
		return "", nil, err
	}

	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".part-")
	if err != nil {
		return "", nil, fmt.Errorf("creating the snapshot file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	line := cli.NewStatusLine(s.ErrOut, true)
	defer line.Clear()
	total, written := int64(first.GetSizeBytes()), int64(0)
	what := fmt.Sprintf("saving snapshot at index %d from %s", first.GetIndex(), first.GetHeader().GetMemberId())
	for m := first; ; {
		n, err := tmp.Write(m.GetBlob())
		written += int64(n)
		if err != nil {
			return "", nil, fmt.Errorf("writing %s: %w", tmp.Name(), err)
		}
		line.Show(cli.BytesProgress(what, written, total, time.Since(start)), false)
		if m, err = stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			return "", nil, &streamError{fmt.Errorf("snapshot stream from %s broke after %s: %w", ep, cli.SizeText(written), err)}
		}
	}
	line.Show(cli.BytesProgress(what, written, total, time.Since(start)), true)
	if written != total {
		return "", nil, &streamError{fmt.Errorf("snapshot stream from %s ended after %d of %d bytes", ep, written, total)}
	}
	if err := tmp.Sync(); err != nil {
		return "", nil, fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", nil, fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	info, err := snapshotfile.Read(tmp.Name())
	if err != nil {
		return "", nil, &streamError{err}
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return "", nil, fmt.Errorf("saving the snapshot: %w", err)
	}
	done = true
	if d, err := os.Open(filepath.Dir(file)); err == nil { // make the rename durable
		d.Sync()
		d.Close()
	}
	return first.GetHeader().GetMemberId(), info, nil
}

func printSaved(s *cli.Env, v savedSnapshot) error {
	if s.JSON {
		return cli.WriteIndentedJSON(s.Out, v)
	}
	_, err := fmt.Fprintf(s.Out, "saved snapshot at index %d from %s (%s) to %s: %s, %d znodes, sha256 %s, in %v (%s)\n",
		v.Index, v.MemberID, v.Endpoint, v.File, cli.SizeText(v.Size), v.Nodes, v.SHA256[:16],
		time.Duration(v.DurationMs)*time.Millisecond, cli.RateText(v.Size, time.Duration(v.DurationMs)*time.Millisecond))
	return err
}

func newSnapshotStatusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status FILE",
		Short: "Check a snapshot file and say what it holds",
		Long: `Check a snapshot file (its checksum, then every record, as a restore would)
and print its raft index, time, size, checksum and what it holds. Exits with
an error for a truncated or corrupt file. Needs no coordinator.`,
		Example: `  colony snapshot status backup.snap
  colony snapshot status backup.snap -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := cli.ParseOutput(output)
			if err != nil {
				return err
			}
			info, err := snapshotfile.Read(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return cli.WriteIndentedJSON(out, struct {
					File string `json:"file"`
					*snapshotfile.Info
				}{args[0], info})
			}
			tw := cli.NewTable(out)
			row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
			row("file", args[0])
			row("index", info.Index)
			row("time", cli.FormatMillis(info.Time.UnixMilli()))
			row("size", fmt.Sprintf("%s (%d bytes)", cli.SizeText(info.Size), info.Size))
			row("sha256", info.SHA256)
			row("znodes", fmt.Sprintf("%d (%s of data)", info.Nodes, cli.SizeText(info.DataBytes)))
			row("sessions", info.Sessions)
			row("request ids", info.RequestIDs)
			row("members", fmt.Sprintf("%d registered (a restore leaves them out)", info.Members))
			return tw.Flush()
		},
	}
	cli.AddOutputFlag(cmd, cmd.Flags(), &output)
	return cmd
}

func newSnapshotRestoreCmd() *cobra.Command {
	var (
		output   string
		cfg      snapshotfile.RestoreConfig
		peers    string
		grpcAddr string
	)
	defaults := coordinator.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR --id ID [--raft-addr ADDR | --peers ID=ADDR,...]",
		Short: "Build a new coordinator's data dir from a snapshot file, offline",
		Long: `Build the data dir of a node of a new cluster from a snapshot file, without a
running coordinator. The file is checked first; DIR must not exist or be
empty, and is built beside its final place and renamed there, so a failure
leaves nothing behind.

Alone (--raft-addr): a one-node cluster. With --peers: every member restores the
same file with the same --peers and its own --id and --data-dir, then each
starts with "colony coordinator" on those addresses (--bootstrap and --peers
are then ignored: the data dir has state).

The new cluster starts at the snapshot's index with its znodes, sessions and
request ids; sessions expire unless their owners reconnect within their TTL.
The old cluster's member addresses are left out: each node registers its own.`,
		Example: `  colony snapshot restore backup.snap --data-dir /var/lib/colony-new --id n1 --raft-addr 10.0.0.1:7401
  # each of three members, with its own --id and --data-dir:
  colony snapshot restore backup.snap --data-dir /var/lib/colony --id n2 \
      --peers n1=10.0.0.1:7401,n2=10.0.0.2:7401,n3=10.0.0.3:7401`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := cli.ParseOutput(output)
			if err != nil {
				return err
			}
			if cfg.DataDir == "" {
				return errors.New("--data-dir: required (a new directory for the node's data)")
			}
			if cfg.NodeID == "" {
				return errors.New("--id: required (the id the node will run with)")
			}
			if peers != "" {
				if cmd.Flags().Changed("raft-addr") {
					return errors.New("--raft-addr: give it or --peers, not both (--peers names every member's raft address)")
				}
				if cfg.Peers, err = parsePeers("--peers", peers); err != nil {
					return err
				}
				if _, ok := cfg.Peers[cfg.NodeID]; !ok {
					return fmt.Errorf("--id: %q is not one of --peers %s", cfg.NodeID, peers)
				}
			}
			line := cli.NewStatusLine(cmd.ErrOrStderr(), true)
			start := time.Now()
			var size int64
			if fi, err := os.Stat(args[0]); err == nil {
				size = fi.Size()
			}
			cfg.Progress = func(n int64) {
				line.Show(cli.BytesProgress("restoring "+args[0], n, size, time.Since(start)), false)
			}
			info, err := snapshotfile.Restore(args[0], cfg)
			line.Clear()
			if err != nil {
				return err
			}
			raftAddr := cfg.RaftAddr
			if cfg.Peers != nil {
				raftAddr = cfg.Peers[cfg.NodeID]
			}
			next := fmt.Sprintf("colony coordinator --id %s --data-dir %s --raft-addr %s --grpc-addr %s", cfg.NodeID, cfg.DataDir, raftAddr, grpcAddr)
			if asJSON {
				return cli.WriteIndentedJSON(cmd.OutOrStdout(), struct {
					File     string            `json:"file"`
					DataDir  string            `json:"dataDir"`
					ID       string            `json:"id"`
					Voters   map[string]string `json:"voters"`
					StartCmd string            `json:"start"`
					*snapshotfile.Info
				}{args[0], cfg.DataDir, cfg.NodeID, votersOf(cfg), next, info})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "restored snapshot at index %d (%d znodes, %d sessions) into %s for member %s of %s\nstart it with: %s\n",
				info.Index, info.Nodes, info.Sessions, cfg.DataDir, cfg.NodeID, peersText(votersOf(cfg)), next)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.DataDir, "data-dir", "", "the new node's data dir: must not exist or be empty (required)")
	fl.StringVar(&cfg.NodeID, "id", "", "the id the node will run with (required)")
	fl.StringVar(&cfg.RaftAddr, "raft-addr", defaults.RaftAddr, "the node's raft address, for a one-node cluster")
	fl.StringVar(&peers, "peers", "", "every voter of the new cluster: id=raft-addr,id=raft-addr,...")
	fl.StringVar(&grpcAddr, "grpc-addr", defaults.GRPCAddr, "only for the printed start command: the node's gRPC address")
	cli.AddOutputFlag(cmd, fl, &output)
	_ = cmd.MarkFlagDirname("data-dir")
	return cmd
}

// votersOf is the voters a restore configures.
func votersOf(cfg snapshotfile.RestoreConfig) map[string]string {
	if len(cfg.Peers) > 0 {
		return cfg.Peers
	}
	return map[string]string{cfg.NodeID: cfg.RaftAddr}
}

// peersText writes voters as --peers takes them.
func peersText(peers map[string]string) string {
	ids := make([]string, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for i, id := range ids {
		ids[i] = id + "=" + peers[id]
	}
	return strings.Join(ids, ",")
}

// parsePeers parses id=addr,id=addr,... for the named flag.
func parsePeers(flag, list string) (map[string]string, error) {
	peers := map[string]string{}
	for _, p := range strings.Split(list, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%s: want id=raft-addr,id=raft-addr,..., got %q", flag, p)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("%s: %s given twice", flag, id)
		}
		peers[id] = addr
	}
	return peers, nil
}
