package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/coordinator/snapshotfile"
)

// clientErr is what the client returns for a status: it matches kind.
type clientErr struct {
	st   *status.Status
	kind error
}

func (e *clientErr) Error() string              { return e.st.Message() }
func (e *clientErr) Unwrap() error              { return e.kind }
func (e *clientErr) GRPCStatus() *status.Status { return e.st }

func TestExplain(t *testing.T) {
	refused := &clientErr{status.New(codes.Unavailable,
		`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7400: connect: connection refused"`), client.ErrUnavailable}
	tests := []struct {
		name    string
		args    []string // the command line that failed
		err     error
		want    []string // in the explained error's text
		matches error
	}{
		{
			name: "no coordinator",
			args: []string{"kv", "get", "/a", "--endpoints", "127.0.0.1:7400,127.0.0.1:7410"},
			err:  fmt.Errorf("%w (gave up after 7 attempts)", refused),
			want: []string{"no coordinator reachable at 127.0.0.1:7400, 127.0.0.1:7410: dial tcp 127.0.0.1:7400: connect: connection refused",
				"colony dev", "--endpoints", "$COLONY_ENDPOINTS"},
			matches: client.ErrUnavailable,
		},
		{
			name:    "no leader",
			args:    []string{"kv", "set", "/a", "b"},
			err:     &clientErr{status.New(codes.Unavailable, "coordinator: no leader known"), client.ErrUnavailable},
			want:    []string{"the coordinator at 127.0.0.1:7400 cannot serve the request: coordinator: no leader known", "colony cluster status", "colony cluster wait"},
			matches: client.ErrUnavailable,
		},
		{
			name: "a dial that failed in this process",
			args: []string{"kv", "get", "/a"},
			err: fmt.Errorf("%w: %w", client.ErrUnavailable, &net.OpError{Op: "dial", Net: "tcp",
				Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7400}, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}),
			want:    []string{"no coordinator reachable at 127.0.0.1:7400: dial tcp 127.0.0.1:7400: connect: connection refused", "colony dev"},
			matches: syscall.ECONNREFUSED,
		},
		{
			name:    "a name that does not resolve",
			args:    []string{"kv", "get", "/a", "--endpoints", "coord.invalid:7400"},
			err:     fmt.Errorf("%w: %w", client.ErrUnavailable, &net.DNSError{Err: "no such host", Name: "coord.invalid", IsNotFound: true}),
			want:    []string{"no coordinator reachable at coord.invalid:7400: lookup coord.invalid: no such host", "colony dev"},
			matches: client.ErrUnavailable,
		},
		{
			name:    "gRPC's resolver found no address",
			args:    []string{"kv", "get", "/a", "--endpoints", "coord.invalid:7400"},
			err:     &clientErr{status.New(codes.Unavailable, `name resolver error: produced zero addresses`), client.ErrUnavailable},
			want:    []string{"no coordinator reachable at coord.invalid:7400: name resolver error: produced zero addresses"},
			matches: client.ErrUnavailable,
		},
		{
			name:    "a connection that broke",
			args:    []string{"kv", "get", "/a"},
			err:     &clientErr{status.New(codes.Unavailable, "transport is closing"), client.ErrUnavailable},
			want:    []string{"no coordinator reachable at 127.0.0.1:7400: transport is closing", "colony dev"},
			matches: client.ErrUnavailable,
		},
		{
			name: "a bare gRPC status, from snapshot save",
			args: []string{"snapshot", "save", "f"},
			err:  refused.st.Err(),
			want: []string{"no coordinator reachable at 127.0.0.1:7400"},
		},
		{
			name:    "unknown callee",
			args:    []string{"breaker", "report", "checkout", "nope", "--instance", "c1"},
			err:     &clientErr{status.New(codes.NotFound, `reports[0].callee: unknown callee "nope": no policy ...`), client.ErrNotFound},
			want:    []string{`unknown callee "nope"`, "colony policy apply -f FILE", "colony breaker ls"},
			matches: client.ErrNotFound,
		},
		{
			name:    "no such pair",
			args:    []string{"breaker", "get", "checkout", "payments"},
			err:     &clientErr{status.New(codes.NotFound, "no breaker for checkout->payments"), client.ErrNotFound},
			want:    []string{"no breaker for checkout->payments", "`colony breaker ls` lists the pairs"},
			matches: client.ErrNotFound,
		},
		{
			name: "no policy to remove",
			args: []string{"policy", "rm", "payments"},
			err:  &clientErr{status.New(codes.NotFound, "callee payments has no policy (it uses the default)"), client.ErrNotFound},
			want: []string{"colony policy get CALLEE"},
		},
		{
			name:    "no znode",
			args:    []string{"kv", "get", "/app/x"},
			err:     &clientErr{status.New(codes.NotFound, "node /app/x does not exist"), client.ErrNoNode},
			want:    []string{"node /app/x does not exist", "`colony kv ls /app`"},
			matches: client.ErrNoNode,
		},
		{
			name: "session gone",
			args: []string{"session", "close", "0x2a"},
			err:  &clientErr{status.New(codes.NotFound, "session 0x2a not found"), client.ErrSessionExpired},
			want: []string{"colony session ls"},
		},
		{
			name:    "timeout",
			args:    []string{"cluster", "status", "--timeout", "2s"},
			err:     fmt.Errorf("status: %w", errors.Join(errors.New("attempt"), context.DeadlineExceeded)),
			want:    []string{"no answer from 127.0.0.1:7400 within --timeout 2s", "give a slow cluster a longer --timeout"},
			matches: context.DeadlineExceeded,
		},
		{
			name:    "corrupt snapshot",
			args:    []string{"snapshot", "status", "f"},
			err:     fmt.Errorf("%w: f: checksum mismatch", snapshotfile.ErrCorrupt),
			want:    []string{"checksum mismatch", "colony snapshot save FILE"},
			matches: snapshotfile.ErrCorrupt,
		},
		{
			name: "data dir in use",
			args: []string{"snapshot", "restore", "f", "--data-dir", "d", "--id", "n1"},
			err:  fmt.Errorf("%w: d holds raft.db", snapshotfile.ErrDataDirNotEmpty),
			want: []string{"a new directory"},
		},
		{
			name: "an error with nothing to add",
			args: []string{"kv", "set", "/a", "b"},
			err:  errors.New("version mismatch"),
			want: []string{"version mismatch"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			cmd, rest, err := root.Find(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Fatal(err)
			}
			got := cli.Explain(cmd, tt.err)
			for _, w := range tt.want {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("explained error lacks %q:\n%s", w, got)
				}
			}
			if tt.matches != nil && !errors.Is(got, tt.matches) {
				t.Errorf("explained error no longer matches %v", tt.matches)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("explained error no longer matches the original")
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"breaker", "get", "checkout"}, []string{"accepts 2 arg(s), received 1", "Usage: colony breaker get CALLER CALLEE", "See 'colony breaker get --help'"}},
		{[]string{"kv", "get", "/a", "--timeout", "5"}, []string{`invalid argument "5" for "--timeout" flag`, "want a duration like 500ms", "Usage: colony kv get PATH"}},
		{[]string{"breaker", "get", "a", "b", "--history", "many"}, []string{"--history", "want a whole number"}},
		{[]string{"kv", "get", "/a", "--no-such-flag"}, []string{"unknown flag: --no-such-flag", "See 'colony kv get --help'"}},
		{[]string{"kv", "get", "/a", "-o", "yaml"}, []string{`--output: want table or json, got "yaml"`}},
		{[]string{"kv", "watch", "/a", "--kind", "all"}, []string{"--kind: want data, children, exists or persistent"}},
		// A typo below the top level fails like one at the top, and
		// etcdctl's words point to ours.
		{[]string{"breaker", "lsit"}, []string{`unknown command "lsit" for "colony breaker"`, "colony breaker ls"}},
		{[]string{"kv", "put", "/a", "x"}, []string{`unknown command "put" for "colony kv"`, "colony kv create", "colony kv set"}},
		{[]string{"kv", "del", "/a"}, []string{`unknown command "del" for "colony kv"`, "colony kv rm"}},
		{[]string{"cluster", "member", "list"}, []string{`unknown command "member"`, "colony cluster members"}},
		{[]string{"put", "/a", "x"}, []string{`unknown command "put" for "colony"`, "colony kv create"}},
		{[]string{"snapshot", "nosuch"}, []string{`unknown command "nosuch" for "colony snapshot"`, "See 'colony snapshot --help'"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := colony(ctx, t, "", append(tt.args, "--endpoints", freeAddr(t))...)
			if err == nil {
				t.Fatal("succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%s", w, err)
				}
			}
		})
	}
}

// TestGroupWithoutSubcommandPrintsHelp: a command group alone is a request
// for its help, and succeeds.
func TestGroupWithoutSubcommandPrintsHelp(t *testing.T) {
	for _, group := range []string{"kv", "breaker", "cluster"} {
		out, err := colony(t.Context(), t, "", group)
		if err != nil || !strings.Contains(out, "colony "+group+" [command]") {
			t.Errorf("colony %s = %q, %v; want its help", group, out, err)
		}
	}
}

// TestRefusedConnectionsFailAtOnce: when every endpoint refuses, the
// command ends with the refusal (not after retrying for --timeout), naming
// each endpoint; colony cluster wait, meant to wait for nodes to come up,
// keeps waiting.
func TestRefusedConnectionsFailAtOnce(t *testing.T) {
	ctx := t.Context()
	a, b := freeAddr(t), freeAddr(t)
	_, err := colony(ctx, t, "", "kv", "get", "/a", "--endpoints", a+","+b, "--timeout", "1h")
	var refused *cli.RefusedError
	if !errors.As(err, &refused) || !errors.Is(err, client.ErrUnavailable) ||
		!strings.Contains(err.Error(), "no coordinator reachable at "+a+", "+b) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("every endpoint refused: %v; want a RefusedError naming %s and %s", err, a, b)
	}

	_, err = colony(ctx, t, "", "cluster", "wait", "--endpoints", a, "--timeout", "200ms")
	if errors.As(err, &refused) || err == nil || !strings.Contains(err.Error(), "not ready after 200ms") {
		t.Errorf("cluster wait on a refusing endpoint: %v; want it to wait out --timeout", err)
	}

	// One endpoint up is enough to go on.
	addr := startTestCoordinator(t)
	if _, err := colony(ctx, t, "", "kv", "ls", "/", "--endpoints", a+","+addr); err != nil {
		t.Errorf("one refusing endpoint and one up: %v", err)
	}
}

// refusalArgs are command lines for the client commands whose --help has
// no example, for TestEveryClientCommandFailsAtOnceOnRefusal.
var refusalArgs = [][]string{
	{"acl", "get"},
	{"cluster", "add", "n4", "127.0.0.1:7411", "127.0.0.1:7410"},
	{"cluster", "members"},
	{"cluster", "remove", "n4"},
	{"cluster", "status"},
	{"cluster", "transfer"},
	{"kv", "get", "/a"},
	{"kv", "ls", "/"},
	{"kv", "rm", "/a"},
	{"kv", "stat", "/a"},
	{"policy", "get", "payments"},
	{"policy", "rm", "payments"},
	{"session", "close", "0x2a"},
	{"session", "ls"},
	{"session", "open"},
}

// refusalNotRun are the client commands that do not end on a refused
// connection, and why.
var refusalNotRun = map[string]string{
	"colony cluster wait": "waits for nodes that are not up yet (TestRefusedConnectionsFailAtOnce)",
	"colony ui":           "a server: the dashboard serves, and shows the coordinators unreachable until they come",
}

// TestEveryClientCommandFailsAtOnceOnRefusal runs every client command
// (each example of its --help, or a line of refusalArgs) against an
// address where nothing listens, with a --timeout no test waits out: each
// must end with the refusal, as a RefusedError naming the address, rather
// than retry until --timeout. colony lock, which opens its session itself,
// is one of them.
func TestEveryClientCommandFailsAtOnceOnRefusal(t *testing.T) {
	writeExampleFiles(t)
	if err := os.WriteFile("rules.yaml", []byte("rules: []\n"), 0o644); err != nil { // acl get's, in TestHelpExamplesRun
		t.Fatal(err)
	}
	nobody := freeAddr(t)
	lines := map[string][][]string{} // by command path
	root := newRootCmd()
	for _, ex := range collectExamples(t) {
		switch {
		case !ex.online, refusalNotRun[ex.cmd] != "":
			continue
		case strings.Contains(ex.line, "|"), strings.Contains(ex.line, "$("), strings.Contains(ex.line, "--certs-dir"):
			continue // needs a shell, or a CA (TestHelpExamplesRun runs them)
		case strings.Contains(ex.line, " 10.0."):
			continue // names a machine elsewhere, which a test must not reach
		}
		lines[ex.cmd] = append(lines[ex.cmd], ex.args)
	}
	for _, args := range refusalArgs {
		found, _, err := root.Find(args)
		if err != nil {
			t.Fatalf("refusalArgs %q: %v", args, err)
		}
		lines[found.CommandPath()] = append(lines[found.CommandPath()], args)
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		online := c.Flags().Lookup("endpoints") != nil || c.InheritedFlags().Lookup("endpoints") != nil
		if !c.HasSubCommands() && online && refusalNotRun[c.CommandPath()] == "" && len(lines[c.CommandPath()]) == 0 {
			t.Errorf("%s has no example and no line in refusalArgs: add one", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)

	for _, cmd := range slices.Sorted(maps.Keys(lines)) {
		for _, line := range lines[cmd] {
			t.Run(strings.Join(line, " "), func(t *testing.T) {
				args := slices.Clone(line)
				flags := []string{"--endpoints", nobody, "--timeout", "1h"}
				if i := indexOf(args, "--"); i >= 0 {
					args = slices.Insert(args, i, flags...)
				} else {
					args = append(args, flags...)
				}
				// Bounds a command that does wait, so that it fails here
				// with its error rather than at the test binary's timeout.
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				var out, errw syncBuffer
				_, err := runColony(ctx, &out, &errw, "", args...)
				var refused *cli.RefusedError
				if !errors.As(err, &refused) || !strings.Contains(err.Error(), "no coordinator reachable at "+nobody) {
					t.Errorf("colony %s: %v; want the refusal naming %s", strings.Join(args, " "), err, nobody)
				}
			})
		}
	}
}

// TestEndpointsWithAScheme: etcdctl's http:// form is accepted; an address
// that is not host:port is refused by name, with no talk of quorum.
func TestEndpointsWithAScheme(t *testing.T) {
	ctx := t.Context()
	addr := startTestCoordinator(t)
	for _, ep := range []string{"http://" + addr, "https://" + addr + "/", "HTTP://" + addr} {
		if _, err := colony(ctx, t, "", "kv", "ls", "/", "--endpoints", ep); err != nil {
			t.Errorf("--endpoints %s: %v", ep, err)
		}
	}
	for _, ep := range []string{addr + ":1", "http://" + addr + "/v3", "localhost"} {
		_, err := colony(ctx, t, "", "kv", "ls", "/", "--endpoints", ep)
		if err == nil || !strings.Contains(err.Error(), "--endpoints: ") || !strings.Contains(err.Error(), "want host:port") ||
			strings.Contains(err.Error(), "quorum") {
			t.Errorf("--endpoints %s: %v; want an error naming the flag and host:port", ep, err)
		}
	}
}

// TestErrorsFromARealCluster checks the explained errors end to end.
func TestErrorsFromARealCluster(t *testing.T) {
	ctx := t.Context()
	nobody := freeAddr(t)
	_, err := colony(ctx, t, "", "kv", "get", "/a", "--endpoints", nobody, "--timeout", "300ms")
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "no coordinator reachable at "+nobody) ||
		!strings.Contains(err.Error(), "colony dev") {
		t.Errorf("no coordinator: %v", err)
	}

	addr := startTestCoordinator(t)
	_, err = colony(ctx, t, "", "breaker", "report", "checkout", "nope", "--instance", "c1", "--failures", "1", "--endpoints", addr)
	if !errors.Is(err, client.ErrNotFound) || !strings.Contains(err.Error(), "colony policy apply") {
		t.Errorf("report for an unknown callee: %v", err)
	}
	_, err = colony(ctx, t, "", "breaker", "force-open", "checkout", "nope", "--reason", "x", "--endpoints", addr)
	if !errors.Is(err, client.ErrNotFound) || !strings.Contains(err.Error(), "colony policy apply") {
		t.Errorf("override for an unknown callee: %v", err)
	}
	if _, err := colony(ctx, t, "", "policy", "apply", "-f", examplePolicies, "--endpoints", addr); err != nil {
		t.Fatal(err)
	}
	_, err = colony(ctx, t, "", "breaker", "get", "checkout", "payments", "--endpoints", addr)
	if !errors.Is(err, client.ErrNotFound) || !strings.Contains(err.Error(), "colony breaker ls") {
		t.Errorf("get of a pair nobody reported: %v", err)
	}
	_, err = colony(ctx, t, "", "snapshot", "status", filepath.Join(t.TempDir(), "none.snap"))
	if err == nil || !strings.Contains(err.Error(), "none.snap") {
		t.Errorf("status of a missing file: %v", err)
	}
}
