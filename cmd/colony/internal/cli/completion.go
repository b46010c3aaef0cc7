package cli

// Dynamic shell completion: arguments that name things in the cluster
// (breaker pairs, callees, znode paths, sessions, members) are completed
// from the cluster at --endpoints. Without a reachable coordinator they
// complete to nothing, quickly and silently. `colony completion SHELL` is
// cobra's.

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// completionTimeout bounds the cluster queries of one completion: a shell
// waits for it at every Tab.
const completionTimeout = time.Second

type completeFunc = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective)

// AddCompletions sets the dynamic completions of the client commands under
// root: by the arguments their usage line names.
func AddCompletions(root *cobra.Command, f *Flags) {
	byArg := []struct {
		group, arg string
		more       bool // other arguments may follow arg
		fn         completeFunc
	}{
		{"breaker", "CALLER CALLEE", false, f.completePair},
		{"policy", "CALLEE", false, f.completeCallee},
		{"kv", "PATH", true, f.completePath},
		{"session", "ID", false, f.completeSession},
		{"cluster", "ID", false, f.completeMember}, // not add's ID: a new one
	}
	for _, c := range root.Commands() {
		for _, b := range byArg {
			if c.Name() != b.group {
				continue
			}
			for _, sub := range c.Commands() {
				args := strings.Trim(usageArgs(sub.Use), "[]")
				if args == b.arg || b.more && strings.HasPrefix(args, b.arg+" ") {
					sub.ValidArgsFunction = b.fn
				}
			}
		}
	}
	flags := []struct {
		cmd, flag string
		fn        completeFunc
	}{
		{"breaker ls", "caller", f.completeFlag(func(n *names) []string { return n.callers() })},
		{"breaker ls", "callee", f.completeFlag(func(n *names) []string { return n.callees("") })},
		{"breaker watch", "caller", f.completeFlag(func(n *names) []string { return n.callers() })},
		{"kv watch", "kind", cobra.FixedCompletions([]string{"persistent", "data", "children", "exists"}, cobra.ShellCompDirectiveNoFileComp)},
	}
	for _, fl := range flags {
		if c, _, err := root.Find(strings.Fields(fl.cmd)); err == nil && c.Flags().Lookup(fl.flag) != nil {
			_ = c.RegisterFlagCompletionFunc(fl.flag, fl.fn)
		}
	}
}

// usageArgs is what follows the name in a Use line, up to the flags.
func usageArgs(use string) string {
	_, args, _ := strings.Cut(use, " ")
	if i := strings.Index(args, " -"); i >= 0 {
		args = args[:i]
	}
	if i := strings.Index(args, " [flags]"); i >= 0 {
		args = args[:i]
	}
	return strings.TrimSpace(args)
}

// query runs fetch against the cluster at the command's endpoints, with
// short timeouts. Any failure completes to nothing.
func (f *Flags) query(cmd *cobra.Command, fetch func(ctx context.Context, c *client.Client) ([]string, error)) []string {
	eps, err := EndpointsOf(cmd)
	if err != nil {
		return nil
	}
	tlsCfg, _, err := ClientTLS(cmd)
	if err != nil {
		return nil
	}
	c, err := client.New(client.Config{Endpoints: eps, TLS: tlsCfg, DialTimeout: time.Second, RequestTimeout: completionTimeout / 2})
	if err != nil {
		return nil
	}
	defer c.Close()
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	vals, err := fetch(ctx, c)
	if err != nil {
		return nil
	}
	return vals
}

// names is what the cluster knows of services, for completing them.
type names struct {
	pairs    []*colonyv1.BreakerSummary
	policies []string // callees with a policy
	services []string // services with registered instances
}

func fetchNames(ctx context.Context, c *client.Client) (*names, error) {
	pairs, err := c.ListBreakers(ctx, "", "")
	if err != nil {
		return nil, err
	}
	n := &names{pairs: pairs}
	if n.policies, _, err = c.Children(ctx, contract.PoliciesRoot); err != nil && !errors.Is(err, client.ErrNoNode) {
		return nil, err
	}
	if n.services, _, err = c.Children(ctx, contract.ServicesRoot); err != nil && !errors.Is(err, client.ErrNoNode) {
		return nil, err
	}
	return n, nil
}

// callers are the callers of pairs and the registered services, with what
// they call.
func (n *names) callers() []string {
	calls := map[string][]string{}
	for _, p := range n.pairs {
		calls[p.GetCaller()] = append(calls[p.GetCaller()], p.GetCallee())
	}
	for _, s := range n.services {
		if _, ok := calls[s]; !ok {
			calls[s] = nil
		}
	}
	var out []string
	for name, callees := range calls {
		desc := "registered service"
		if len(callees) > 0 {
			desc = "calls " + strings.Join(callees, ", ")
		}
		out = append(out, name+"\t"+desc)
	}
	sort.Strings(out)
	return out
}

// callees are the callees of caller's pairs (all pairs if caller is empty),
// with their state, then the callees with a policy and the registered
// services.
func (n *names) callees(caller string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(name, desc string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name+"\t"+desc)
		}
	}
	for _, p := range n.pairs {
		if caller == "" || p.GetCaller() == caller {
			add(p.GetCallee(), fmt.Sprintf("%s from %s", p.GetState(), p.GetCaller()))
		}
	}
	for _, s := range n.policies {
		add(s, "has a policy")
	}
	for _, s := range n.services {
		add(s, "registered service")
	}
	sort.Strings(out)
	return out
}

// withPrefix keeps the completions that start with prefix.
func withPrefix(vals []string, prefix string) []string {
	var out []string
	for _, v := range vals {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return out
}

// completePair completes CALLER, then CALLEE given the caller.
func (f *Flags) completePair(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 1 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	vals := f.query(cmd, func(ctx context.Context, c *client.Client) ([]string, error) {
		n, err := fetchNames(ctx, c)
		if err != nil {
			return nil, err
		}
		if len(args) == 0 {
			return n.callers(), nil
		}
		return n.callees(args[0]), nil
	})
	return withPrefix(vals, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeCallee completes a CALLEE.
func (f *Flags) completeCallee(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	vals := f.query(cmd, func(ctx context.Context, c *client.Client) ([]string, error) {
		n, err := fetchNames(ctx, c)
		if err != nil {
			return nil, err
		}
		return n.callees(""), nil
	})
	return withPrefix(vals, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeFlag completes a flag's value with names.
func (f *Flags) completeFlag(pick func(*names) []string) completeFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		vals := f.query(cmd, func(ctx context.Context, c *client.Client) ([]string, error) {
			n, err := fetchNames(ctx, c)
			if err != nil {
				return nil, err
			}
			return pick(n), nil
		})
		return withPrefix(vals, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// completePath completes a znode path one level at a time, as zkCli does:
// the children of what was typed up to its last slash.
func (f *Flags) completePath(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if toComplete == "" {
		return []string{"/"}, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
	if !strings.HasPrefix(toComplete, "/") {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	dir := toComplete[:strings.LastIndex(toComplete, "/")+1] // "/a/b/" of "/a/b/c"
	parent := dir
	if parent != "/" {
		parent = strings.TrimSuffix(parent, "/")
	}
	vals := f.query(cmd, func(ctx context.Context, c *client.Client) ([]string, error) {
		names, _, err := c.Children(ctx, parent)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = path.Join(dir, n)
		}
		return out, nil
	})
	return withPrefix(vals, toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// completeSession completes a session ID.
func (f *Flags) completeSession(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	vals := f.query(cmd, func(ctx context.Context, c *client.Client) ([]string, error) {
		sessions, err := c.ListSessions(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(sessions))
		for i, s := range sessions {
			out[i] = FormatSessionID(s.GetSessionId()) + "\t" + s.GetName()
		}
		return out, nil
	})
	return withPrefix(vals, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeMember completes a member ID.
func (f *Flags) completeMember(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	vals := f.query(cmd, func(ctx context.Context, c *client.Client) ([]string, error) {
		st, err := c.Status(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(st.GetMembers()))
		for i, m := range st.GetMembers() {
			desc := strings.ToLower(TrimEnum(m.GetSuffrage().String(), "SUFFRAGE_"))
			if m.GetLeader() {
				desc = "leader"
			}
			out[i] = m.GetId() + "\t" + desc
		}
		return out, nil
	})
	return withPrefix(vals, toComplete), cobra.ShellCompDirectiveNoFileComp
}
