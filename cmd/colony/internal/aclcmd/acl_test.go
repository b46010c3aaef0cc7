package aclcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/colonymesh/colony/cmd/colony/internal/clitest"
	"github.com/colonymesh/colony/contract"
)

var testColony = clitest.NewColony(NewACLCmd)

// TestACLCommands checks that apply validates a rules file locally, naming
// the bad field, writes a valid one (again: unchanged), and that get prints
// what apply wrote, as YAML and JSON, which apply takes back unchanged.
func TestACLCommands(t *testing.T) {
	addr := clitest.StartCoordinator(t)
	ctx := t.Context()
	run := func(stdin string, args ...string) (string, error) {
		t.Helper()
		return testColony.Run(ctx, t, stdin, append(args, "--endpoints", addr)...)
	}
	mustRun := func(stdin string, args ...string) string {
		t.Helper()
		out, err := run(stdin, args...)
		if err != nil {
			t.Fatalf("colony %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	out := mustRun("", "acl", "get")
	clitest.MustContain(t, "get before any rules", out, "No rules at "+contract.ACLRulesPath)

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - roles: [client]\n    prefix: /app/\n    permissions: [read, fly]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run("", "acl", "apply", "-f", bad); err == nil || !strings.Contains(err.Error(), "rules[0].permissions[1]") {
		t.Fatalf("applying a bad file: %v, want an error naming rules[0].permissions[1]", err)
	}
	out = mustRun("", "acl", "get")
	clitest.MustContain(t, "get after a refused apply", out, "No rules at")

	good := filepath.Join(dir, "rules.yaml")
	rules := `rules:
  - identities: ["spiffe://colony.local/client/billing"]
    prefix: /app/billing/
    permissions: [read, write]
bindings:
  - identity: cn:alice
    role: operator
`
	if err := os.WriteFile(good, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	out = mustRun("", "acl", "apply", "-f", good)
	clitest.MustContain(t, "apply", out, "applied (version 0)")
	out = mustRun("", "acl", "apply", "-f", good)
	clitest.MustContain(t, "apply again", out, "unchanged (version 0)")

	out = mustRun("", "acl", "get")
	clitest.MustContain(t, "get", out, "version 0", "spiffe://colony.local/client/billing", "prefix: /app/billing/", "identity: cn:alice", "role: operator")
	js := mustRun("", "acl", "get", "-o", "json")
	clitest.MustContain(t, "get -o json", js, `"bindings"`, `"cn:alice"`)
	out = mustRun(js, "acl", "apply", "-f", "-")
	clitest.MustContain(t, "apply the JSON get printed", out, "unchanged")

	out = mustRun("rules: []\n", "acl", "apply", "-f", "-")
	clitest.MustContain(t, "apply an empty rule list", out, "applied (version 1)")
}
