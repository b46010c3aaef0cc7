// Package aclcmd holds `colony acl`: get and apply the authorization rules
// a secure cluster keeps at contract.ACLRulesPath. The rules file is YAML
// or JSON and is validated here with contract.ParseACL, as the coordinator
// validates it again, before it is written with a compare-and-set on the
// version it replaces.
package aclcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
)

// NewACLCmd returns `colony acl`: get and apply the authorization rules.
func NewACLCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Show and apply the cluster's authorization rules",
		Long: `Show and apply the authorization rules of a secure cluster, kept at
` + contract.ACLRulesPath + `. Every role has built-in rights (admin and node:
everything; operator: read everything, write the tree, control breakers and
policies; sidecar: its own service's registrations and breakers); rules grant
more, on path prefixes, to identities or roles, and bind identities to roles.
Operators read the rules; only admins change them.

  rules:
    - identities: ["spiffe://colony.local/client/billing"]
      prefix: /app/billing/
      permissions: [read, write, create, delete, watch]
    - roles: [client]
      prefix: /app/shared/
      permissions: [read, watch]
  bindings:
    - identity: cn:alice
      role: operator

Permissions: read, write, create, delete, watch and admin (all of them, and
control of the breakers and policies under the prefix). Identities are SPIFFE
IDs or cn:<common name>.`,
	}
	cmd.AddCommand(newGetCmd(f), newApplyCmd(f))
	return cmd
}

func newGetCmd(f *cli.Flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Print the authorization rules, as YAML",
		Long: `Print the authorization rules as YAML, after a comment line with the
version of the document (what apply replaces). With --output json: the
document as JSON, which apply accepts as it is.`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, _ []string) error {
		data, st, err := s.Client.Get(ctx, contract.ACLRulesPath)
		missing := errors.Is(err, client.ErrNoNode)
		if err != nil && !missing {
			return err
		}
		acl, err := contract.ParseACL(data)
		if err != nil {
			return fmt.Errorf("%s: %w", contract.ACLRulesPath, err)
		}
		if s.JSON {
			return cli.WriteIndentedJSON(s.Out, acl)
		}
		js, err := json.Marshal(acl)
		if err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		comment := fmt.Sprintf("# %s, version %d.\n", contract.ACLRulesPath, st.GetVersion())
		if missing {
			comment = fmt.Sprintf("# No rules at %s: only the built-in rights of each role apply.\n", contract.ACLRulesPath)
		}
		_, err = fmt.Fprintf(s.Out, "%s%s", comment, y)
		return err
	})
	return cmd
}

func newApplyCmd(f *cli.Flags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Validate a rules file and make it the cluster's rules",
		Long: `Validate a rules file (YAML or JSON) and make it the cluster's rules,
replacing the whole document. A bad field (an unknown permission, a relative
prefix, a misspelt key) rejects the file, naming the field. The write is a
compare-and-set on the version read just before, so a concurrent change is
never overwritten: run the command again to apply over it. Needs an admin
certificate.`,
		Example: `  colony acl get > rules.yaml
  colony acl apply -f rules.yaml
  colony acl apply -f - < rules.yaml`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = f.Run(false, func(ctx context.Context, s *cli.Env, _ []string) error {
		if file == "" {
			return errors.New(`-f: give the rules file ("-": stdin)`)
		}
		data, source, err := s.ReadFileFlag(file, "rules")
		if err != nil {
			return err
		}
		doc, err := parseFile(data)
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		changed, version, err := apply(ctx, s.Client, doc)
		if err != nil {
			return err
		}
		if s.JSON {
			return cli.WriteIndentedJSON(s.Out, struct {
				Changed bool  `json:"changed"`
				Version int64 `json:"version"`
			}{changed, version})
		}
		what := "applied"
		if !changed {
			what = "unchanged"
		}
		_, err = fmt.Fprintf(s.Out, "%s: %s (version %d)\n", contract.ACLRulesPath, what, version)
		return err
	})
	cmd.Flags().StringVarP(&file, "file", "f", "", `the rules file, YAML or JSON ("-": stdin)`)
	return cmd
}

// parseFile validates a rules file and returns the document to store.
func parseFile(data []byte) ([]byte, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		js = []byte("{}") // an empty file: no rules
	}
	acl, err := contract.ParseACL(js)
	if err != nil {
		return nil, err
	}
	return json.Marshal(acl)
}

// apply writes doc at contract.ACLRulesPath with a compare-and-set on the
// version it replaces (creating it, and its directory, when there is none),
// and returns whether it changed and its version after.
func apply(ctx context.Context, c *client.Client, doc []byte) (changed bool, version int64, err error) {
	old, st, err := c.Get(ctx, contract.ACLRulesPath)
	switch {
	case errors.Is(err, client.ErrNoNode):
		if _, _, err := c.Create(ctx, contract.ACLRoot, nil); err != nil && !errors.Is(err, client.ErrNodeExists) {
			return false, 0, fmt.Errorf("creating %s: %w", contract.ACLRoot, err)
		}
		_, st, err := c.Create(ctx, contract.ACLRulesPath, doc)
		if errors.Is(err, client.ErrNodeExists) {
			return false, 0, fmt.Errorf("%s was created by someone else meanwhile; run the command again to replace it: %w", contract.ACLRulesPath, err)
		}
		if err != nil {
			return false, 0, err
		}
		return true, st.GetVersion(), nil
	case err != nil:
		return false, 0, err
	case bytes.Equal(old, doc):
		return false, st.GetVersion(), nil
	}
	st, err = c.Set(ctx, contract.ACLRulesPath, doc, st.GetVersion())
	if errors.Is(err, client.ErrBadVersion) {
		return false, 0, fmt.Errorf("%s changed meanwhile; run the command again to replace it: %w", contract.ACLRulesPath, err)
	}
	if err != nil {
		return false, 0, err
	}
	return true, st.GetVersion(), nil
}
