//go:build unix

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/framework"
)

// cliResult is the outcome of one colony CLI command.
type cliResult struct {
	stdout, stderr string
	err            error // nil on exit status 0
}

// runCLI runs the colony binary with args and waits for it, within ctx and
// a bound of its own.
func runCLI(ctx context.Context, args ...string) cliResult {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, colonyBin, args...)
	cmd.SysProcAttr = framework.SysProcAttr()
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "COLONY_") })
	if _, ok := os.LookupEnv("GORACE"); !ok {
		// A -race binary sleeps 1s at exit by default, to catch late race
		// reports; a CLI command has no goroutines left to report by then.
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// TestCLIAgainstCluster: the colony CLI's kv and cluster commands work
// against a real cluster through a follower.
func TestCLIAgainstCluster(t *testing.T) {
	ctx := testContext(t, 120*time.Second)
	if r := runCLI(ctx, "kv", "--help"); r.err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(r.stderr), "\n")
		t.Skipf("the colony binary has no kv command (`colony kv --help`: %v: %s): skipping the CLI test", r.err, first)
	}
	c := NewCluster(t, 3)
	leader := c.WaitLeader(t, ctx)
	f := c.Others(leader)[0]
	endpoints := append([]string{"--endpoints", f.GRPCAddr, "--timeout", "10s"}, c.CLIArgs()...)

	// cli runs a command against the follower and fails the test unless it
	// succeeds.
	cli := func(args ...string) string {
		t.Helper()
		r := runCLI(ctx, append(args, endpoints...)...)
		if strings.Contains(r.stderr, "WARNING: DATA RACE") {
			t.Errorf("colony %s reported a data race:\n%s", strings.Join(args, " "), r.stderr)
		}
		if r.err != nil {
			t.Fatalf("colony %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
		}
		return r.stdout
	}
	// cliFails runs a command that must fail, with every want in its stderr.
	cliFails := func(args []string, want ...string) {
		t.Helper()
		r := runCLI(ctx, append(args, endpoints...)...)
		var ee *exec.ExitError
		if !errors.As(r.err, &ee) {
			t.Fatalf("colony %s: %v, want a non-zero exit status\nstdout: %s", strings.Join(args, " "), r.err, r.stdout)
		}
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("colony %s: stderr %q does not mention %q", strings.Join(args, " "), r.stderr, w)
			}
		}
	}

	if got := cli("kv", "create", "/cli", "hello"); got != "/cli\n" {
		t.Errorf("kv create printed %q, want the path", got)
	}
	if got := cli("kv", "get", "/cli"); got != "hello" {
		t.Errorf("kv get printed %q, want the data", got)
	}
	if got := cli("kv", "set", "/cli", "world", "--version", "0"); !strings.Contains(got, "version:") {
		t.Errorf("kv set printed %q, want the new stat", got)
	}
	cliFails([]string{"kv", "set", "/cli", "stale", "--version", "0"}, "/cli", "current 1")
	cli("kv", "create", "/cli/b", "2")
	cli("kv", "create", "/cli/a", "1")
	if got := cli("kv", "ls", "/cli"); got != "a\nb\n" {
		t.Errorf("kv ls printed %q, want the sorted children", got)
	}
	cli("kv", "rm", "/cli/a")
	if got := cli("kv", "ls", "/cli"); got != "b\n" {
		t.Errorf("kv ls after rm printed %q", got)
	}
	cliFails([]string{"kv", "get", "/cli/a"}, "/cli/a", "does not exist")
	cliFails([]string{"kv", "create", "no-slash"}, "path")

	// JSON output: numbers are numbers, session ids are the CLI's hex.
	var got struct {
		Data []byte `json:"data"`
		Stat struct {
			Version        int64  `json:"version"`
			EphemeralOwner string `json:"ephemeralOwner"`
		} `json:"stat"`
		Header struct {
			MemberID string `json:"memberId"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(cli("kv", "get", "/cli", "--output", "json")), &got); err != nil {
		t.Fatalf("kv get --output json: %v", err)
	}
	if string(got.Data) != "world" || got.Stat.Version != 1 || got.Stat.EphemeralOwner != "0x0" || got.Header.MemberID != f.ID {
		t.Errorf("kv get --output json: data %q version %d owner %q served by %q; want %q version 1 owner 0x0 by %s",
			got.Data, got.Stat.Version, got.Stat.EphemeralOwner, got.Header.MemberID, "world", f.ID)
	}

	// What the CLI wrote is what every other node serves.
	for _, node := range c.Others(f) {
		r := mustRetry(t, ctx, "get /cli through "+node.ID, func(ctx context.Context) (*colonyv1.GetResponse, error) {
			return node.Tree().Get(ctx, &colonyv1.GetRequest{Path: "/cli"})
		})
		if string(r.Data) != "world" {
			t.Errorf("%s serves /cli as %q after the CLI set it to %q", node.ID, r.Data, "world")
		}
	}

	var st colonyv1.StatusResponse
	out := cli("cluster", "status", "--output", "json")
	if err := protojson.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("cluster status --output json does not parse: %v\n%s", err, out)
	}
	var ids []string
	for _, m := range st.Members {
		ids = append(ids, m.Id)
	}
	slices.Sort(ids)
	var want []string
	for _, n := range c.Nodes {
		want = append(want, n.ID)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("cluster status names members %v, want %v", ids, want)
	}
	if st.LeaderId == "" || st.Header.GetMemberId() != f.ID {
		t.Errorf("cluster status: leader %q, served by %q; want a leader, served by %s", st.LeaderId, st.Header.GetMemberId(), f.ID)
	}
}

// TestCLIFirstRunErrors: the binary's first-run mistakes fail with what to
// do: a coordinator without --id or --data-dir, a typo below the top level,
// and an endpoint nothing listens on (at once, not after --timeout).
func TestCLIFirstRunErrors(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"coordinator"}, []string{"--id and --data-dir are required", "colony dev"}},
		{[]string{"kv", "put", "/a", "b"}, []string{`unknown command "put" for "colony kv"`, "colony kv create"}},
		{[]string{"breaker", "lsit"}, []string{`unknown command "lsit"`, "colony breaker ls"}},
		{[]string{"kv", "get", "/a", "--endpoints", "http://127.0.0.1:1", "--timeout", "1h"}, []string{"no coordinator reachable at 127.0.0.1:1", "connection refused"}},
	} {
		r := runCLI(ctx, tt.args...)
		var ee *exec.ExitError
		if !errors.As(r.err, &ee) {
			t.Errorf("colony %s: %v, want a non-zero exit status", strings.Join(tt.args, " "), r.err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("colony %s: stderr %q lacks %q", strings.Join(tt.args, " "), r.stderr, w)
			}
		}
	}
}

// TestRemovedNodeExits: a node removed with cluster remove logs at ERROR
// that it was removed and what to do, and its process exits non-zero.
func TestRemovedNodeExits(t *testing.T) {
	ctx := testContext(t, 120*time.Second)
	c := NewCluster(t, 3)
	leader := c.WaitLeader(t, ctx)
	gone := c.Others(leader)[0]
	pid := gone.Pid()
	args := append([]string{"cluster", "remove", gone.ID, "--endpoints", leader.GRPCAddr, "--timeout", "10s"}, c.CLIArgs()...)
	if r := runCLI(ctx, args...); r.err != nil {
		t.Fatalf("cluster remove %s: %v\n%s", gone.ID, r.err, r.stderr)
	}
	for syscall.Kill(pid, 0) == nil { // the framework reaps it when it exits
		select {
		case <-ctx.Done():
			t.Fatalf("removed node %s (pid %d) still runs", gone.ID, pid)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Stop finds the process gone, with its status, and takes it off the
	// cluster's list of nodes expected to run.
	if err := gone.Node.Stop(); err == nil || !strings.Contains(err.Error(), "already exited") || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("removed node's exit: %v; want exit status 1", err)
	}
	log, err := os.ReadFile(gone.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "level=ERROR") || !strings.Contains(string(log), "was removed from the cluster") ||
		!strings.Contains(string(log), "--join") {
		t.Errorf("removed node's log does not say what happened and what to do:\n%s", log)
	}
}
