package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// example is one command line of a command's Example text.
type example struct {
	cmd   string // the command's path, "colony kv create"
	line  string // as printed
	args  []string
	stdin string // file named by "< FILE", read when run
	out   string // file named by "> FILE"

	online bool // a client command: it gets the test's --endpoints
}

// exampleOrder runs commands that make state before those that use it:
// policies before reports, reports before reads, removals last.
var exampleOrder = []string{
	"colony cert", "colony policy apply", "colony breaker report", "colony breaker force-open", "colony breaker clear",
	"colony kv create", "colony kv set", "colony acl get", "colony acl apply", "colony snapshot save", "colony snapshot status",
}

// serverCommands run servers: their examples are for real machines.
var serverCommands = map[string]bool{"colony sidecar": true, "colony coordinator": true, "colony dev": true}

// examplesNotRun are the examples a single in-process node cannot run, and
// why. Every other example in every --help must run as written.
var examplesNotRun = map[string]string{
	"colony cluster wait --members 3 --timeout 2m -o json":                                                                              "needs a cluster of three voters",
	"colony breaker rm checkout paymnts --reason \"misspelt callee\"":                                                                   "needs a pair made by a sidecar with a misspelt callee",
	"colony demo fail payments":                                                                                                         "needs colony dev's demo mesh",
	"colony snapshot restore backup.snap --data-dir /var/lib/colony-new --id n1 --raft-addr 10.0.0.1:7401":                              "writes under /var/lib",
	"colony demo heal payments":                                                                                                         "needs colony dev's demo mesh",
	"colony kv ls / --certs-dir certs # the one admin-, operator- or client- pair in certs":                                             "needs a coordinator with a certificate of that CA",
	"colony breaker ls --certs-dir certs":                                                                                               "needs a coordinator with a certificate of that CA",
	"colony snapshot save /backups/colony-$(date +%F).snap --endpoints 10.0.0.2:7400":                                                   "writes under /backups",
	"colony snapshot restore backup.snap --data-dir /var/lib/colony-restored --id n1 --raft-addr 10.0.0.1:7401":                         "writes under /var/lib",
	"colony snapshot restore backup.snap --data-dir /var/lib/colony --id n2 --peers n1=10.0.0.1:7401,n2=10.0.0.2:7401,n3=10.0.0.3:7401": "writes under /var/lib",
	"colony bench fleet --sidecars 500 --pid 4101 --pid 4102 --pid 4103":                                                                "simulates hundreds of sidecars for minutes (benchcmd's TestBenchFleetCommand runs a small fleet)",
	"colony bench fleet --sidecars 2000 --metrics-url https://10.0.0.5:7402/metrics -o json":                                            "simulates thousands of sidecars against 10.0.0.5",
	"kubectl get configmap colony-policies -o jsonpath='{.data.policies\\.yaml}' | colony policy apply -f -":                            "needs kubectl",
}

// TestHelpExamplesRun runs every example of every command's --help against
// a real coordinator, in a directory holding the files they name: an
// example is what a new user copies first.
func TestHelpExamplesRun(t *testing.T) {
	addr := startTestCoordinator(t)
	writeExampleFiles(t)
	all := collectExamples(t)
	rank := func(e example) int {
		for i, p := range exampleOrder {
			if strings.HasPrefix(e.cmd, p) {
				return i
			}
		}
		if strings.Contains(e.line, " rm ") || strings.Contains(e.line, " close ") {
			return len(exampleOrder) + 1 // removals last
		}
		return len(exampleOrder)
	}
	stable := func(es []example) {
		for i := 1; i < len(es); i++ {
			for j := i; j > 0 && rank(es[j]) < rank(es[j-1]); j-- {
				es[j], es[j-1] = es[j-1], es[j]
			}
		}
	}
	stable(all)
	if len(all) < 20 {
		t.Fatalf("found %d examples; the walk is broken", len(all))
	}

	ctx := t.Context()
	session := openSession(t, addr)
	for _, ex := range all {
		if why, skip := examplesNotRun[ex.line]; skip && why != "" {
			t.Logf("not run (%s): %s", why, ex.line)
			continue
		}
		t.Run(ex.line, func(t *testing.T) {
			args := make([]string, 0, len(ex.args)+2)
			for _, a := range ex.args {
				args = append(args, strings.ReplaceAll(a, "0x2a", session))
			}
			if ex.online {
				if i := indexOf(args, "--"); i >= 0 {
					args = append(append(append([]string{}, args[:i]...), "--endpoints", addr), args[i:]...)
				} else {
					args = append(args, "--endpoints", addr)
				}
			}
			stdin := ""
			if ex.stdin != "" {
				b, err := os.ReadFile(ex.stdin)
				if err != nil {
					t.Fatal(err)
				}
				stdin = string(b)
			}
			var out, errw syncBuffer
			err := runExample(ctx, isLongRunning(ex.cmd), &out, &errw, stdin, args)
			if err != nil {
				t.Fatalf("%s\nerror: %v\nstderr: %s", ex.line, err, errw.String())
			}
			if ex.out != "" {
				if err := os.WriteFile(ex.out, []byte(out.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// writeExampleFiles makes a temporary directory holding the files the
// examples name and makes it the working directory.
func writeExampleFiles(t *testing.T) {
	t.Helper()
	t.Chdir(t.TempDir())
	repoPolicies, err := os.ReadFile(filepath.Join(mustGetwdAtStart, examplePolicies))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"examples/policies.yaml": string(repoPolicies),
		"policies.yaml":          string(repoPolicies),
		"job.json":               `{"task": "reindex"}`,
		"orders.json":            `{"maxConnections": 300}`,
		"bill.sh":                "#!/bin/sh\nexit 0\n",
		"deploy.sh":              "#!/bin/sh\nexit 0\n",
		"reindex.sh":             "#!/bin/sh\n[ -n \"$2\" ]\n",
	}
	for name, body := range files {
		os.MkdirAll(filepath.Dir(name), 0o755)
		if err := os.WriteFile(name, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// collectExamples returns the example lines of every command's --help that
// run a colony command other than a server, in the order of the help tree.
func collectExamples(t *testing.T) []example {
	t.Helper()
	var all []example
	var walk func(c *cobra.Command)
	root := newRootCmd()
	walk = func(c *cobra.Command) {
		text := strings.ReplaceAll(c.Example, "\\\n", " ")
		for _, line := range strings.Split(text, "\n") {
			line = strings.Join(strings.Fields(line), " ")
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			ex := parseExample(t, line)
			found, _, err := root.Find(ex.args)
			if err != nil || serverCommands[found.CommandPath()] {
				continue // not a colony command line, or a server's
			}
			ex.cmd = found.CommandPath()
			ex.online = found.Flags().Lookup("endpoints") != nil || found.InheritedFlags().Lookup("endpoints") != nil
			all = append(all, ex)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return all
}

// mustGetwdAtStart is the package directory, where go test starts.
var mustGetwdAtStart, _ = os.Getwd()

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// isLongRunning: commands that run until Ctrl-C.
func isLongRunning(cmd string) bool {
	switch cmd {
	case "colony kv watch", "colony breaker watch", "colony session open", "colony elect":
		return true
	}
	return false
}

// runExample runs a command line; one that runs until Ctrl-C passes when it
// is still running (it took its arguments and connected) after a moment,
// and is then interrupted.
func runExample(ctx context.Context, long bool, out, errw *syncBuffer, stdin string, args []string) error {
	if !long {
		return errOrNil(runColony(ctx, out, errw, stdin, args...))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := runColony(ctx, out, errw, stdin, args...); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(500 * time.Millisecond):
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
}

func errOrNil(_ string, err error) error { return err }

// openSession opens a session that lives for the test and returns its id.
func openSession(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var out, errw syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := runColony(ctx, &out, &errw, "", "session", "open", "--ttl", "30s", "--endpoints", addr)
		done <- err
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the session id", func() bool { return strings.HasSuffix(out.String(), "\n") }, done, &errw)
	return strings.TrimSpace(out.String())
}

// parseExample splits an example line as sh would: quotes, a trailing
// comment, "< FILE" and "> FILE", and $(hostname).
func parseExample(t *testing.T, line string) example {
	ex := example{line: line}
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '#' && !inWord:
			i = len(line)
		case c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	host, _ := os.Hostname()
	for i := 0; i < len(words); i++ {
		w := strings.ReplaceAll(words[i], "$(hostname)", host)
		switch {
		case w == "<" && i+1 < len(words):
			ex.stdin = words[i+1]
			i++
		case w == ">" && i+1 < len(words):
			ex.out = words[i+1]
			i++
		default:
			ex.args = append(ex.args, w)
		}
	}
	if len(ex.args) > 0 && ex.args[0] == "colony" {
		ex.args = ex.args[1:]
	}
	return ex
}
