package breakercmd

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// examplePolicies is the documented example file, which must stay valid.
const examplePolicies = "../../../../examples/policies.yaml"

func TestPolicyCommands(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, err := colony(ctx, t, stdin, append(args, "--endpoints", addr)...)
		if err != nil {
			t.Fatalf("colony %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	runErr := func(stdin string, args ...string) error {
		t.Helper()
		out, err := colony(ctx, t, stdin, append(args, "--endpoints", addr)...)
		if err == nil {
			t.Fatalf("colony %s succeeded, printed %q; want an error", strings.Join(args, " "), out)
		}
		return err
	}

	// The example file: a dry run changes nothing, then it applies, then
	// applying it again is a no-op.
	out := run("", "policy", "apply", "-f", examplePolicies, "--dry-run")
	mustContain(t, "dry run", out, "payments: would apply", "inventory: would apply")
	if out := run("", "policy", "get", "payments"); !strings.Contains(out, "default policy") {
		t.Errorf("a dry run applied the policy: policy get printed\n%s", out)
	}
	out = run("", "policy", "apply", "-f", examplePolicies, "--by", "alice")
	mustContain(t, "apply", out, "payments: applied", "inventory: applied")
	out = run("", "policy", "apply", "-f", examplePolicies)
	mustContain(t, "apply again", out, "payments: unchanged", "inventory: unchanged")
	data, err := os.ReadFile(examplePolicies)
	if err != nil {
		t.Fatal(err)
	}
	out = run(string(data), "policy", "apply", "-f", "-", "--dry-run")
	mustContain(t, "dry run from stdin", out, "payments: valid, unchanged")

	// policy get: YAML with every field resolved, the per-caller policy,
	// and a comment saying whose it is.
	out = run("", "policy", "get", "payments")
	mustContain(t, "policy get", out, "# payments's own policy, applied by alice",
		"failureRateThreshold: 0.5", "minFailingInstances: 2", "settlement-batch:", "openDuration: 1m0s",
		"probeTimeout: 10s") // not in the file: resolved from the default
	var got struct {
		PolicySet breaker.PolicySet `json:"policySet"`
		IsDefault bool              `json:"isDefault"`
	}
	if err := json.Unmarshal([]byte(run("", "policy", "get", "payments", "-o", "json")), &got); err != nil {
		t.Fatalf("policy get -o json: %v", err)
	}
	if got.IsDefault || got.PolicySet.Policy.FailureRateThreshold != 0.5 || got.PolicySet.For("settlement-batch").MinimumCalls != 100 {
		t.Errorf("policy get -o json = %+v", got)
	}
	out = run("", "policy", "get", "unconfigured")
	mustContain(t, "policy get of the default", out, "unconfigured has no policy of its own", "minFailingInstances: 2")

	// Bad files are rejected, naming the field, and apply nothing.
	dir := t.TempDir()
	for _, tt := range []struct {
		name, file string
		want       []string
	}{
		{"misspelt field", "policies:\n  - callee: orders\n    policy:\n      failureRateTreshold: 0.5\n",
			[]string{"orders", "failureRateTreshold"}},
		{"ratio out of range", "policies:\n  - callee: orders\n    policy:\n      failureRateThreshold: 1.5\n",
			[]string{"orders", "failureRateThreshold", "1.5", "0..1"}},
		{"bad per-caller policy", "policies:\n  - callee: orders\n    callers:\n      web:\n        probeBudget: 0\n",
			[]string{"callers[web]", "probeBudget"}},
		{"unknown key", "policies:\n  - callee: orders\n    polcy: {}\n", []string{"polcy"}},
		{"no policies", "# nothing yet\n", []string{"no policies"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".yaml")
			if err := os.WriteFile(file, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			err := runErr("", "policy", "apply", "-f", file)
			mustContain(t, "error", err.Error(), append(tt.want, file)...)
		})
	}
	if out := run("", "policy", "get", "orders"); !strings.Contains(out, "default policy") {
		t.Errorf("a rejected file applied a policy:\n%s", out)
	}
	if err := runErr("", "policy", "apply"); !strings.Contains(err.Error(), "-f") {
		t.Errorf("apply without -f: %v", err)
	}

	// rm: back to the default; removing it again says there is none.
	mustContain(t, "policy rm", run("", "policy", "rm", "inventory"), "inventory: policy removed")
	mustContain(t, "policy get after rm", run("", "policy", "get", "inventory"), "default policy")
	if err := runErr("", "policy", "rm", "inventory"); !strings.Contains(err.Error(), "inventory has no policy") {
		t.Errorf("rm of a default policy: %v", err)
	}
}

// tripPolicy trips web -> inventory at >= 50% failures of at least 10 calls
// seen by one instance, and keeps it OPEN far longer than the test runs.
const tripPolicy = `policies:
  - callee: inventory
    policy:
      window: 1m
      minimumCalls: 10
      failureRateThreshold: 0.5
      minFailingInstances: 1
      openDuration: 1h
      maxOpenDuration: 1h
      jitter: 0
`

func TestBreakerCommands(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()
	run := func(args ...string) string {
		t.Helper()
		out, err := colony(ctx, t, "", append(args, "--endpoints", addr)...)
		if err != nil {
			t.Fatalf("colony %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	runErr := func(args ...string) error {
		t.Helper()
		out, err := colony(ctx, t, "", append(args, "--endpoints", addr)...)
		if err == nil {
			t.Fatalf("colony %s succeeded, printed %q; want an error", strings.Join(args, " "), out)
		}
		return err
	}
	if out, err := colony(ctx, t, tripPolicy, "policy", "apply", "-f", "-", "--endpoints", addr); err != nil || !strings.Contains(out, "inventory: applied") {
		t.Fatalf("policy apply = %q, %v", out, err)
	}
	if out := run("breaker", "ls"); strings.Contains(out, "inventory") {
		t.Errorf("breaker ls before any report lists a pair:\n%s", out)
	}

	// Two web instances report mostly failures to inventory.
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	report := func(instance string, successes, failures int64) *colonyv1.OutcomeReport {
		return &colonyv1.OutcomeReport{Caller: "web", Callee: "inventory", Instance: instance,
			Counts: &colonyv1.OutcomeCounts{Successes: successes, Failures: failures, TrailingFailures: failures}}
	}
	// Below minimumCalls: counted, not tripped.
	// web-1 timed its 4 calls (3 within 2 ms, 1 within 50 ms); web-2 did not.
	timed := report("web-1", 1, 3)
	timed.Counts.Latency = []int64{0, 3, 0, 0, 0, 1}
	if err := c.Report(ctx, timed, report("web-2", 1, 0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the live window in breaker ls", func() (bool, string) {
		out, err := colony(ctx, t, "", "breaker", "ls", "--endpoints", addr)
		return err == nil && strings.Contains(out, "60% of 5") && strings.Contains(out, "1/2") && strings.Contains(out, "CLOSED") &&
			strings.Contains(out, "P50/P99") && strings.Contains(out, "≤2ms/≤50ms"), out
	})
	out := run("breaker", "ls", "-o", "json")
	var lat []struct {
		LatencySamples, LatencyP50Ms, LatencyP99Ms int64
		Latency                                    []int64
	}
	if err := json.Unmarshal([]byte(out), &lat); err != nil || len(lat) != 1 || lat[0].LatencySamples != 4 || lat[0].LatencyP50Ms != 2 || lat[0].LatencyP99Ms != 50 || len(lat[0].Latency) != 6 {
		t.Errorf("breaker ls -o json: %v, want 4 latency samples, p50 2 ms, p99 50 ms, the histogram as numbers:\n%s", err, out)
	}
	mustContain(t, "breaker get live latency", run("breaker", "get", "web", "inventory"),
		"p50 ≤2ms, p99 ≤50ms (bucket upper bounds; 4 of 5 calls timed)")
	if err := c.Report(ctx, report("web-1", 4, 17), report("web-2", 9, 5)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web -> inventory to open", func() (bool, string) {
		out, err := colony(ctx, t, "", "breaker", "ls", "-o", "json", "--endpoints", addr)
		var sums []struct{ Caller, Callee, State string }
		if err != nil || json.Unmarshal([]byte(out), &sums) != nil {
			return false, out
		}
		return len(sums) == 1 && sums[0].Callee == "inventory" && sums[0].State == "OPEN", out
	})

	out = run("breaker", "ls")
	mustContain(t, "breaker ls", out, "CALLER", "FAILURE-RATE", "web", "inventory", "OPEN")
	if out := run("breaker", "ls", "--caller", "checkout"); strings.Contains(out, "inventory") {
		t.Errorf("breaker ls --caller checkout lists web's pair:\n%s", out)
	}

	// get explains why it tripped: 25 failures of 40 calls, both instances.
	out = run("breaker", "get", "web", "inventory")
	mustContain(t, "breaker get", out,
		"Breaker web -> inventory", "state:", "OPEN", "open until:",
		"Policy in force: version", "failure rate >= 50% (at least 10 calls)", "1 failing caller instance(s)",
		"Live window",
		"Why it is OPEN", "condition:", "failureRate", "40 (15 successes, 25 failures", "62%", "2 failing of 2 reporting",
		"History", "transition", "CLOSED->OPEN", "62% failures of 40 calls")
	var info struct {
		Record  breaker.PairRecord     `json:"record"`
		Policy  breaker.Policy         `json:"policy"`
		History []breaker.HistoryEntry `json:"history"`
	}
	if err := json.Unmarshal([]byte(run("breaker", "get", "web", "inventory", "-o", "json")), &info); err != nil {
		t.Fatalf("breaker get -o json: %v", err)
	}
	if info.Record.State != breaker.Open || info.Record.Evidence.Failures != 25 || info.Policy.OpenDuration != time.Hour ||
		len(info.History) == 0 || info.History[len(info.History)-1].To != breaker.Open {
		t.Errorf("breaker get -o json = %+v", info)
	}

	// Overrides need a reason, and keep it with who set it.
	err = runErr("breaker", "force-close", "web", "inventory")
	mustContain(t, "override without --reason", err.Error(), "--reason is required")
	out = run("breaker", "force-close", "web", "inventory", "--reason", "inventory fixed, verifying", "--by", "bob", "--for", "1h")
	mustContain(t, "force-close", out, "web -> inventory: CLOSED, generation", "force-closed by bob until")
	out = run("breaker", "clear", "web", "inventory", "--reason", "verified", "--by", "carol")
	mustContain(t, "clear", out, "web -> inventory: CLOSED", "no override")
	out = run("breaker", "force-open", "web", "inventory", "--reason", "maintenance window")
	mustContain(t, "force-open", out, "web -> inventory: OPEN", "force-open by ", "until cleared")
	out = run("breaker", "ls")
	mustContain(t, "breaker ls with an override", out, "force-open")

	out = run("breaker", "get", "web", "inventory")
	mustContain(t, "breaker get with an override", out,
		"override:", "force-open", "maintenance window", "until:", "cleared",
		"Why it is OPEN: the force-open override",
		"override", "CLOSED->CLOSED", "force-closed", "bob", "inventory fixed, verifying (until",
		"cleared", "carol", "verified")
	_, hist, _ := strings.Cut(out, "History")
	if i, j := strings.Index(hist, "CLOSED->OPEN"), strings.Index(hist, "maintenance window"); i < 0 || j < 0 || i > j {
		t.Errorf("history is not oldest first:\n%s", out)
	}
	out = run("breaker", "get", "web", "inventory", "--history", "1")
	if _, hist, _ := strings.Cut(out, "History"); strings.Contains(hist, "transition") || !strings.Contains(hist, "maintenance window") {
		t.Errorf("--history 1 did not keep only the newest entry:\n%s", out)
	}

	// Shadow: callers keep enforcing CLOSED; ls says what it would do.
	out = run("breaker", "shadow", "web", "inventory", "--reason", "trying the new policy")
	mustContain(t, "shadow", out, "web -> inventory: CLOSED", "shadow by", "shadow breaker CLOSED")
	mustContain(t, "breaker ls in shadow mode", run("breaker", "ls"), "shadow (would be CLOSED)")
	mustContain(t, "breaker get in shadow mode", run("breaker", "get", "web", "inventory"), "Shadow breaker")
	run("breaker", "clear", "web", "inventory")

	// Errors users hit.
	err = runErr("breaker", "clear", "web", "inventory")
	mustContain(t, "clearing no override", err.Error(), "no override to clear")
	err = runErr("breaker", "get", "web", "nothing")
	mustContain(t, "get of an unknown pair", err.Error(), "no breaker for web->nothing")
	err = runErr("breaker", "force-open", "web", "nothing", "--reason", "x")
	mustContain(t, "override of an unknown callee", err.Error(), "unknown callee")
	err = runErr("breaker", "force-open", "web", "inventory", "--reason", "x", "--for", "-1m")
	mustContain(t, "negative --for", err.Error(), "--for")
	if err := runErr("breaker", "get", "web", "inventory", "--history", "500"); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("--history 500: %v, want the server's invalid argument", err)
	}

	// rm: an override (or an OPEN pair) needs --force; then the pair is gone.
	run("breaker", "force-open", "web", "inventory", "--reason", "maintenance")
	err = runErr("breaker", "rm", "web", "inventory")
	mustContain(t, "rm of a pair with an override", err.Error(), "force-open override", "--force")
	out = run("breaker", "rm", "web", "inventory", "--force", "--reason", "inventory retired")
	mustContain(t, "rm --force", out, "web -> inventory: deleted (was OPEN, generation")
	if out := run("breaker", "ls"); strings.Contains(out, "inventory") {
		t.Errorf("breaker ls lists the deleted pair:\n%s", out)
	}
	err = runErr("breaker", "get", "web", "inventory")
	mustContain(t, "get of the deleted pair", err.Error(), "no breaker for web->inventory")
	err = runErr("breaker", "rm", "web", "inventory")
	mustContain(t, "rm of a deleted pair", err.Error(), "no breaker for web->inventory")
}

func TestAgoText(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "just now"},
		{192*time.Second + 300*time.Millisecond, "3m12s ago"},
		{-5 * time.Minute, "in 5m0s"},
		{50 * time.Hour, "2d2h ago"},
	} {
		if got := agoText(now, now.Add(-tt.d)); got != tt.want {
			t.Errorf("agoText(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// TestPrintBreakerInfoPolicyVersion (issue 13 item 11): breaker get printed
// the record's policyVersion (the version the engine last decided with, 0
// here) above the values of the policy in force (version 1).
func TestPrintBreakerInfoPolicyVersion(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pol := breaker.DefaultPolicy()
	pol.FailureRateThreshold = 0.25
	info := &client.BreakerInfo{
		Record: breaker.PairRecord{Caller: "checkout", Callee: "payments", PolicyVersion: 0,
			Record: breaker.Record{State: breaker.Closed, Generation: 1, Since: now.Add(-time.Minute)}},
		Policy: pol, PolicyVersion: 1, Live: breaker.Evidence{At: now},
	}
	var out strings.Builder
	if err := printBreakerInfo(&out, info, now); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "breaker get", out.String(), "Policy in force: version 1 of /colony/policies/payments", "25%")
	if strings.Contains(out.String(), "version 0") {
		t.Fatalf("breaker get shows the record's stale policy version:\n%s", out.String())
	}
	info.PolicyVersion = -1
	out.Reset()
	if err := printBreakerInfo(&out, info, now); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "breaker get", out.String(), "Policy in force: the default (payments has no policy of its own)")
}
