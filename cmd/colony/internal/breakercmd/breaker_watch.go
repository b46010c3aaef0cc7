package breakercmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// newBreakerReportCmd sends outcome reports by hand: what a sidecar sends
// every few hundred milliseconds, for demos, tests and drills.
func newBreakerReportCmd(f *cli.Flags) *cobra.Command {
	var (
		instance string
		counts   colonyv1.OutcomeCounts
		every    time.Duration
		count    int
	)
	cmd := &cobra.Command{
		Use:   "report CALLER CALLEE --instance ID [--successes N] [--failures N] ...",
		Short: "Send outcome reports for a pair, as a sidecar does",
		Long: `Send one caller instance's outcome counts for one pair to the coordinator,
once, or --count times every --every. Sidecars do this on their own; the
command is for demos, tests and drills. The callee must be known (a policy,
a registered instance, or an existing breaker).`,
		Example: `  colony breaker report checkout payments --instance checkout-1 --failures 30
  colony breaker report checkout payments --instance checkout-2 --failures 30 --count 10 --every 250ms`,
		Args: cobra.ExactArgs(2),
	}
	cmd.RunE = f.Run(true, func(ctx context.Context, s *cli.Env, args []string) error {
		if instance == "" {
			return errors.New("--instance: required (the caller instance that made the calls)")
		}
		if count < 1 || count > 100000 {
			return fmt.Errorf("--count: want 1..100000, got %d", count)
		}
		if count > 1 && every <= 0 {
			return errors.New("--every: must be positive with --count above 1")
		}
		if counts.TrailingFailures == 0 && counts.Successes == 0 {
			counts.TrailingFailures = counts.Failures
		}
		r := &colonyv1.OutcomeReport{Caller: args[0], Callee: args[1], Instance: instance, Counts: &counts}
		for i := range count {
			if i > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(every):
				}
			}
			rctx, cancel := context.WithTimeout(ctx, s.Flags.Timeout)
			err := s.Client.Report(rctx, r)
			cancel()
			if err != nil {
				return err
			}
		}
		if s.JSON {
			return cli.WriteIndentedJSON(s.Out, struct {
				Caller   string          `json:"caller"`
				Callee   string          `json:"callee"`
				Instance string          `json:"instance"`
				Reports  int             `json:"reports"`
				Counts   json.RawMessage `json:"counts"`
			}{args[0], args[1], instance, count, cli.ProtoJSON(&counts)})
		}
		_, err := fmt.Fprintf(s.Out, "reported %d time(s): %s->%s from %s: %d successes, %d failures, %d slow, %d rejected, %d excluded\n",
			count, args[0], args[1], instance, counts.Successes, counts.Failures, counts.Slow, counts.Rejected, counts.Excluded)
		return err
	})
	fl := cmd.Flags()
	fl.StringVar(&instance, "instance", "", "caller instance id (required)")
	fl.Int64Var(&counts.Successes, "successes", 0, "successful calls")
	fl.Int64Var(&counts.Failures, "failures", 0, "failed calls")
	fl.Int64Var(&counts.Slow, "slow", 0, "slow calls (of the successes and failures)")
	fl.Int64Var(&counts.Rejected, "rejected", 0, "calls the breaker rejected")
	fl.Int64Var(&counts.Excluded, "excluded", 0, "calls that count neither way")
	fl.Int64Var(&counts.TrailingFailures, "trailing-failures", 0, "failures after the last success (default: all failures when there are no successes)")
	fl.DurationVar(&every, "every", 250*time.Millisecond, "interval between reports with --count")
	fl.IntVar(&count, "count", 1, "how many reports to send")
	return cmd
}

// newBreakerWatchCmd prints breaker changes as they are committed.
func newBreakerWatchCmd(f *cli.Flags) *cobra.Command {
	var caller string
	cmd := &cobra.Command{
		Use:   "watch [--caller SERVICE]",
		Short: "Print every breaker change as it happens",
		Long: `Print one line per change of a breaker record (all pairs, or one caller's),
as committed by the coordinator, until Ctrl-C: the time, the pair, the state,
the generation and why. --output json prints each record as a JSON line.
It resumes across coordinator failures without missing a change; if the
coordinator says changes may have been missed, it says so and goes on.`,
		Example: `  colony breaker watch
  colony breaker watch --caller checkout -o json`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = f.Run(true, func(ctx context.Context, s *cli.Env, _ []string) error {
		root := contract.BreakersRoot
		if caller != "" {
			if err := breaker.ValidateServiceName(caller); err != nil {
				return fmt.Errorf("--caller: %w", err)
			}
			root = contract.CallerBreakers(caller)
		}
		for {
			err := watchBreakers(s, ctx, root)
			switch {
			case err == nil, ctx.Err() != nil:
				return nil
			case errors.Is(err, client.ErrResync):
				fmt.Fprintln(s.ErrOut, "changes may have been missed; watching again from now")
			default:
				return err
			}
		}
	})
	cmd.Flags().StringVar(&caller, "caller", "", "only this caller service's breakers")
	return cmd
}

func watchBreakers(s *cli.Env, ctx context.Context, root string) error {
	// The watch lives as long as ctx; only setting it up is bounded by
	// --timeout.
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	setup := time.AfterFunc(s.Flags.Timeout, func() {
		cancel(fmt.Errorf("watch not set up within --timeout %v: %w", s.Flags.Timeout, context.DeadlineExceeded))
	})
	w, err := s.Client.Watch(wctx, root, colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive())
	if !setup.Stop() && err == nil {
		w.Close()
		err = context.Cause(wctx)
	}
	if err != nil {
		return err
	}
	defer w.Close()
	cols := &watchColumns{}
	if !s.JSON {
		fmt.Fprintf(s.ErrOut, "watching %s; Ctrl-C to stop\n", root)
		fmt.Fprintln(s.Out, cols.header())
	}
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if ev.GetType() == colonyv1.EventType_EVENT_TYPE_DELETED || len(ev.GetData()) == 0 || strings.Count(ev.GetPath(), "/") != 4 {
			continue
		}
		var rec breaker.PairRecord
		if err := json.Unmarshal(ev.GetData(), &rec); err != nil {
			fmt.Fprintf(s.ErrOut, "%s: unreadable record: %v\n", ev.GetPath(), err)
			continue
		}
		if s.JSON {
			if err := json.NewEncoder(s.Out).Encode(rec); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintln(s.Out, cols.line(rec))
	}
}

// watchColumns lays out breaker watch's lines in columns. A stream cannot
// wait for every line to size them as a table does: the pair column starts
// wide enough for most names and widens for a longer one, from that line
// on.
type watchColumns struct{ pair, gen int }

const (
	minPairWidth = 24
	minGenWidth  = 4
	timeLayout   = "15:04:05.000"
)

func (c *watchColumns) widths(pair, gen int) {
	c.pair = max(c.pair, minPairWidth, pair)
	c.gen = max(c.gen, minGenWidth, gen)
}

// header names the columns.
func (c *watchColumns) header() string {
	c.widths(0, 0)
	return fmt.Sprintf("%-12s  %-*s  %-9s  %-*s  %s", "TIME", c.pair, "PAIR", "STATE", c.gen, "GEN", "DETAIL")
}

// line is a one-line summary of a record, in the columns.
func (c *watchColumns) line(r breaker.PairRecord) string {
	pair := r.Caller + "->" + r.Callee
	gen := fmt.Sprint(r.Generation)
	c.widths(len(pair), len(gen))
	return strings.TrimRight(fmt.Sprintf("%-12s  %-*s  %-9s  %-*s  %s",
		r.Since.Local().Format(timeLayout), c.pair, pair, r.State, c.gen, gen, recordDetail(r)), " ")
}

// recordDetail is what a record says beyond its state: cause, open-until,
// probes, override, shadow and, while OPEN, the evidence.
func recordDetail(r breaker.PairRecord) string {
	var b strings.Builder
	if r.Cause != "" {
		fmt.Fprintf(&b, "  cause %s", r.Cause)
	}
	if r.State == breaker.Open && !r.OpenUntil.IsZero() {
		fmt.Fprintf(&b, "  until %s", r.OpenUntil.Local().Format(timeLayout))
	}
	if len(r.Probes) > 0 {
		ids := make([]string, 0, len(r.Probes))
		for id, n := range r.Probes {
			ids = append(ids, fmt.Sprintf("%s:%d", id, n))
		}
		sort.Strings(ids)
		fmt.Fprintf(&b, "  probes %s", strings.Join(ids, ","))
	}
	if r.Override != nil {
		fmt.Fprintf(&b, "  override %s by %s: %q", r.Override.Mode, r.Override.By, r.Override.Reason)
	}
	if r.Shadow != nil {
		fmt.Fprintf(&b, "  (shadow: %s gen %d)", r.Shadow.State, r.Shadow.Generation)
	}
	ev := r.Evidence
	if ev.Calls > 0 && r.State == breaker.Open {
		fmt.Fprintf(&b, "  evidence %d/%d failed (%.0f%%) on %d of %d instances", ev.Failures, ev.Calls, 100*ev.FailureRate, ev.FailingInstances, ev.ReportingInstances)
	}
	return strings.TrimPrefix(b.String(), "  ")
}
