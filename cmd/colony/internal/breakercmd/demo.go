package breakercmd

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/cmd/colony/internal/demo"
	"github.com/colonymesh/colony/coordinator/client"
)

// NewDemoCmd drives `colony dev`'s demo mesh.
func NewDemoCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Make the demo callee of `colony dev` fail or recover",
	}
	for _, c := range []struct{ use, value, short string }{
		{"fail", "fail", "Make the demo callee fail every call (UNAVAILABLE)"},
		{"heal", "ok", "Make the demo callee healthy again"},
	} {
		sub := &cobra.Command{
			Use:     c.use + " CALLEE",
			Short:   c.short,
			Example: "  colony demo " + c.use + " payments",
			Args:    cobra.ExactArgs(1),
		}
		sub.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
			if err := breaker.ValidateServiceName(args[0]); err != nil {
				return err
			}
			p := path.Join(demo.ControlRoot, args[0])
			if _, err := s.Client.Set(ctx, p, []byte(c.value), client.AnyVersion); err != nil {
				if errors.Is(err, client.ErrNoNode) {
					return fmt.Errorf("%s: no demo callee %q (is `colony dev` running with its demo?)", p, args[0])
				}
				return err
			}
			state := map[string]string{"fail": "failing", "ok": "healthy"}[c.value]
			if s.JSON {
				return cli.WriteIndentedJSON(s.Out, struct {
					Callee string `json:"callee"`
					State  string `json:"state"`
				}{args[0], state})
			}
			_, err := fmt.Fprintf(s.Out, "demo callee %s: %s\n", args[0], state)
			return err
		})
		cmd.AddCommand(sub)
	}
	return cmd
}
