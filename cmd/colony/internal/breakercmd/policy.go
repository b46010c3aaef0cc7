package breakercmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
)

// NewPolicyCmd returns `colony policy`: apply, show and remove breaker
// policies.
func NewPolicyCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Apply, show and remove the breaker policies of callees",
		Long: `Apply, show and remove breaker policies. A callee's policy governs every
caller -> callee pair; per-caller policies replace it for one caller. A callee
without a policy uses the default one ("colony policy get" on it shows it).

A policies file (YAML or JSON) lists callees with their policy, each field
overlaid on the default policy, and optional per-caller policies overlaid on
the callee's:

  policies:
    - callee: payments
      policy:
        failureRateThreshold: 0.5
        window: 10s
      callers:
        checkout:
          minimumCalls: 50

See examples/policies.yaml for every field.`,
	}
	cmd.AddCommand(newPolicyApplyCmd(f), newPolicyGetCmd(f), newPolicyRmCmd(f))
	return cmd
}

func newPolicyApplyCmd(f *cli.Flags) *cobra.Command {
	var (
		file   string
		dryRun bool
		by     string
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Validate and apply a policies file, all or nothing",
		Long: `Validate a policies file and apply it, all or nothing: a bad field anywhere
(a misspelt name, a ratio outside 0..1) rejects the whole file, naming the
callee and the field. Prints, per callee, "applied" or "unchanged" (it already
had that policy). --dry-run only validates, printing "would apply" or "valid,
unchanged".`,
		Example: `  colony policy apply -f examples/policies.yaml
  colony policy apply -f policies.yaml --dry-run
  kubectl get configmap colony-policies -o jsonpath='{.data.policies\.yaml}' | colony policy apply -f -`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, _ []string) error {
		if file == "" {
			return errors.New(`-f: give the policies file ("-": stdin)`)
		}
		data, source, err := s.ReadFileFlag(file, "policies")
		if err != nil {
			return err
		}
		specs, err := client.ParsePolicyFile(data)
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		applied, err := s.Client.ApplyPolicies(ctx, specs, byOrUser(by), dryRun)
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		if s.JSON {
			type result struct {
				Callee    string          `json:"callee"`
				Changed   bool            `json:"changed"`
				DryRun    bool            `json:"dryRun"`
				PolicySet json.RawMessage `json:"policySet"`
			}
			out := make([]result, len(applied))
			for i, a := range applied {
				out[i] = result{Callee: a.GetCallee(), Changed: a.GetChanged(), DryRun: dryRun, PolicySet: a.GetPolicySet()}
			}
			return cli.WriteIndentedJSON(s.Out, out)
		}
		for _, a := range applied {
			var what string
			switch {
			case dryRun && a.GetChanged():
				what = "would apply"
			case dryRun:
				what = "valid, unchanged"
			case a.GetChanged():
				what = "applied"
			default:
				what = "unchanged"
			}
			if _, err := fmt.Fprintf(s.Out, "%s: %s\n", a.GetCallee(), what); err != nil {
				return err
			}
		}
		return nil
	})
	fl := cmd.Flags()
	fl.StringVarP(&file, "file", "f", "", `the policies file, YAML or JSON ("-": stdin)`)
	fl.BoolVar(&dryRun, "dry-run", false, "validate only; change nothing")
	fl.StringVar(&by, "by", "", "who applies it, recorded with the policies (default $USER@hostname)")
	return cmd
}

func newPolicyGetCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get CALLEE",
		Short: "Print the policies for calls to a callee, as YAML",
		Long: `Print the policies for calls to CALLEE as YAML, every field resolved: the
callee's policy and its per-caller policies. A first comment line says whether
it is the callee's own or the default policy. With --output json:
{"policySet": ..., "isDefault": ...}.`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		ps, isDefault, err := s.Client.GetPolicy(ctx, args[0])
		if err != nil {
			return err
		}
		if s.JSON {
			return cli.WriteIndentedJSON(s.Out, struct {
				PolicySet *breaker.PolicySet `json:"policySet"`
				IsDefault bool               `json:"isDefault"`
			}{ps, isDefault})
		}
		js, err := json.Marshal(ps)
		if err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		var comment string
		switch {
		case isDefault:
			comment = fmt.Sprintf("# %s has no policy of its own: this is the default policy.\n", args[0])
		case ps.By != "":
			comment = fmt.Sprintf("# %s's own policy, applied by %s at %s.\n", args[0], ps.By, timeText(ps.At))
		default:
			comment = fmt.Sprintf("# %s's own policy, applied at %s.\n", args[0], timeText(ps.At))
		}
		_, err = fmt.Fprintf(s.Out, "%s%s", comment, y)
		return err
	})
	return cmd
}

func newPolicyRmCmd(f *cli.Flags) *cobra.Command {
	var by string
	cmd := &cobra.Command{
		Use:     "rm CALLEE",
		Aliases: []string{"delete"},
		Short:   "Remove a callee's policies; its pairs fall back to the default policy",
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, args []string) error {
		if err := s.Client.DeletePolicy(ctx, args[0], byOrUser(by)); err != nil {
			return err
		}
		if s.JSON {
			return cli.WriteIndentedJSON(s.Out, struct {
				Callee  string `json:"callee"`
				Removed bool   `json:"removed"`
			}{args[0], true})
		}
		_, err := fmt.Fprintf(s.Out, "%s: policy removed; its pairs use the default policy\n", args[0])
		return err
	})
	cmd.Flags().StringVar(&by, "by", "", "who removes it (default $USER@hostname)")
	return cmd
}
