package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/colonymesh/colony/cmd/colony/internal/clitest"
	"github.com/colonymesh/colony/coordinator/client"
)

// colony runs the colony command line with args and returns its stdout.
func colony(ctx context.Context, t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errw syncBuffer
	return runColony(ctx, &out, &errw, stdin, args...)
}

// runColony runs the colony command line with args, stdin and the given
// stdout and stderr, and returns its stdout.
func runColony(ctx context.Context, out, errw *syncBuffer, stdin string, args ...string) (string, error) {
	return clitest.Run(ctx, newRootCmd(), out, errw, stdin, args...)
}

type syncBuffer = clitest.SyncBuffer

var (
	startTestCoordinator = clitest.StartCoordinator
	waitFor              = clitest.WaitFor
	mustContain          = clitest.MustContain
	eventually           = clitest.Eventually
	freeAddr             = clitest.FreeAddr
)

// examplePolicies is the documented example file, which must stay valid.
const examplePolicies = "../../examples/policies.yaml"

func TestSessionAndClusterCommands(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()

	sctx, cancel := context.WithCancel(ctx)
	var sout, serr syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := runColony(sctx, &sout, &serr, "", "session", "open", "--ttl", "2s", "--name", "cli-test", "--endpoints", addr)
		done <- err
	}()
	waitFor(t, "the session id", func() bool { return strings.HasSuffix(sout.String(), "\n") }, done, &serr)
	id := strings.TrimSpace(sout.String())
	out, err := colony(ctx, t, "", "session", "ls", "--endpoints", addr)
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "cli-test") {
		t.Errorf("session ls = %q, %v; want session %s", out, err, id)
	}
	if _, err := colony(ctx, t, "", "kv", "create", "/eph", "--session", id, "--endpoints", addr); err != nil {
		t.Fatal(err)
	}
	cancel() // Ctrl-C: the session is closed and its ephemeral goes
	if err := <-done; err != nil {
		t.Errorf("session open ended with %v", err)
	}
	if _, err := colony(ctx, t, "", "kv", "stat", "/eph", "--endpoints", addr); err == nil {
		t.Error("the ephemeral outlived its closed session")
	}
	if _, err := colony(ctx, t, "", "session", "close", id, "--endpoints", addr); !errors.Is(err, client.ErrSessionExpired) {
		t.Errorf("closing a closed session: %v, want ErrSessionExpired", err)
	}

	out, err = colony(ctx, t, "", "cluster", "status", "--endpoints", addr)
	if err != nil || !strings.Contains(out, "leader:") || !strings.Contains(out, "n1") {
		t.Errorf("cluster status = %q, %v", out, err)
	}
	out, err = colony(ctx, t, "", "cluster", "members", "-o", "json", "--endpoints", addr)
	var members []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &members) != nil || len(members) != 1 || members[0]["id"] != "n1" {
		t.Errorf("cluster members -o json = %q, %v", out, err)
	}
	if _, err := colony(ctx, t, "", "cluster", "status", "-o", "yaml", "--endpoints", addr); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Errorf("bad --output: %v", err)
	}
}
