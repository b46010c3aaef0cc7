package clustercmd

import (
	"fmt"
	"strings"
	"time"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// printDiagnostics writes the leader's view of its followers and the
// election history of a Status response (`colony cluster status`).
func printDiagnostics(s *cli.Env, st *colonyv1.StatusResponse) error {
	var slow []string
	tw := s.Table()
	header := false
	for _, m := range st.GetMembers() {
		r := m.GetReplication()
		if r == nil {
			continue
		}
		if !header {
			fmt.Fprintf(s.Out, "\nreplication, as leader %s sees it:\n", st.GetLeaderId())
			fmt.Fprintln(tw, "FOLLOWER\tLAST REPLY\tHEARTBEAT RTT\tLAST LOG\tLAG\tFAILED HEARTBEATS\tSLOW")
			header = true
		}
		contact := "never"
		if r.GetLastContactMs() >= 0 {
			contact = (time.Duration(r.GetLastContactMs()) * time.Millisecond).String() + " ago"
		}
		flag := "-"
		if r.GetSlow() {
			flag = "yes"
			slow = append(slow, fmt.Sprintf("%s (%s)", m.GetId(), r.GetSlowReason()))
		}
		rtt, lastLog, lag := "-", "-", "-"
		if r.GetHeartbeatRttMs() > 0 {
			rtt = time.Duration(r.GetHeartbeatRttMs() * float64(time.Millisecond)).Round(10 * time.Microsecond).String()
		}
		if r.GetLastContactMs() >= 0 {
			lastLog, lag = fmt.Sprint(r.GetLastLogIndex()), fmt.Sprint(r.GetLagEntries())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.GetId(), contact, rtt, lastLog, lag, r.GetFailedHeartbeats(), flag)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(slow) > 0 {
		fmt.Fprintf(s.Out, "slow follower: %s; a slow voter can hold every write back\n", strings.Join(slow, ", "))
	}
	if h := st.GetLeaderHistory(); len(h) > 0 {
		fmt.Fprintln(s.Out, "\nelections, newest first:")
		tw = s.Table()
		fmt.Fprintln(tw, "TERM\tLEADER\tAT\tCAUSE\tDETAIL")
		for _, e := range h {
			at := time.UnixMilli(e.GetAtMs()).Local().Format("2006-01-02 15:04:05.000")
			cause := strings.ToLower(strings.ReplaceAll(cli.TrimEnum(e.GetCause().String(), "ELECTION_CAUSE_"), "_", " "))
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.GetTerm(), e.GetLeaderId(), at, cause, e.GetDetail())
		}
		return tw.Flush()
	}
	return nil
}
