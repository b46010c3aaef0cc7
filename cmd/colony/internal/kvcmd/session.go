package kvcmd

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// NewSessionCmd returns `colony session`: open, list and close sessions.
func NewSessionCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Open, list and close coordinator sessions",
	}
	cmd.AddCommand(newSessionOpenCmd(f), newSessionLsCmd(f), newSessionCloseCmd(f))
	return cmd
}

func newSessionOpenCmd(f *cli.Flags) *cobra.Command {
	var (
		ttl  time.Duration
		name string
	)
	cmd := &cobra.Command{
		Use:   "open",
		Short: "Open a session, print its id and keep it alive until Ctrl-C",
		Long: `Open a session, print its id and keep it alive until Ctrl-C, then close it
(which deletes its ephemeral znodes). Meanwhile other commands can use the id,
e.g. "colony kv create PATH --session ID". Exits with an error if the session
is lost.`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = f.Run(true, func(ctx context.Context, s *cli.Env, _ []string) error {
		octx, cancel := context.WithTimeout(ctx, f.Timeout)
		sess, err := s.Client.OpenSession(octx, ttl, name)
		cancel()
		if err != nil {
			return err
		}
		if s.JSON {
			err = s.PrintProtoLine(&colonyv1.OpenSessionResponse{SessionId: sess.ID(), TtlMs: sess.TTL().Milliseconds()})
		} else {
			_, err = fmt.Fprintln(s.Out, cli.FormatSessionID(sess.ID()))
			fmt.Fprintf(s.ErrOut, "session %s open (ttl %v); keeping it alive until Ctrl-C\n", cli.FormatSessionID(sess.ID()), sess.TTL())
		}
		if err == nil {
			select {
			case <-ctx.Done():
			case <-sess.Done():
				err = fmt.Errorf("session %s lost: %w", cli.FormatSessionID(sess.ID()), sess.Err())
			}
		}
		// Close on the way out, even after Ctrl-C, within --timeout.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.Timeout)
		defer cancel()
		if cerr := sess.Close(cctx); cerr != nil && err == nil {
			err = fmt.Errorf("closing session %s: %w", cli.FormatSessionID(sess.ID()), cerr)
		}
		return err
	})
	cmd.Flags().DurationVar(&ttl, "ttl", 10*time.Second, "session TTL (the coordinator clamps it to its limits)")
	cmd.Flags().StringVar(&name, "name", "colony-cli", "describes the owner, for operators")
	return cmd
}

func newSessionLsCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the open sessions",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, _ []string) error {
		sessions, err := s.Client.ListSessions(ctx)
		if err != nil {
			return err
		}
		if s.JSON {
			return cli.PrintProtoList(s, sessions)
		}
		tw := s.Table()
		fmt.Fprintln(tw, "ID\tNAME\tTTL\tCREATED\tEPHEMERALS")
		for _, x := range sessions {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\n", cli.FormatSessionID(x.GetSessionId()), x.GetName(),
				time.Duration(x.GetTtlMs())*time.Millisecond, cli.FormatMillis(x.GetCreatedMs()), x.GetEphemerals())
		}
		return tw.Flush()
	})
	return cmd
}

func newSessionCloseCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "close ID",
		Short: "Close a session, deleting its ephemeral znodes",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		id, err := cli.ParseSessionID(args[0])
		if err != nil {
			return err
		}
		if err := s.Client.CloseSession(ctx, id); err != nil {
			return err
		}
		if s.JSON {
			return s.PrintProto(&colonyv1.CloseSessionResponse{})
		}
		return nil
	})
	return cmd
}
