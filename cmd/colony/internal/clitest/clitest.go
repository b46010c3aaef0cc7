// Package clitest runs colony's commands in tests, in process: it builds a
// root command like the binary's from the command groups under test, runs
// a command line through cli.Execute with captured streams, and starts a
// coordinator to run it against. The command packages and main share it,
// so that each group's tests live beside the group.
package clitest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// SyncBuffer is a bytes.Buffer safe to read while a command writes to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Root returns a root command named colony, set up as the binary's is, with
// the client command groups that groups make (in that order) sharing one
// cli.Flags, as the binary registers them.
func Root(groups ...func(*cli.Flags) *cobra.Command) *cobra.Command {
	root := &cobra.Command{Use: "colony", SilenceUsage: true, SilenceErrors: true}
	f := &cli.Flags{}
	for _, g := range groups {
		cmd := g(f)
		f.Register(cmd, cmd.PersistentFlags())
		root.AddCommand(cmd)
	}
	cli.AddCompletions(root, f)
	cli.MarkUsageErrors(root)
	return root
}

// Run runs root with args, stdin and the given stdout and stderr, through
// cli.Execute as the binary does, and returns its stdout.
func Run(ctx context.Context, root *cobra.Command, out, errw *SyncBuffer, stdin string, args ...string) (string, error) {
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(out)
	root.SetErr(errw)
	err := cli.Execute(ctx, root)
	return out.String(), err
}

// StartCoordinator starts a single-node coordinator and returns its address.
func StartCoordinator(t *testing.T) string {
	t.Helper()
	return coordinatortest.StartNode(t).Addr()
}

// FreeAddr returns a loopback address nobody listens on.
func FreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitFor polls cond until it holds. It fails the test if the command
// running in the background ends first (reporting how) or after a generous
// deadline.
func WaitFor(t *testing.T, what string, cond func() bool, done <-chan error, stderr *SyncBuffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		select {
		case err := <-done:
			t.Fatalf("command ended before %s: %v; stderr: %s", what, err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stderr: %s", what, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Eventually polls cond until it holds, failing the test after a generous
// deadline with what cond last said.
func Eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MustContain fails the test unless out contains every want.
func MustContain(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: missing %q in:\n%s", what, w, out)
		}
	}
}

// Colony is a package's test runner over its command groups: Run builds a
// fresh root for each command line, as each run of the binary does.
type Colony struct {
	groups []func(*cli.Flags) *cobra.Command
}

// NewColony returns the runner of a root with groups (see Root).
func NewColony(groups ...func(*cli.Flags) *cobra.Command) Colony {
	return Colony{groups: groups}
}

// Root is a fresh root command with the runner's groups.
func (c Colony) Root() *cobra.Command { return Root(c.groups...) }

// Run runs a command line and returns its stdout.
func (c Colony) Run(ctx context.Context, t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errw SyncBuffer
	return c.RunWith(ctx, &out, &errw, stdin, args...)
}

// RunWith runs a command line with the given stdout and stderr.
func (c Colony) RunWith(ctx context.Context, out, errw *SyncBuffer, stdin string, args ...string) (string, error) {
	return Run(ctx, c.Root(), out, errw, stdin, args...)
}

// Main runs a package's tests with $TMPDIR set to a fresh directory, and
// returns their exit code: client commands given no certificate use the
// certificates of a `colony dev` found under $TMPDIR, and one that ran on
// this machine must not turn the tests' plaintext commands into TLS ones.
//
//	func TestMain(m *testing.M) { os.Exit(clitest.Main(m)) }
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "colony-clitest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Setenv("TMPDIR", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
