package clustercmd

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// NewClusterCmd returns `colony cluster`: status, membership and waiting for
// a ready cluster.
func NewClusterCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect and change the coordinator cluster's membership",
	}
	cmd.AddCommand(newClusterStatusCmd(f), newClusterMembersCmd(f), newClusterAddCmd(f),
		newClusterRemoveCmd(f), newClusterTransferCmd(f), newClusterWaitCmd(f))
	return cmd
}

func newClusterStatusCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the leader, raft indexes, every member's state, replication health and elections",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, _ []string) error {
		st, err := s.Client.Status(ctx)
		if err != nil {
			return err
		}
		if s.JSON {
			return s.PrintProto(st)
		}
		tw := s.Table()
		leader := st.GetLeaderId()
		if leader == "" {
			leader = "(none known)"
		} else if a := st.GetLeaderGrpcAddress(); a != "" {
			leader += " (" + a + ")"
		}
		fmt.Fprintf(tw, "leader:\t%s\n", leader)
		fmt.Fprintf(tw, "term:\t%d\n", st.GetTerm())
		fmt.Fprintf(tw, "commit index:\t%d\n", st.GetCommitIndex())
		fmt.Fprintf(tw, "applied index:\t%d\n", st.GetAppliedIndex())
		fmt.Fprintf(tw, "served by:\t%s\n", st.GetHeader().GetMemberId())
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(s.Out)
		if err := printMembers(s, st.GetMembers()); err != nil {
			return err
		}
		return printDiagnostics(s, st) // cluster_diag.go
	})
	return cmd
}

func newClusterMembersCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the members: addresses, suffrage and raft state",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, _ []string) error {
		st, err := s.Client.Status(ctx)
		if err != nil {
			return err
		}
		if s.JSON {
			return cli.PrintProtoList(s, st.GetMembers())
		}
		return printMembers(s, st.GetMembers())
	})
	return cmd
}

// printMembers writes the members as a table.
func printMembers(s *cli.Env, ms []*colonyv1.Member) error {
	tw := s.Table()
	fmt.Fprintln(tw, "ID\tRAFT ADDRESS\tGRPC ADDRESS\tSUFFRAGE\tSTATE\tTERM\tCOMMIT\tAPPLIED\tLAST CONTACT\tERROR")
	for _, m := range ms {
		state := m.GetState()
		if state == "" {
			state = "-"
		}
		contact := "-"
		if m.GetState() != "" && !m.GetLeader() {
			contact = (time.Duration(m.GetLastContactMs()) * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n",
			m.GetId(), m.GetRaftAddress(), m.GetGrpcAddress(),
			cli.TrimEnum(m.GetSuffrage().String(), "SUFFRAGE_"), state,
			m.GetTerm(), m.GetCommitIndex(), m.GetAppliedIndex(), contact, m.GetError())
	}
	return tw.Flush()
}

func newClusterAddCmd(f *cli.Flags) *cobra.Command {
	var nonvoter bool
	cmd := &cobra.Command{
		Use:   "add ID RAFT_ADDR GRPC_ADDR",
		Short: "Add a node to the cluster",
		Long: `Add a node to the cluster. It joins as a non-voter and the leader promotes it
to voter once it has caught up, unless --nonvoter. (A node started with
"colony coordinator --join" adds itself; this is for doing it by hand.)`,
		Args: cobra.ExactArgs(3),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		var opts []client.MemberOption
		if nonvoter {
			opts = append(opts, client.NonVoter())
		}
		if err := s.Client.AddMember(ctx, args[0], args[1], args[2], opts...); err != nil {
			return err
		}
		if s.JSON {
			return s.PrintProto(&colonyv1.AddMemberResponse{})
		}
		_, err := fmt.Fprintf(s.Out, "added member %s\n", args[0])
		return err
	})
	cmd.Flags().BoolVar(&nonvoter, "nonvoter", false, "keep the member a non-voter")
	return cmd
}

func newClusterRemoveCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a member from the cluster",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		if err := s.Client.RemoveMember(ctx, args[0]); err != nil {
			return err
		}
		if s.JSON {
			return s.PrintProto(&colonyv1.RemoveMemberResponse{})
		}
		_, err := fmt.Fprintf(s.Out, "removed member %s\n", args[0])
		return err
	})
	return cmd
}

func newClusterTransferCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "transfer [ID]",
		Short: "Hand leadership to a member (default: the most up-to-date voter)",
		Args:  cobra.MaximumNArgs(1),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		var target string
		if len(args) == 1 {
			target = args[0]
		}
		leader, err := s.Client.TransferLeadership(ctx, target)
		if err != nil {
			return err
		}
		if s.JSON {
			return s.PrintProto(&colonyv1.TransferLeadershipResponse{LeaderId: leader})
		}
		_, err = fmt.Fprintf(s.Out, "leader: %s\n", leader)
		return err
	})
	return cmd
}
