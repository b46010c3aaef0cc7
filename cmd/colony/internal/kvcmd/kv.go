package kvcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// NewKVCmd returns `colony kv`: read, write and watch znodes.
func NewKVCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Read, write and watch the coordinator's znodes",
		Long: `Read, write and watch the coordinator's znodes.

Data comes from the DATA argument, from --file, or from stdin when DATA is "-".
Versions are for compare-and-set: a write with --version applies only if the
znode still has that version.`,
	}
	cmd.AddCommand(
		newKVCreateCmd(f), newKVGetCmd(f), newKVSetCmd(f), newKVRmCmd(f),
		newKVLsCmd(f), newKVStatCmd(f), newKVWatchCmd(f),
	)
	return cmd
}

// readData returns the data of a write: args[i] ("-": stdin), or the file.
// given reports whether any was given.
func readData(s *cli.Env, args []string, i int, file string) (data []byte, given bool, err error) {
	switch {
	case file != "" && len(args) > i:
		return nil, false, errors.New("give DATA or --file, not both")
	case file == "-":
		data, err = io.ReadAll(s.In)
	case file != "":
		data, err = os.ReadFile(file)
	case len(args) <= i:
		return nil, false, nil
	case args[i] == "-":
		data, err = io.ReadAll(s.In)
	default:
		data = []byte(args[i])
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading data: %w", err)
	}
	return data, true, nil
}

func newKVCreateCmd(f *cli.Flags) *cobra.Command {
	var (
		file       string
		sessionID  string
		sequential bool
		container  bool
		ttl        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create PATH [DATA|-]",
		Short: "Create a znode and print its path",
		Long: `Create a znode at PATH (its parent must exist) and print the created path,
which for --sequential carries the parent's 10-digit counter.

An ephemeral znode belongs to a session and goes when the session ends: open
one with "colony session open" and pass its id with --session.`,
		Example: `  colony kv create /orders '{"maxConnections": 100}'
  colony kv create /orders/job- --sequential --file job.json
  colony kv create /orders/worker- --sequential --session 0x2a   # an id from colony session open
  colony kv create /orders/marker --ttl 10m`,
		Args: cobra.RangeArgs(1, 2),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		data, _, err := readData(s, args, 1, file)
		if err != nil {
			return err
		}
		var opts []client.CreateOption
		if sessionID != "" {
			id, err := cli.ParseSessionID(sessionID)
			if err != nil {
				return fmt.Errorf("--session: %w", err)
			}
			opts = append(opts, client.Ephemeral(id))
		}
		if container {
			opts = append(opts, client.Container())
		}
		if cmd.Flags().Changed("ttl") {
			opts = append(opts, client.TTL(ttl))
		}
		if sequential {
			opts = append(opts, client.Sequential())
		}
		p, st, err := s.Client.Create(ctx, args[0], data, opts...)
		if err != nil {
			return err
		}
		if s.JSON {
			return s.PrintProto(&colonyv1.CreateResponse{Path: p, Stat: st})
		}
		_, err = fmt.Fprintln(s.Out, p)
		return err
	})
	fl := cmd.Flags()
	fl.StringVar(&file, "file", "", `read the data from this file ("-": stdin)`)
	fl.StringVar(&sessionID, "session", "", "make the znode ephemeral, owned by this session id")
	fl.BoolVar(&sequential, "sequential", false, "append the parent's sequence counter to the name")
	fl.BoolVar(&container, "container", false, "make a container: deleted once it has had children and has none left")
	fl.DurationVar(&ttl, "ttl", 0, "make a TTL znode: deleted when unmodified this long and childless")
	cmd.MarkFlagsMutuallyExclusive("session", "container", "ttl")
	return cmd
}

func newKVGetCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get PATH",
		Short: "Print a znode's data",
		Long: `Print a znode's data as it is, byte for byte (with a newline added on a
terminal). With --output json: the data (base64), stat and response header.`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		var h *colonyv1.ResponseHeader
		data, st, err := s.Client.Get(ctx, args[0], client.WithHeader(&h))
		if err != nil {
			return err
		}
		if s.JSON {
			return s.PrintProto(&colonyv1.GetResponse{Header: h, Data: data, Stat: st})
		}
		if _, err := s.Out.Write(data); err != nil {
			return err
		}
		if len(data) > 0 && data[len(data)-1] != '\n' && cli.IsTerminal(s.Out) {
			_, err = fmt.Fprintln(s.Out)
		}
		return err
	})
	return cmd
}

func newKVSetCmd(f *cli.Flags) *cobra.Command {
	var (
		file    string
		version int64
	)
	cmd := &cobra.Command{
		Use:   "set PATH DATA|-",
		Short: "Replace a znode's data and print its new stat",
		Example: `  colony kv set /orders '{"maxConnections": 200}'
  colony kv set /orders --file orders.json --version 1`,
		Args: cobra.RangeArgs(1, 2),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		data, given, err := readData(s, args, 1, file)
		if err != nil {
			return err
		}
		if !given {
			return errors.New(`no data: give DATA, "-" for stdin, or --file`)
		}
		st, err := s.Client.Set(ctx, args[0], data, version)
		if err != nil {
			return err
		}
		if s.JSON {
			return s.PrintProto(st)
		}
		return printStat(s, args[0], st)
	})
	cmd.Flags().StringVar(&file, "file", "", `read the data from this file ("-": stdin)`)
	cmd.Flags().Int64Var(&version, "version", client.AnyVersion, "only set if the znode has this version (-1: any)")
	return cmd
}

func newKVRmCmd(f *cli.Flags) *cobra.Command {
	var version int64
	cmd := &cobra.Command{
		Use:     "rm PATH",
		Aliases: []string{"delete"},
		Short:   "Delete a znode (it must have no children)",
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		if err := s.Client.Delete(ctx, args[0], version); err != nil {
			return err
		}
		if s.JSON {
			return s.PrintProto(&colonyv1.DeleteResponse{})
		}
		return nil
	})
	cmd.Flags().Int64Var(&version, "version", client.AnyVersion, "only delete if the znode has this version (-1: any)")
	return cmd
}

func newKVLsCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls PATH",
		Short: "List a znode's children, one name per line",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		var h *colonyv1.ResponseHeader
		names, st, err := s.Client.Children(ctx, args[0], client.WithHeader(&h))
		if err != nil {
			return err
		}
		if s.JSON {
			return s.PrintProto(&colonyv1.ChildrenResponse{Header: h, Names: names, Stat: st})
		}
		for _, n := range names {
			if _, err := fmt.Fprintln(s.Out, n); err != nil {
				return err
			}
		}
		return nil
	})
	return cmd
}

func newKVStatCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stat PATH",
		Short: "Print a znode's metadata",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		ok, st, err := s.Client.Exists(ctx, args[0])
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("node %s does not exist", args[0])
		}
		if s.JSON {
			return s.PrintProto(st)
		}
		return printStat(s, args[0], st)
	})
	return cmd
}

var watchKinds = map[string]colonyv1.WatchKind{
	"data":       colonyv1.WatchKind_WATCH_KIND_DATA,
	"children":   colonyv1.WatchKind_WATCH_KIND_CHILDREN,
	"exists":     colonyv1.WatchKind_WATCH_KIND_EXISTS,
	"persistent": colonyv1.WatchKind_WATCH_KIND_PERSISTENT,
}

func newKVWatchCmd(f *cli.Flags) *cobra.Command {
	var (
		kindName  string
		recursive bool
		after     uint64
	)
	cmd := &cobra.Command{
		Use:   "watch PATH",
		Short: "Print a znode's events as they happen",
		Long: `Print a znode's events as they happen, until Ctrl-C: one line per event
(zxid, type, path, data), or one JSON object per line with --output json.

--kind persistent (the default) streams every event, and with --recursive
those of every descendant too; data, children and exists fire once and exit.
--after resumes after a zxid. If the coordinator says events may have been
missed (resync), a note goes to stderr and the watch starts again from now.`,
		Example: `  colony kv watch /colony/breakers --recursive
  colony kv watch /colony/locks/deploy --kind children`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = f.Run(true, func(ctx context.Context, s *cli.Env, args []string) error {
		kind, ok := watchKinds[strings.ToLower(kindName)]
		if !ok {
			return fmt.Errorf("--kind: want data, children, exists or persistent, got %q", kindName)
		}
		var opts []client.WatchOption
		if recursive {
			opts = append(opts, client.Recursive())
		}
		resume := cmd.Flags().Changed("after")
		for {
			o := opts
			if resume {
				o = append(o, client.AfterZxid(after))
			}
			err := watch(s, ctx, args[0], kind, o)
			switch {
			case err == nil, ctx.Err() != nil:
				return nil
			case errors.Is(err, client.ErrResync) && kind == colonyv1.WatchKind_WATCH_KIND_PERSISTENT:
				fmt.Fprintf(s.ErrOut, "%v\nevents may have been missed; watching again from now\n", err)
				resume = false
			default:
				return err
			}
		}
	})
	fl := cmd.Flags()
	fl.StringVar(&kindName, "kind", "persistent", "data, children, exists or persistent")
	fl.BoolVar(&recursive, "recursive", false, "persistent watches: also every descendant")
	fl.Uint64Var(&after, "after", 0, "deliver only events after this zxid")
	return cmd
}

// watch runs one watch, printing its events, until it ends: nil after a
// one-shot watch fired or ctx ended, else the error that ended it. Setting
// the watch up is bounded by --timeout.
func watch(s *cli.Env, ctx context.Context, path string, kind colonyv1.WatchKind, opts []client.WatchOption) error {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	setup := time.AfterFunc(s.Flags.Timeout, func() {
		cancel(fmt.Errorf("watch not set up within --timeout %v: %w", s.Flags.Timeout, context.DeadlineExceeded))
	})
	w, err := s.Client.Watch(wctx, path, kind, opts...)
	if !setup.Stop() && err == nil {
		w.Close()
		err = context.Cause(wctx)
	}
	if err != nil {
		return err
	}
	defer w.Close()
	if !s.JSON {
		fmt.Fprintf(s.ErrOut, "watching %s (%s) after zxid %d; Ctrl-C to stop\n",
			path, strings.ToLower(cli.TrimEnum(kind.String(), "WATCH_KIND_")), w.StartZxid())
	}
	for {
		ev, err := w.Next(ctx)
		switch {
		case err == io.EOF:
			return nil
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		}
		if err := printEvent(s, ev); err != nil {
			return err
		}
	}
}

// printEvent writes one watch event as a line.
func printEvent(s *cli.Env, ev *colonyv1.Event) error {
	if s.JSON {
		return s.PrintProtoLine(ev)
	}
	line := fmt.Sprintf("%-10d %-16s %s", ev.GetZxid(), cli.TrimEnum(ev.GetType().String(), "EVENT_TYPE_"), ev.GetPath())
	if d := ev.GetData(); len(d) > 0 {
		const most = 80
		if len(d) > most {
			line += fmt.Sprintf(" %q...", d[:most])
		} else {
			line += fmt.Sprintf(" %q", d)
		}
	}
	_, err := fmt.Fprintln(s.Out, line)
	return err
}

// printStat writes a znode's stat as "key: value" lines.
func printStat(s *cli.Env, path string, st *colonyv1.Stat) error {
	tw := s.Table()
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	row("path", path)
	row("kind", cli.TrimEnum(st.GetKind().String(), "NODE_KIND_"))
	row("czxid", st.GetCzxid())
	row("mzxid", st.GetMzxid())
	row("pzxid", st.GetPzxid())
	row("ctime", cli.FormatMillis(st.GetCtimeMs()))
	row("mtime", cli.FormatMillis(st.GetMtimeMs()))
	row("version", st.GetVersion())
	row("cversion", st.GetCversion())
	row("numChildren", st.GetNumChildren())
	row("dataLength", st.GetDataLength())
	if st.GetEphemeralOwner() != 0 {
		row("ephemeralOwner", cli.FormatSessionID(st.GetEphemeralOwner()))
	}
	if st.GetKind() == colonyv1.NodeKind_NODE_KIND_TTL {
		row("ttl", time.Duration(st.GetTtlMs())*time.Millisecond)
	}
	return tw.Flush()
}
