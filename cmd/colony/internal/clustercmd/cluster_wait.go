package clustercmd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func newClusterWaitCmd(f *cli.Flags) *cobra.Command {
	var (
		members int
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "wait [--members N] [--timeout D]",
		Short: "Wait until the cluster has a leader and its voters answer",
		Long: `Wait until the cluster has formed: a leader that serves writes (its address
registered) and --members voters that answer, or, without --members, every
voter in the configuration. Meanwhile stderr shows what is still missing (on
a terminal, on one line); on timeout the error says it. Exits 0 once ready,
printing the leader and the voters.

For scripts and deployments: start the nodes, then "colony cluster wait"
before the first write.`,
		Example: `  colony cluster wait --endpoints 127.0.0.1:7400,127.0.0.1:7410,127.0.0.1:7420
  colony cluster wait --members 3 --timeout 2m -o json`,
		Args: cobra.NoArgs,
	}
	cli.WaitsForServers(cmd) // nodes starting up refuse connections at first
	cmd.RunE = f.Run(true, func(ctx context.Context, s *cli.Env, _ []string) error {
		if members < 0 {
			return fmt.Errorf("--members: want 0 (every voter) or more, got %d", members)
		}
		if timeout <= 0 {
			return fmt.Errorf("--timeout: must be positive, got %v", timeout)
		}
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		line := cli.NewStatusLine(s.ErrOut, false)
		var last string
		for {
			// One status at a time, each bounded so the loop reports
			// progress while nodes come up.
			sctx, scancel := context.WithTimeout(wctx, 2*time.Second)
			st, err := s.Client.Status(sctx)
			scancel()
			ready, what := clusterReadiness(st, err, members)
			if ready {
				line.Clear()
				return printReady(s, st, time.Since(start))
			}
			last = what
			line.Show("waiting for the cluster: "+what, false)
			select {
			case <-wctx.Done():
				line.Clear()
				if ctx.Err() != nil {
					return ctx.Err() // Ctrl-C
				}
				return fmt.Errorf("cluster not ready after %v: %s", timeout, last)
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	cmd.Flags().IntVar(&members, "members", 0, "voters that must answer (0: every voter in the configuration)")
	// Shadows the client commands' --timeout: forming a cluster takes longer.
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	return cmd
}

// clusterReadiness says whether a Status answer (or its error) shows a
// formed cluster with want voters answering (0: every voter), and if not,
// what is missing.
func clusterReadiness(st *colonyv1.StatusResponse, err error, want int) (bool, string) {
	if err != nil {
		msg := err.Error()
		if reason, ok := cli.ConnectionProblem(err); ok {
			msg = reason
		}
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		return false, "no coordinator answered (" + msg + ")"
	}
	var voters, answering []string
	var silent []string
	for _, m := range st.GetMembers() {
		if m.GetSuffrage() != colonyv1.Suffrage_SUFFRAGE_VOTER {
			continue
		}
		voters = append(voters, m.GetId())
		if m.GetState() != "" {
			answering = append(answering, m.GetId())
		} else {
			silent = append(silent, fmt.Sprintf("%s: %s", m.GetId(), cli.OrDash(m.GetError())))
		}
	}
	need := want
	if need == 0 {
		need = len(voters)
	}
	var missing []string
	switch {
	case st.GetLeaderId() == "":
		missing = append(missing, fmt.Sprintf("no leader yet (term %d)", st.GetTerm()))
	case st.GetLeaderGrpcAddress() == "":
		missing = append(missing, fmt.Sprintf("leader %s has not registered its address yet", st.GetLeaderId()))
	}
	if len(voters) < need {
		missing = append(missing, fmt.Sprintf("%d of %d voters in the configuration", len(voters), need))
	}
	if len(answering) < need && len(silent) > 0 {
		s := fmt.Sprintf("%d of %d voters answering", len(answering), need)
		missing = append(missing, s+" ("+strings.Join(silent, "; ")+")")
	}
	if len(missing) > 0 {
		return false, strings.Join(missing, "; ")
	}
	return true, fmt.Sprintf("leader %s (term %d), %d voters: %s", st.GetLeaderId(), st.GetTerm(), len(voters), strings.Join(voters, ", "))
}

// printReady writes what cluster wait found.
func printReady(s *cli.Env, st *colonyv1.StatusResponse, waited time.Duration) error {
	var voters []string
	for _, m := range st.GetMembers() {
		if m.GetSuffrage() == colonyv1.Suffrage_SUFFRAGE_VOTER {
			voters = append(voters, m.GetId())
		}
	}
	if s.JSON {
		return cli.WriteIndentedJSON(s.Out, struct {
			Ready     bool     `json:"ready"`
			LeaderID  string   `json:"leaderId"`
			Term      uint64   `json:"term"`
			Voters    []string `json:"voters"`
			WaitedMs  int64    `json:"waitedMs"`
			CommitIdx uint64   `json:"commitIndex"`
		}{true, st.GetLeaderId(), st.GetTerm(), voters, waited.Milliseconds(), st.GetCommitIndex()})
	}
	_, err := fmt.Fprintf(s.Out, "cluster ready after %v: leader %s (term %d), voters %s\n",
		waited.Round(time.Millisecond), st.GetLeaderId(), st.GetTerm(), strings.Join(voters, ", "))
	return err
}
