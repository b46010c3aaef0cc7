package breakercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// NewBreakerCmd returns `colony breaker`: inspect, watch and override the
// shared circuit breakers, and report outcomes by hand.
func NewBreakerCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "breaker",
		Short: "Inspect the shared circuit breakers and override them by hand",
		Long: `Inspect the shared circuit breakers (one per caller -> callee pair, decided
by the coordinator leader from the outcomes every caller instance reports) and
override them by hand.

Every override needs --reason and records who set it (--by, default
$USER@hostname): both stay in the pair's history, which "breaker get" shows.`,
	}
	cmd.AddCommand(newBreakerLsCmd(f), newBreakerGetCmd(f))
	for _, m := range []struct {
		use   string
		mode  breaker.OverrideMode
		short string
	}{
		{"force-open", breaker.ForceOpen, "Reject every call to the callee until cleared or expired"},
		{"force-close", breaker.ForceClosed, "Let every call through; the breaker is not evaluated until cleared"},
		{"disable", breaker.Disabled, "Never trip: let every call through and ignore reports until cleared"},
		{"shadow", breaker.Shadow, `Evaluate and record what the breaker would do ("would have tripped"), without enforcing it`},
	} {
		cmd.AddCommand(newBreakerOverrideCmd(f, m.use, m.mode, m.short))
	}
	cmd.AddCommand(newBreakerClearCmd(f), newBreakerRmCmd(f), newBreakerReportCmd(f), newBreakerWatchCmd(f))
	return cmd
}

func newBreakerLsCmd(f *cli.Flags) *cobra.Command {
	var caller, callee string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List every pair's breaker: state, since, failure rate, override",
		Long: `List every caller -> callee pair's breaker, sorted by caller then callee:

  STATE         what callers enforce: CLOSED, OPEN or HALF_OPEN
  GEN           the record's generation (it increases with every change)
  SINCE         how long ago the state last changed
  FAILURE-RATE  the leader's live window: failure rate of the calls counted;
                for a pair not CLOSED whose window is empty (an OPEN breaker
                gets no calls), the evidence it tripped on, marked "at trip"
  FAILING       caller instances that saw failures / that reported calls
  P50/P99       the live window's latency percentiles, each the upper bound
                of its histogram bucket (1, 2, 5, 10, 20, 50, 100, 200,
                500 ms, 1, 2, 5, 10 s); "-" when no caller measured
                durations (stock callers' load reports carry none)
  OVERRIDE      a manual override, with the state a shadowed breaker would enforce

The live window is soft state: after a leader change it starts empty.`,
		Example: `  colony breaker ls
  colony breaker ls --callee payments
  colony breaker ls -o json`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, _ []string) error {
		sums, err := s.Client.ListBreakers(ctx, caller, callee)
		if err != nil {
			return err
		}
		if s.JSON {
			return cli.PrintProtoList(s, sums)
		}
		now := time.Now()
		tw := s.Table()
		fmt.Fprintln(tw, "CALLER\tCALLEE\tSTATE\tGEN\tSINCE\tFAILURE-RATE\tFAILING\tP50/P99\tOVERRIDE")
		for _, b := range sums {
			since := "-"
			if b.GetSinceMs() != 0 {
				since = agoText(now, time.UnixMilli(b.GetSinceMs()))
			}
			rate, failing := "-", "-"
			if b.GetWindowCalls() > 0 {
				rate = fmt.Sprintf("%s of %d", percentText(b.GetFailureRate()), b.GetWindowCalls())
			}
			if b.GetReportingInstances() > 0 {
				failing = fmt.Sprintf("%d/%d", b.GetFailingInstances(), b.GetReportingInstances())
			}
			if b.GetWindowCalls() == 0 && b.GetState() != breaker.Closed.String() {
				// Nothing to count while it is open: say why it tripped.
				if ev, ok := tripEvidence(ctx, s, b); ok {
					rate = fmt.Sprintf("%s of %d at trip", percentText(ev.FailureRate), ev.Calls)
					failing = fmt.Sprintf("%d/%d at trip", ev.FailingInstances, ev.ReportingInstances)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", b.GetCaller(), b.GetCallee(), b.GetState(),
				b.GetGeneration(), since, rate, failing, summaryLatency(b), summaryOverride(b))
		}
		return tw.Flush()
	})
	cmd.Flags().StringVar(&caller, "caller", "", "only this caller's pairs")
	cmd.Flags().StringVar(&callee, "callee", "", "only the pairs calling this callee")
	return cmd
}

// summaryLatency is a summary's p50/p99 as "≤5ms/≤200ms", "-" without
// latency samples.
func summaryLatency(b *colonyv1.BreakerSummary) string {
	if b.GetLatencySamples() == 0 {
		return "-"
	}
	return summaryMillis(b.GetLatencyP50Ms()) + "/" + summaryMillis(b.GetLatencyP99Ms())
}

// summaryMillis prints a BreakerSummary percentile (bucket bound in ms, -1
// past the last bound).
func summaryMillis(ms int64) string {
	if ms < 0 {
		return breaker.FormatLatency(breaker.LatencyOverflow)
	}
	return breaker.FormatLatency(time.Duration(ms) * time.Millisecond)
}

// tripEvidence is the evidence of b's last transition, when it was a trip on
// counted calls (not an override or probes). A pair gone since the list
// was read has none.
func tripEvidence(ctx context.Context, s *cli.Env, b *colonyv1.BreakerSummary) (breaker.Evidence, bool) {
	info, err := s.Client.GetBreaker(ctx, b.GetCaller(), b.GetCallee(), 1)
	if err != nil || info.Record.Evidence.Calls == 0 {
		return breaker.Evidence{}, false
	}
	return info.Record.Evidence, true
}

// summaryOverride is the OVERRIDE column of breaker ls.
func summaryOverride(b *colonyv1.BreakerSummary) string {
	switch {
	case b.GetOverride() == "":
		return "-"
	case b.GetShadowState() != "":
		return fmt.Sprintf("%s (would be %s)", b.GetOverride(), b.GetShadowState())
	}
	return b.GetOverride()
}

func newBreakerGetCmd(f *cli.Flags) *cobra.Command {
	var history int
	cmd := &cobra.Command{
		Use:   "get CALLER CALLEE",
		Short: "Show one pair's breaker: record, policy, evidence and history",
		Long: `Show one caller -> callee pair's breaker: its record (state, generation,
override, probe assignment), the policy in force, the leader's live window, the
evidence of its last transition (why it tripped) and its history, oldest first.

With --output json: {"record", "policy", "live", "history"}, each in the JSON
schema of the documents under /colony/breakers, /colony/policies and
/colony/history.`,
		Example: `  colony breaker get checkout payments
  colony breaker get checkout payments --history 100`,
		Args: cobra.ExactArgs(2),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		if history < 1 {
			return fmt.Errorf("--history: want at least 1, got %d", history)
		}
		info, err := s.Client.GetBreaker(ctx, args[0], args[1], history)
		if err != nil {
			return err
		}
		if s.JSON {
			return cli.WriteIndentedJSON(s.Out, breakerInfoJSON{
				Record: info.Record, Policy: info.Policy, PolicyVersion: info.PolicyVersion, Live: info.Live, History: info.History,
			})
		}
		return printBreakerInfo(s.Out, info, time.Now())
	})
	cmd.Flags().IntVar(&history, "history", 20, "show the newest N history entries (at most 200 are kept)")
	return cmd
}

// breakerInfoJSON is client.BreakerInfo with the same lower-case keys as
// the documents it holds and the API's GetBreakerResponse.
type breakerInfoJSON struct {
	Record        breaker.PairRecord     `json:"record"`
	Policy        breaker.Policy         `json:"policy"`
	PolicyVersion int64                  `json:"policyVersion"`
	Live          breaker.Evidence       `json:"live"`
	History       []breaker.HistoryEntry `json:"history"`
}

// printBreakerInfo writes what breaker get shows, for a person.
func printBreakerInfo(w io.Writer, info *client.BreakerInfo, now time.Time) error {
	rec := info.Record
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, format string, a ...any) {
		fmt.Fprintf(tw, "  %s:\t"+format+"\n", append([]any{k}, a...)...)
	}

	fmt.Fprintf(tw, "Breaker %s -> %s\n", rec.Caller, rec.Callee)
	row("state", "%s", rec.State)
	row("generation", "%d", rec.Generation)
	row("since", "%s", timeAndAge(now, rec.Since))
	if rec.Cause != "" {
		row("cause", "%s", rec.Cause)
	}
	row("open count", "%d", rec.OpenCount)
	if !rec.OpenUntil.IsZero() {
		row("open until", "%s", timeAndAge(now, rec.OpenUntil))
	}
	if len(rec.Probes) > 0 {
		row("probe permits", "%s", probesText(rec.Probes))
	}
	if o := rec.Override; o != nil {
		row("override", "%s", o.Mode)
		row("  reason", "%s", o.Reason)
		row("  by", "%s", cli.OrDash(o.By))
		row("  set", "%s", timeAndAge(now, o.At))
		if o.Until.IsZero() {
			row("  until", "cleared")
		} else {
			row("  until", "%s", timeAndAge(now, o.Until))
		}
	} else {
		row("override", "none")
	}
	if sh := rec.Shadow; sh != nil {
		fmt.Fprintln(tw, "Shadow breaker (what it would enforce; callers enforce CLOSED)")
		row("state", "%s", sh.State)
		row("generation", "%d", sh.Generation)
		row("since", "%s", timeAndAge(now, sh.Since))
		if !sh.OpenUntil.IsZero() {
			row("open until", "%s", timeAndAge(now, sh.OpenUntil))
		}
		if len(sh.Probes) > 0 {
			row("probe permits", "%s", probesText(sh.Probes))
		}
	}

	// The version of the policy shown below, not the record's
	// policyVersion: that is the one the engine last decided with, older
	// when the policy changed since (issue 13 item 11).
	if info.PolicyVersion < 0 {
		fmt.Fprintf(tw, "Policy in force: the default (%s has no policy of its own)\n", rec.Callee)
	} else {
		fmt.Fprintf(tw, "Policy in force: version %d of /colony/policies/%s\n", info.PolicyVersion, rec.Callee)
	}
	for _, l := range policyLines(info.Policy) {
		row(l[0], "%s", l[1])
	}

	fmt.Fprintln(tw, "Live window (the leader's, now)")
	evidenceRows(row, info.Live, now)

	ev, title := rec.Evidence, "Why it is "+rec.State.String()
	if sh := rec.Shadow; sh != nil {
		ev, title = sh.Evidence, "Why the shadow breaker is "+sh.State.String()
	}
	switch {
	case ev.At.IsZero() && rec.Shadow == nil && rec.Override != nil:
		fmt.Fprintf(tw, "%s: the %s override above\n", title, rec.Override.Mode)
	case ev.At.IsZero():
		fmt.Fprintf(tw, "%s: no transition evidence (last change: %s)\n", title, cli.OrDash(rec.Cause))
	default:
		fmt.Fprintf(tw, "%s (evidence of the last transition)\n", title)
		evidenceRows(row, ev, now)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	switch len(info.History) {
	case 0:
		_, err := fmt.Fprintln(w, "History: none")
		return err
	case 1:
		fmt.Fprintln(w, "History (1 entry)")
	default:
		fmt.Fprintf(w, "History (oldest first, %d entries)\n", len(info.History))
	}
	ht := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(ht, "  TIME\tKIND\tFROM->TO\tGEN\tCAUSE\tBY\tREASON")
	for _, h := range info.History {
		kind := string(h.Kind)
		if h.Shadow {
			kind += " (shadow)"
		}
		by, reason := historyByReason(h)
		fmt.Fprintf(ht, "  %s\t%s\t%s->%s\t%d\t%s\t%s\t%s\n", timeText(h.At), kind, h.From, h.To,
			h.Generation, cli.OrDash(h.Cause), cli.OrDash(by), cli.OrDash(reason))
	}
	return ht.Flush()
}

// historyByReason returns the BY and REASON columns of a history entry:
// for an override, who set it and why; for a transition, the evidence in
// brief; for a probe reassignment, the new permits.
func historyByReason(h breaker.HistoryEntry) (by, reason string) {
	by, reason = h.By, h.Reason
	switch {
	case h.Kind == breaker.HistoryOverride && h.Override != nil:
		by, reason = h.Override.By, h.Override.Reason
		if !h.Override.Until.IsZero() {
			reason += " (until " + timeText(h.Override.Until) + ")"
		}
	case h.Kind == breaker.HistoryTransition && h.Evidence != nil && reason == "":
		reason = evidenceBrief(*h.Evidence)
		if !h.OpenUntil.IsZero() {
			reason += "; open until " + timeText(h.OpenUntil)
		}
	case h.Kind == breaker.HistoryProbes && reason == "":
		reason = "permits " + probesText(h.Probes)
	}
	return by, reason
}

// evidenceBrief is one line of evidence, for the history table.
func evidenceBrief(ev breaker.Evidence) string {
	if ev.ProbeSuccesses > 0 || ev.ProbeFailures > 0 {
		return fmt.Sprintf("probes: %d succeeded, %d failed", ev.ProbeSuccesses, ev.ProbeFailures)
	}
	if ev.Calls == 0 && ev.ConsecutiveFailures == 0 {
		return ""
	}
	s := fmt.Sprintf("%s failures of %d calls, %d/%d instances failing", percentText(ev.FailureRate), ev.Calls,
		ev.FailingInstances, ev.ReportingInstances)
	if ev.Slow > 0 {
		s += fmt.Sprintf(", %s slow", percentText(ev.SlowCallRate))
	}
	return s
}

// latencyText gives the evidence's latency percentiles, or says why there
// are none.
func latencyText(ev breaker.Evidence) string {
	n := ev.Latency.Total()
	if n == 0 {
		if ev.Calls == 0 {
			return "-"
		}
		return "not measured (stock callers' load reports and older sidecars send no durations)"
	}
	q := func(p float64) string {
		d, _ := ev.Latency.Quantile(p)
		return breaker.FormatLatency(d)
	}
	text := fmt.Sprintf("p50 %s, p99 %s", q(0.5), q(0.99))
	if n >= 1000 {
		text += ", p99.9 " + q(0.999)
	}
	text += fmt.Sprintf(" (bucket upper bounds; %d of %d calls timed)", n, ev.Calls)
	return text
}

// evidenceRows writes evidence as rows of a breaker get section.
func evidenceRows(row func(k, format string, a ...any), ev breaker.Evidence, now time.Time) {
	if !ev.WindowStart.IsZero() {
		row("window", "%s to %s (%s)", timeText(ev.WindowStart), timeText(ev.At), ev.At.Sub(ev.WindowStart).Round(time.Millisecond))
	} else if !ev.At.IsZero() {
		row("at", "%s", timeAndAge(now, ev.At))
	}
	row("condition", "%s", cli.OrDash(string(ev.Condition)))
	if ev.QuorumBlocked != "" {
		row("quorum blocked", "%s held, but too few caller instances saw failures", ev.QuorumBlocked)
	}
	row("calls", "%d (%d successes, %d failures; %d slow; %d rejected and %d excluded, not counted)",
		ev.Calls, ev.Successes, ev.Failures, ev.Slow, ev.Rejected, ev.Excluded)
	row("failure rate", "%s", percentText(ev.FailureRate))
	if ev.Slow > 0 || ev.SlowCallRate > 0 {
		row("slow-call rate", "%s (%d slow instances)", percentText(ev.SlowCallRate), ev.SlowInstances)
	}
	row("consecutive failures", "%d", ev.ConsecutiveFailures)
	row("latency", "%s", latencyText(ev))
	inst := fmt.Sprintf("%d failing of %d reporting", ev.FailingInstances, ev.ReportingInstances)
	if ev.FleetInstances > 0 {
		inst += fmt.Sprintf(" (fleet of %d registered)", ev.FleetInstances)
	}
	row("instances", "%s", inst)
	if ev.ProbeSuccesses > 0 || ev.ProbeFailures > 0 {
		row("probes", "%d succeeded, %d failed", ev.ProbeSuccesses, ev.ProbeFailures)
	}
}

// policyLines describes a policy compactly, as (label, text) pairs.
func policyLines(p breaker.Policy) [][2]string {
	var trip []string
	calls := max(p.MinimumCalls, 1)
	if p.FailureRateThreshold > 0 {
		trip = append(trip, fmt.Sprintf("failure rate >= %s (at least %d calls)", percentText(p.FailureRateThreshold), calls))
	}
	if p.ConsecutiveFailures > 0 {
		trip = append(trip, fmt.Sprintf("%d consecutive failures", p.ConsecutiveFailures))
	}
	if p.SlowCallRateThreshold > 0 {
		trip = append(trip, fmt.Sprintf("slow-call rate >= %s (slower than %v, at least %d calls)",
			percentText(p.SlowCallRateThreshold), p.SlowCallDuration, calls))
	}
	quorum := fmt.Sprintf("%d failing caller instance(s)", max(p.MinFailingInstances, 1))
	if p.MinFailingShare > 0 {
		quorum += fmt.Sprintf(" and %s of the reporting ones", percentText(p.MinFailingShare))
	}
	open := p.OpenDuration.String()
	if p.BackoffMultiplier > 1 {
		open += fmt.Sprintf(", x%g on each re-open", p.BackoffMultiplier)
	}
	if p.MaxOpenDuration > 0 {
		open += fmt.Sprintf(", at most %v", p.MaxOpenDuration)
	}
	if p.Jitter > 0 {
		open += fmt.Sprintf(", ±%s jitter", percentText(p.Jitter))
	}
	c := p.Classification
	var failures, excluded []string
	add := func(dst *[]string, what string, list []string) {
		if len(list) > 0 {
			*dst = append(*dst, what+" "+strings.Join(list, ","))
		}
	}
	add(&failures, "HTTP", c.HTTPFailures)
	add(&failures, "gRPC", c.GRPCFailures)
	add(&excluded, "HTTP", c.HTTPExcluded)
	add(&excluded, "gRPC", c.GRPCExcluded)
	if c.ExcludeTimeouts {
		excluded = append(excluded, "timeouts")
	} else {
		failures = append(failures, "timeouts")
	}
	if c.ExcludeConnectionErrors {
		excluded = append(excluded, "connection errors")
	} else {
		failures = append(failures, "connection errors")
	}
	failText := strings.Join(failures, "; ")
	if len(excluded) > 0 {
		failText += " (not counted: " + strings.Join(excluded, "; ") + ")"
	}
	return [][2]string{
		{"trips on", strings.Join(trip, ", or ")},
		{"window", fmt.Sprintf("%v in %d buckets", p.Window, p.Buckets)},
		{"quorum", quorum},
		{"failures", failText},
		{"open for", open},
		{"half-open", fmt.Sprintf("%d probe calls fleet-wide, %d successes close it, probe timeout %v, OPEN again after %v without a decision",
			p.ProbeBudget, p.SuccessesToClose, p.ProbeTimeout, p.HalfOpenBound())},
	}
}

func newBreakerOverrideCmd(f *cli.Flags, use string, mode breaker.OverrideMode, short string) *cobra.Command {
	var (
		reason string
		by     string
		ttl    time.Duration
	)
	cmd := &cobra.Command{
		Use:   use + " CALLER CALLEE --reason TEXT",
		Short: short,
		Long: short + `.

--reason is required: it goes into the pair's history with who set the
override (--by, default $USER@hostname). --for makes the override expire by
itself; without it the override stays until "colony breaker clear".
Prints the state callers now enforce and the record's generation.`,
		Example: fmt.Sprintf(`  colony breaker %s checkout payments --reason "payments DB failover" --for 30m`, use),
		Args:    cobra.ExactArgs(2),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		if strings.TrimSpace(reason) == "" {
			return errors.New(`--reason is required: say why, for the audit trail (e.g. --reason "payments DB failover")`)
		}
		if ttl < 0 {
			return fmt.Errorf("--for: must be >= 0 (0: until cleared), got %v", ttl)
		}
		rec, err := s.Client.SetOverride(ctx, args[0], args[1], mode, reason, byOrUser(by), ttl)
		if err != nil {
			return err
		}
		return printPairRecord(s, rec)
	})
	fl := cmd.Flags()
	fl.StringVar(&reason, "reason", "", "why (required; kept in the history)")
	fl.StringVar(&by, "by", "", "who sets it (default $USER@hostname)")
	fl.DurationVar(&ttl, "for", 0, "expire after this long (0: until cleared)")
	return cmd
}

func newBreakerClearCmd(f *cli.Flags) *cobra.Command {
	var reason, by string
	cmd := &cobra.Command{
		Use:   "clear CALLER CALLEE",
		Short: "Remove a pair's override; the breaker starts again CLOSED",
		Long: `Remove a pair's manual override. The breaker starts again CLOSED with a fresh
window and a new generation. --reason and --by (default $USER@hostname) go into
the pair's history.`,
		Example: `  colony breaker clear checkout payments --reason "failover done"`,
		Args:    cobra.ExactArgs(2),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		rec, err := s.Client.ClearOverride(ctx, args[0], args[1], reason, byOrUser(by))
		if err != nil {
			return err
		}
		return printPairRecord(s, rec)
	})
	cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the history)")
	cmd.Flags().StringVar(&by, "by", "", "who clears it (default $USER@hostname)")
	return cmd
}

func newBreakerRmCmd(f *cli.Flags) *cobra.Command {
	var (
		reason, by string
		force      bool
	)
	cmd := &cobra.Command{
		Use:   "rm CALLER CALLEE",
		Short: "Delete a pair's breaker: its record and history",
		Long: `Delete a caller -> callee pair's breaker: its record and history are removed
(through the raft log), and callers enforce nothing for the pair until it is
reported again, when it comes back CLOSED with a fresh window.

A pair that is OPEN or HALF_OPEN protects its callee, and an override is an
operator's decision: deleting either needs --force. The leader also deletes
idle pairs by itself (CLOSED, no override, no report for the coordinator's
--breaker-idle-expiry, 24h by default).`,
		Example: `  colony breaker rm checkout paymnts --reason "misspelt callee"
  colony breaker rm checkout payments --force --reason "payments retired"`,
		Aliases: []string{"delete"},
		Args:    cobra.ExactArgs(2),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		rec, err := s.Client.DeleteBreaker(ctx, args[0], args[1], force, reason, byOrUser(by))
		if err != nil {
			return err
		}
		if s.JSON {
			return cli.WriteIndentedJSON(s.Out, rec)
		}
		_, err = fmt.Fprintf(s.Out, "%s -> %s: deleted (was %s, generation %d)\n", rec.Caller, rec.Callee, rec.State, rec.Generation)
		return err
	})
	fl := cmd.Flags()
	fl.BoolVar(&force, "force", false, "delete a pair that is OPEN or HALF_OPEN or has an override")
	fl.StringVar(&reason, "reason", "", "why (logged by the leader)")
	fl.StringVar(&by, "by", "", "who deletes it (default $USER@hostname)")
	return cmd
}

// printPairRecord writes the record an override command left: the state
// callers enforce, its generation and the override.
func printPairRecord(s *cli.Env, rec *breaker.PairRecord) error {
	if s.JSON {
		return cli.WriteIndentedJSON(s.Out, rec)
	}
	line := fmt.Sprintf("%s -> %s: %s, generation %d", rec.Caller, rec.Callee, rec.State, rec.Generation)
	if o := rec.Override; o != nil {
		line += fmt.Sprintf("; %s by %s", o.Mode, cli.OrDash(o.By))
		if !o.Until.IsZero() {
			line += " until " + timeText(o.Until)
		} else {
			line += " until cleared"
		}
	} else {
		line += "; no override"
	}
	if rec.Shadow != nil {
		line += fmt.Sprintf("; shadow breaker %s", rec.Shadow.State)
	}
	_, err := fmt.Fprintln(s.Out, line)
	return err
}

// byOrUser returns by, or $USER@hostname when it is empty.
func byOrUser(by string) string {
	if by != "" {
		return by
	}
	name := os.Getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		return name + "@" + host
	}
	return name
}

// percentText writes a ratio as a whole percentage ("62%"), "<1%" for a
// small non-zero one.
func percentText(r float64) string {
	if r > 0 && r < 0.005 {
		return "<1%"
	}
	return fmt.Sprintf("%.0f%%", r*100)
}

// timeText writes leader time as formatMillis does, "-" for none.
func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return cli.FormatMillis(t.UnixMilli())
}

// timeAndAge writes a time and how far it is from now.
func timeAndAge(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return timeText(t) + " (" + agoText(now, t) + ")"
}

// agoText says how long ago t was ("3m12s ago"), or how far ahead it is
// ("in 5m0s"), to the second.
func agoText(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	switch {
	case d == 0:
		return "just now"
	case d < 0:
		return "in " + durationText(-d)
	}
	return durationText(d) + " ago"
}

// durationText is d to the second, with days for long ones ("3d4h").
func durationText(d time.Duration) string {
	if d >= 48*time.Hour {
		days := d / (24 * time.Hour)
		return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
	}
	return d.String()
}

// probesText writes a probe assignment as "instance=permits" in instance order.
func probesText(probes map[string]int) string {
	ids := make([]string, 0, len(probes))
	for id := range probes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%s=%d", id, probes[id])
	}
	return strings.Join(parts, " ")
}
