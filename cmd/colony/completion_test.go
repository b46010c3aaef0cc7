package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// complete runs cobra's hidden __complete command, as a shell does at Tab,
// and returns the candidates (without descriptions) and the directive line.
func complete(t *testing.T, args ...string) (names []string, directive string) {
	t.Helper()
	out, err := colony(t.Context(), t, "", append([]string{"__complete"}, args...)...)
	if err != nil {
		t.Fatalf("__complete %v: %v", args, err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[:len(lines)-1] {
		name, _, _ := strings.Cut(l, "\t")
		names = append(names, name)
	}
	return names, lines[len(lines)-1]
}

func TestCompletionFromTheCluster(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()
	for _, args := range [][]string{
		{"policy", "apply", "-f", examplePolicies},
		{"breaker", "report", "checkout", "payments", "--instance", "c1", "--successes", "5"},
		{"kv", "create", "/app", "x"},
		{"kv", "create", "/app/one", "x"},
	} {
		if _, err := colony(ctx, t, "", append(args, "--endpoints", addr)...); err != nil {
			t.Fatalf("colony %v: %v", args, err)
		}
	}
	eventually(t, "the pair's breaker", func() (bool, string) {
		out, err := colony(ctx, t, "", "breaker", "ls", "--endpoints", addr)
		return err == nil && strings.Contains(out, "payments"), out
	})

	tests := []struct {
		name string
		args []string // after __complete; the last is the word being completed
		want []string
		not  []string
	}{
		{"breaker caller", []string{"breaker", "get", "--endpoints", addr, ""}, []string{"checkout"}, nil},
		{"breaker callee", []string{"breaker", "force-open", "--endpoints", addr, "checkout", ""}, []string{"payments", "inventory"}, nil},
		{"breaker callee by prefix", []string{"breaker", "report", "--endpoints", addr, "checkout", "pay"}, []string{"payments"}, []string{"inventory"}},
		{"nothing after the callee", []string{"breaker", "clear", "--endpoints", addr, "checkout", "payments", ""}, nil, []string{"payments", "checkout"}},
		{"policy callee", []string{"policy", "get", "--endpoints", addr, ""}, []string{"payments", "inventory"}, nil},
		{"policy rm", []string{"policy", "rm", "--endpoints", addr, "inv"}, []string{"inventory"}, []string{"payments"}},
		{"breaker ls --callee", []string{"breaker", "ls", "--endpoints", addr, "--callee", ""}, []string{"payments"}, nil},
		{"kv path", []string{"kv", "get", "--endpoints", addr, "/ap"}, []string{"/app"}, []string{"/colony"}},
		{"kv path children", []string{"kv", "ls", "--endpoints", addr, "/app/"}, []string{"/app/one"}, nil},
		{"cluster member", []string{"cluster", "transfer", "--endpoints", addr, ""}, []string{"n1"}, nil},
		{"output values", []string{"kv", "get", "-o", ""}, []string{"table", "json"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, directive := complete(t, tt.args...)
			for _, w := range tt.want {
				if !contains(got, w) {
					t.Errorf("completions %v lack %q", got, w)
				}
			}
			for _, n := range tt.not {
				if contains(got, n) {
					t.Errorf("completions %v hold %q", got, n)
				}
			}
			if !noFiles(directive) {
				t.Errorf("directive %q: want no file completion", directive)
			}
		})
	}
}

func TestCompletionWithoutACoordinatorIsSilent(t *testing.T) {
	nobody := freeAddr(t)
	for _, args := range [][]string{
		{"breaker", "get", "--endpoints", nobody, ""},
		{"breaker", "get", "--endpoints", nobody, "checkout", ""},
		{"policy", "get", "--endpoints", nobody, ""},
		{"kv", "get", "--endpoints", nobody, "/a"},
	} {
		got, directive := complete(t, args...)
		if len(got) != 0 || !noFiles(directive) {
			t.Errorf("%v: completions %v, directive %s; want none, and no files", args, got, directive)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		out, err := colony(t.Context(), t, "", "completion", shell)
		if err != nil || !strings.Contains(out, "colony") || len(out) < 500 {
			t.Errorf("completion %s: %v, %d bytes", shell, err, len(out))
		}
	}
}

// noFiles reports whether a __complete directive line (":6") keeps the
// shell from completing file names.
func noFiles(directive string) bool {
	d, err := strconv.Atoi(strings.TrimPrefix(directive, ":"))
	return err == nil && cobra.ShellCompDirective(d)&cobra.ShellCompDirectiveNoFileComp != 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
