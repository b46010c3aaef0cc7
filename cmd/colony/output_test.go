package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryCommandHonoursOutput runs every command that prints a result
// with -o json and checks it prints one JSON document of the documented
// shape: an array for lists, an object otherwise.
func TestEveryCommandHonoursOutput(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()
	snap := filepath.Join(t.TempDir(), "s.snap")
	setup := [][]string{
		{"policy", "apply", "-f", examplePolicies},
		{"breaker", "report", "checkout", "payments", "--instance", "c1", "--successes", "5"},
	}
	for _, args := range setup {
		if _, err := colony(ctx, t, "", append(args, "--endpoints", addr)...); err != nil {
			t.Fatalf("colony %v: %v", args, err)
		}
	}
	eventually(t, "the pair's breaker", func() (bool, string) {
		out, err := colony(ctx, t, "", "breaker", "ls", "--endpoints", addr)
		return err == nil && strings.Contains(out, "payments"), out
	})

	tests := []struct {
		args    []string
		isArray bool
		key     string // a key the object must have ("" for arrays)
	}{
		{[]string{"kv", "create", "/o", "x"}, false, "path"},
		{[]string{"kv", "get", "/o"}, false, "data"},
		{[]string{"kv", "set", "/o", "y"}, false, "version"},
		{[]string{"kv", "ls", "/"}, false, "names"},
		{[]string{"kv", "stat", "/o"}, false, "mzxid"},
		{[]string{"kv", "rm", "/o"}, false, ""},
		{[]string{"cluster", "status"}, false, "leaderId"},
		{[]string{"cluster", "members"}, true, ""},
		{[]string{"session", "ls"}, true, ""},
		{[]string{"breaker", "ls"}, true, ""},
		{[]string{"breaker", "get", "checkout", "payments"}, false, "record"},
		{[]string{"breaker", "report", "checkout", "payments", "--instance", "c1", "--successes", "1"}, false, "counts"},
		{[]string{"breaker", "force-open", "checkout", "payments", "--reason", "test"}, false, "state"},
		{[]string{"breaker", "clear", "checkout", "payments", "--reason", "test"}, false, "state"},
		{[]string{"policy", "get", "payments"}, false, "policySet"},
		{[]string{"policy", "apply", "-f", examplePolicies}, true, ""},
		{[]string{"cluster", "wait"}, false, "leaderId"},
		{[]string{"snapshot", "save", snap}, false, "sha256"},
		{[]string{"snapshot", "status", snap}, false, "nodes"},
		{[]string{"version"}, false, "goVersion"},
	}
	for _, tt := range tests {
		name := strings.Join(tt.args[:min(2, len(tt.args))], " ")
		t.Run(name, func(t *testing.T) {
			args := append(tt.args, "-o", "json")
			if offline := name == "version" || name == "snapshot status"; !offline {
				args = append(args, "--endpoints", addr)
			}
			out, err := colony(ctx, t, "", args...)
			if err != nil {
				t.Fatalf("colony %v: %v", args, err)
			}
			var v any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("-o json printed no JSON document (%v):\n%s", err, out)
			}
			switch x := v.(type) {
			case []any:
				if !tt.isArray {
					t.Errorf("printed an array, want an object:\n%s", out)
				}
			case map[string]any:
				if tt.isArray {
					t.Errorf("printed an object, want an array:\n%s", out)
				}
				if _, ok := x[tt.key]; tt.key != "" && !ok {
					t.Errorf("no %q in:\n%s", tt.key, out)
				}
			default:
				t.Errorf("printed %T, want an object or an array", v)
			}
		})
	}

	// table is the default, and text still names it.
	def, err := colony(ctx, t, "", "cluster", "members", "--endpoints", addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"table", "text"} {
		out, err := colony(ctx, t, "", "cluster", "members", "-o", o, "--endpoints", addr)
		if err != nil || !strings.HasPrefix(out, "ID ") || len(out) != len(def) {
			t.Errorf("-o %s printed %q, %v; want the default table %q", o, out, err, def)
		}
	}
}
