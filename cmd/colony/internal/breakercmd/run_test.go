package breakercmd

import (
	"context"
	"testing"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/clitest"
)

// newTestRoot is a colony root command with this package's command groups.
func newTestRoot() *cobra.Command { return clitest.Root(NewBreakerCmd, NewPolicyCmd, NewDemoCmd) }

// colony runs the colony command line with args and returns its stdout.
func colony(ctx context.Context, t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errw syncBuffer
	return runColony(ctx, &out, &errw, stdin, args...)
}

// runColony runs the colony command line with args, stdin and the given
// stdout and stderr, and returns its stdout.
func runColony(ctx context.Context, out, errw *syncBuffer, stdin string, args ...string) (string, error) {
	return clitest.Run(ctx, newTestRoot(), out, errw, stdin, args...)
}

type syncBuffer = clitest.SyncBuffer

var (
	startTestCoordinator = clitest.StartCoordinator
	waitFor              = clitest.WaitFor
	eventually           = clitest.Eventually
	mustContain          = clitest.MustContain
)
