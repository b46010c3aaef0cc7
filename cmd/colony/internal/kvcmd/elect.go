package kvcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/recipe"
)

// NewElectCmd returns `colony elect`: campaign for, or observe, a leadership.
func NewElectCmd(f *cli.Flags) *cobra.Command {
	var (
		value   string
		ttl     time.Duration
		observe bool
	)
	cmd := &cobra.Command{
		Use:   "elect NAME",
		Short: "Campaign in a leader election and print its leaders",
		Long: `Campaign in the election NAME with --value and stay a candidate (and, once
elected, the leader) until Ctrl-C, then resign. Meanwhile print the election's
leader and every change of it, one line each: "leader: VALUE (token N)", or
"leader: none". With -o json, one object per line.

Candidates lead in the order they campaigned; the leader's fencing token
increases from leader to leader. With --observe, only print the leaders.

Leadership lives as long as this process's coordinator session (--ttl): if
the session is lost, colony exits with status 1.`,
		Example: `  colony elect orders-primary --value "$(hostname):8080"
  colony elect orders-primary --observe -o json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("want one NAME, got %d arguments", len(args))
			}
			return recipe.ValidateName(args[0])
		},
	}
	cmd.RunE = f.Run(true, func(ctx context.Context, s *cli.Env, args []string) error {
		name := args[0]
		if observe {
			e, err := recipe.NewElection(s.Client, nil, name)
			if err != nil {
				return err
			}
			octx, stop := context.WithCancel(ctx)
			defer stop()
			return printLeaders(s, e.Observe(octx), stop)
		}
		if ttl <= 0 {
			return fmt.Errorf("--ttl: must be positive, got %v", ttl)
		}
		if !cmd.Flags().Changed("value") {
			host, _ := os.Hostname()
			value = fmt.Sprintf("%s-%d", host, os.Getpid())
		}
		return campaign(s, ctx, name, value, ttl)
	})
	fl := cmd.Flags()
	fl.StringVar(&value, "value", "", "this candidate's value, reported as the leader's (default: HOSTNAME-PID)")
	fl.DurationVar(&ttl, "ttl", 10*time.Second, "session TTL: how long the leadership outlives this process if it dies or is cut off")
	fl.BoolVar(&observe, "observe", false, "do not campaign; only print the leaders")
	cmd.MarkFlagsMutuallyExclusive("observe", "value")
	cmd.MarkFlagsMutuallyExclusive("observe", "ttl")
	return cmd
}

// campaign runs a candidacy until ctx ends (Ctrl-C) or the session is lost,
// printing the leaders meanwhile.
func campaign(s *cli.Env, ctx context.Context, name, value string, ttl time.Duration) error {
	octx, cancel := context.WithTimeout(ctx, s.Flags.Timeout)
	sess, err := s.Client.OpenSession(octx, ttl, "colony elect "+name+": "+value)
	cancel()
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Flags.Timeout)
		defer cancel()
		_ = sess.Close(cctx)
	}()
	e, err := recipe.NewElection(s.Client, sess, name)
	if err != nil {
		return err
	}

	// The printer ends when obsCtx does; wait for it before returning.
	obsCtx, stopObserving := context.WithCancel(ctx)
	printed := make(chan error, 1)
	leaders := e.Observe(obsCtx)
	go func() { printed <- printLeaders(s, leaders, stopObserving) }()
	defer func() {
		stopObserving()
		<-printed
	}()

	g, err := e.Campaign(ctx, []byte(value))
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while a candidate: the candidacy is withdrawn
		}
		return err
	}
	fmt.Fprintf(s.ErrOut, "colony elect: %q leads %s (token %d)\n", value, name, g.Token())
	select {
	case <-ctx.Done():
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Flags.Timeout)
		defer cancel()
		if err := e.Resign(rctx); err != nil {
			return err
		}
		return nil
	case <-g.Done():
		return fmt.Errorf("lost the leadership of %s: %w", name, g.Err())
	}
}

// leaderLine is one leader in -o json output.
type leaderLine struct {
	Leader bool   `json:"leader"`
	Value  string `json:"value,omitempty"`
	Token  uint64 `json:"token,omitempty"`
	Path   string `json:"path,omitempty"`
}

// printLeaders prints every leader from ch until it is closed. If it cannot
// write, it calls stop (which must end the observer) and drains ch.
func printLeaders(s *cli.Env, ch <-chan recipe.Leader, stop func()) error {
	var err error
	for l := range ch {
		if err != nil {
			continue
		}
		switch {
		case s.JSON:
			var b []byte
			b, err = json.Marshal(leaderLine{Leader: l.Path != "", Value: string(l.Value), Token: uint64(l.Token), Path: l.Path})
			if err == nil {
				_, err = fmt.Fprintf(s.Out, "%s\n", b)
			}
		case l.Path == "":
			_, err = fmt.Fprintln(s.Out, "leader: none")
		default:
			_, err = fmt.Fprintf(s.Out, "leader: %s (token %d)\n", l.Value, l.Token)
		}
		if err != nil {
			stop()
		}
	}
	if err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}
