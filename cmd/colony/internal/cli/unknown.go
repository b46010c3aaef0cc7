package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// habits maps the words operators bring from etcdctl (and from habit) to
// the commands that do the same here, by the path of the command they were
// typed under ("" is the root). Names cobra's own suggestions find
// (close spellings, prefixes) need no entry.
var habits = map[string]map[string][]string{
	"": {
		"put":      {"kv create", "kv set"},
		"get":      {"kv get", "breaker get"},
		"del":      {"kv rm"},
		"delete":   {"kv rm"},
		"watch":    {"kv watch", "breaker watch"},
		"ls":       {"kv ls", "breaker ls"},
		"member":   {"cluster members"},
		"endpoint": {"cluster status"},
		"lease":    {"session"},
		"status":   {"cluster status"},
	},
	"kv": {
		"put":    {"create", "set"},
		"update": {"set"},
		"del":    {"rm"},
		"remove": {"rm"},
		"list":   {"ls"},
		"range":  {"get", "ls"},
	},
	"breaker": {
		"list":     {"ls"},
		"show":     {"get"},
		"describe": {"get"},
		"del":      {"rm"},
		"remove":   {"rm"},
		"open":     {"force-open"},
		"close":    {"force-close"},
		"reset":    {"clear"},
	},
	"cluster": {
		"list":        {"members"},
		"ls":          {"members"},
		"member":      {"members"},
		"promote":     {"add"},
		"rm":          {"remove"},
		"del":         {"remove"},
		"move-leader": {"transfer"},
		"health":      {"status"},
	},
	"session": {
		"list":   {"ls"},
		"grant":  {"open"},
		"revoke": {"close"},
		"rm":     {"close"},
	},
	"policy": {
		"set":    {"apply"},
		"put":    {"apply"},
		"ls":     {"get"},
		"list":   {"get"},
		"del":    {"rm"},
		"remove": {"rm"},
	},
	"acl": {
		"set": {"apply"},
		"put": {"apply"},
	},
	"snapshot": {
		"create": {"save"},
	},
}

// guardGroups makes every command that only groups others (no Run of its
// own, the root included) refuse an argument that names none of them: it
// exits non-zero with "unknown command" and the commands meant. cobra
// checks subcommand names only at the root and, below it, prints the
// group's help and succeeds, which a script takes for success. Called with
// no argument, a group still prints its help.
func guardGroups(c *cobra.Command) {
	if !c.HasSubCommands() || c.Runnable() {
		return
	}
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[groupAnnotation] = "true"
	c.Args = cobra.ArbitraryArgs
	c.DisableFlagsInUseLine = true // "colony kv" alone prints this help
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		return unknownCommand(cmd, args[0])
	}
}

// groupAnnotation marks a command guardGroups guards.
const groupAnnotation = "colony-command-group"

func isGuardedGroup(c *cobra.Command) bool { return c.Annotations[groupAnnotation] != "" }

// unknownCommand is the error for name typed under group.
func unknownCommand(group *cobra.Command, name string) error {
	var sugg []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			sugg = append(sugg, s)
		}
	}
	path := strings.TrimPrefix(strings.TrimPrefix(group.CommandPath(), group.Root().Name()), " ")
	for _, s := range habits[path][name] {
		add(s)
	}
	if group.SuggestionsMinimumDistance <= 0 {
		group.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
	}
	for _, s := range group.SuggestionsFor(name) {
		add(s)
	}
	err := fmt.Errorf("unknown command %q for %q", name, group.CommandPath())
	hint := fmt.Sprintf("See '%s --help'.", group.CommandPath())
	if len(sugg) > 0 {
		var b strings.Builder
		b.WriteString("Did you mean this?")
		for _, s := range sugg {
			fmt.Fprintf(&b, "\n  %s %s", group.CommandPath(), s)
		}
		hint = b.String() + "\n" + hint
	}
	return &hinted{err: &usageError{err}, hint: hint}
}
