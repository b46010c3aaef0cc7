package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func newSessionCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Open, list and close coordinator sessions",
	}
	cmd.AddCommand(newSessionOpenCmd(f), newSessionLsCmd(f), newSessionCloseCmd(f))
	return cmd
}

func newSessionOpenCmd(f *clientFlags) *cobra.Command {
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
	cmd.RunE = f.run(true, func(ctx context.Context, s *cli, _ []string) error {
		octx, cancel := context.WithTimeout(ctx, f.timeout)
		sess, err := s.c.OpenSession(octx, ttl, name)
		cancel()
		if err != nil {
			return err
		}
		if s.json {
			err = s.printProtoLine(&colonyv1.OpenSessionResponse{SessionId: sess.ID(), TtlMs: sess.TTL().Milliseconds()})
		} else {
			_, err = fmt.Fprintln(s.out, formatSessionID(sess.ID()))
			fmt.Fprintf(s.errw, "session %s open (ttl %v); keeping it alive until Ctrl-C\n", formatSessionID(sess.ID()), sess.TTL())
		}
		if err == nil {
			select {
			case <-ctx.Done():
			case <-sess.Done():
				err = fmt.Errorf("session %s lost: %w", formatSessionID(sess.ID()), sess.Err())
			}
		}
		// Close on the way out, even after Ctrl-C, within --timeout.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
		defer cancel()
		if cerr := sess.Close(cctx); cerr != nil && err == nil {
			err = fmt.Errorf("closing session %s: %w", formatSessionID(sess.ID()), cerr)
		}
		return err
	})
	cmd.Flags().DurationVar(&ttl, "ttl", 10*time.Second, "session TTL (the coordinator clamps it to its limits)")
	cmd.Flags().StringVar(&name, "name", "colony-cli", "describes the owner, for operators")
	return cmd
}

func newSessionLsCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the open sessions",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = f.run(false, func(ctx context.Context, s *cli, _ []string) error {
		sessions, err := s.c.ListSessions(ctx)
		if err != nil {
			return err
		}
		if s.json {
			return printProtoList(s, sessions)
		}
		tw := s.table()
		fmt.Fprintln(tw, "ID\tNAME\tTTL\tCREATED\tEPHEMERALS")
		for _, x := range sessions {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\n", formatSessionID(x.GetSessionId()), x.GetName(),
				time.Duration(x.GetTtlMs())*time.Millisecond, formatMillis(x.GetCreatedMs()), x.GetEphemerals())
		}
		return tw.Flush()
	})
	return cmd
}

func newSessionCloseCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "close ID",
		Short: "Close a session, deleting its ephemeral znodes",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = f.run(false, func(ctx context.Context, s *cli, args []string) error {
		id, err := parseSessionID(args[0])
		if err != nil {
			return err
		}
		if err := s.c.CloseSession(ctx, id); err != nil {
			return err
		}
		if s.json {
			return s.printProto(&colonyv1.CloseSessionResponse{})
		}
		return nil
	})
	return cmd
}
