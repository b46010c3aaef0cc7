package deploy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoRoot is the module's root: the tests run in deploy/.
var repoRoot = func() string {
	d, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	return d
}()

var (
	binDir    string
	buildOnce sync.Once
	colonyBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "colony-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// colony returns a colony binary built from ../cmd/colony (once per run).
func colony(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not building cmd/colony to parse the command lines")
	}
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		colonyBin = filepath.Join(binDir, "colony")
		args := []string{"build"}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.CommandContext(ctx, "go", append(args, "-o", colonyBin, "./cmd/colony")...)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %w\n%s", strings.Join(cmd.Args[1:], " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return colonyBin
}

// colonyCommands are the colony subcommands a deployment runs.
var colonyCommands = map[string]bool{"coordinator": true, "sidecar": true, "dev": true}

// checkColonyArgs has the colony binary parse args (with --help appended, so
// it parses every flag and its value and then only prints the help): an
// unknown flag or a malformed value fails. Validation beyond the flag types
// (required flags, --protocol values) is the wiring checks' job.
func checkColonyArgs(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) == 0 || !colonyCommands[args[0]] {
		t.Errorf("%s: colony %q: want one of the subcommands %v first", where, args, colonyCommands)
		return
	}
	bin := colony(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(args[:len(args):len(args)], "--help")...).CombinedOutput()
	if err != nil {
		t.Errorf("%s: colony %s: the binary rejects the command line: %v\n%s", where, strings.Join(args, " "), err, firstLines(out, 5))
	}
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// cmdLine is a parsed command line: a subcommand and --name=value flags.
type cmdLine struct {
	sub   string
	flags map[string]string // a flag without "=value" is "true"
}

// parseCmdLine reads args as the deployment files write them: the
// subcommand, then only --name=value (or boolean --name) flags, each once.
func parseCmdLine(args []string) (cmdLine, error) {
	c := cmdLine{flags: map[string]string{}}
	if len(args) == 0 {
		return c, fmt.Errorf("empty command line")
	}
	c.sub = args[0]
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "--") {
			return c, fmt.Errorf("%q: want --name=value flags after the subcommand (one argument each)", a)
		}
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok {
			value = "true"
		}
		if _, dup := c.flags[name]; dup {
			return c, fmt.Errorf("--%s given twice", name)
		}
		c.flags[name] = value
	}
	return c, nil
}

// flagArgs parses Envoy's (or any) --name=value arguments that follow no
// subcommand.
func flagArgs(args []string) (map[string]string, error) {
	c, err := parseCmdLine(append([]string{""}, args...))
	return c.flags, err
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(NAME) with vars[NAME] as the kubelet does for the
// variables it knows, leaving the others as they are.
func expand(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// reporter is the part of *testing.T the wiring checks use, so that tests
// can also run them on broken inputs and see them fail (recorder).
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

var _ reporter = (*testing.T)(nil)

// recorder is a reporter that keeps the failures; its Fatalf stops the
// check with a panic that failures recovers.
type recorder struct{ errs []string }

type fatalStop struct{}

func (r *recorder) Helper()             {}
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}
func (r *recorder) Fatalf(format string, a ...any) {
	r.Errorf(format, a...)
	panic(fatalStop{})
}

// failures runs check with a recorder and returns what it reported.
func failures(check func(r reporter)) (errs []string) {
	r := &recorder{}
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(fatalStop); !ok {
				panic(p)
			}
		}
		errs = r.errs
	}()
	check(r)
	return r.errs
}

// port returns the port of host:port.
func port(t reporter, where, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s: %q is not host:port: %v", where, addr, err)
		return -1
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n > 65535 {
		t.Errorf("%s: %q: bad port", where, addr)
		return -1
	}
	return n
}

// host returns the host of host:port ("" for an invalid address, which port
// reports).
func host(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}

// splitList splits a comma-separated flag value.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// peerList parses --peers: id=raft-addr,...
func peerList(s string) (map[string]string, error) {
	peers := map[string]string{}
	for _, p := range splitList(s) {
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peers: want id=raft-addr, got %q", p)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("--peers: %q twice", id)
		}
		peers[id] = addr
	}
	return peers, nil
}

func TestParseCmdLine(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    map[string]string
		wantErr bool
	}{
		{[]string{"coordinator", "--id=n1", "--bootstrap"}, map[string]string{"id": "n1", "bootstrap": "true"}, false},
		{[]string{"sidecar", "--peers=a=b:1,c=d:2"}, map[string]string{"peers": "a=b:1,c=d:2"}, false},
		{[]string{"sidecar", "--id", "n1"}, nil, true},
		{[]string{"sidecar", "--id=a", "--id=b"}, nil, true},
	} {
		got, err := parseCmdLine(tc.args)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseCmdLine(%q): err %v, want error %v", tc.args, err, tc.wantErr)
			continue
		}
		if err == nil && fmt.Sprint(got.flags) != fmt.Sprint(tc.want) {
			t.Errorf("parseCmdLine(%q) = %v, want %v", tc.args, got.flags, tc.want)
		}
	}
	if got := expand("$(POD_NAME).x:$(PORT) $(OTHER)", map[string]string{"POD_NAME": "p-0", "PORT": "1"}); got != "p-0.x:1 $(OTHER)" {
		t.Errorf("expand = %q", got)
	}
}

// TestColonyArgsCheckRejects makes sure the binary-based check can fail: a
// misspelt flag and a malformed value are rejected.
func TestColonyArgsCheckRejects(t *testing.T) {
	bin := colony(t)
	for _, args := range [][]string{
		{"coordinator", "--id=n1", "--peer=n1=a:1"},
		{"coordinator", "--election-timeout=soon"},
		{"sidecar", "--service=a", "--listen-addr=127.0.0.1:1"},
	} {
		if err := exec.Command(bin, append(args, "--help")...).Run(); err == nil {
			t.Errorf("colony %q --help succeeded, want an error", args)
		}
	}
}
