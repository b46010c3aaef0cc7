//go:build unix

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/colonymesh/colony/tests/framework"
)

// readmeBlock is one indented command block of README.md.
type readmeBlock struct {
	section string   // the "## ..." heading it is under
	lines   []string // its lines, without the indentation
}

// readmeBlocks returns README.md's indented (four-space) blocks.
func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeBlock
	var section string
	var cur *readmeBlock
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "    ") && strings.TrimSpace(line) != "":
			if cur == nil {
				out = append(out, readmeBlock{section: section})
				cur = &out[len(out)-1]
			}
			cur.lines = append(cur.lines, strings.TrimPrefix(line, "    "))
		default:
			cur = nil
			if strings.HasPrefix(line, "## ") {
				section = strings.TrimPrefix(line, "## ")
			}
		}
	}
	return out
}

// findBlock returns the block of section whose first line starts with first.
func findBlock(t *testing.T, blocks []readmeBlock, section, first string) readmeBlock {
	t.Helper()
	for _, b := range blocks {
		if b.section == section && strings.HasPrefix(b.lines[0], first) {
			return b
		}
	}
	t.Fatalf("README.md has no block under %q starting %q: the README changed; update this test with it", section, first)
	return readmeBlock{}
}

// readmeShell runs README command lines as a user would in a terminal next
// to `colony dev`: `go run ./cmd/colony` is the colony binary under test,
// the working directory is the repository's root, COLONY_ENDPOINTS names
// dev's address (README: "On other ports: ... COLONY_ENDPOINTS") and
// TMPDIR is dev's, so the CLI finds dev's certificates as it would in
// $TMPDIR/colony-dev.
type readmeShell struct {
	t     *testing.T
	ctx   context.Context
	env   []string
	root  string
	bg    []*exec.Cmd
	bgOut []*lockedBuffer
}

// lockedBuffer is a background command's output, read while the command
// still writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// command returns line's command (the comment cut off) with the binary in
// place of `go run ./cmd/colony`, whether it ends in " &", and its comment.
func (s *readmeShell) command(line string) (cmd string, background bool, comment string) {
	cmd, comment, _ = strings.Cut(line, "   #")
	if strings.HasPrefix(strings.TrimSpace(line), "#") {
		return "", false, strings.TrimSpace(line)
	}
	cmd = strings.TrimSpace(cmd)
	if b, ok := strings.CutSuffix(cmd, " &"); ok {
		cmd, background = b, true
	}
	cmd = strings.ReplaceAll(cmd, "go run ./cmd/colony", `"$COLONY"`)
	return cmd, background, strings.TrimSpace(comment)
}

func (s *readmeShell) bash(cmd string) *exec.Cmd {
	c := exec.CommandContext(s.ctx, "bash", "-c", cmd)
	c.Dir, c.Env = s.root, s.env
	c.SysProcAttr = framework.SysProcAttr()
	return c
}

// run runs one README line: in the background if it ends in " &" (ended
// when the test ends), else to completion, failing the test unless it exits
// 0. It returns the line's output and comment.
func (s *readmeShell) run(line string) (out, comment string) {
	s.t.Helper()
	cmd, bg, comment := s.command(line)
	if cmd == "" {
		return "", comment
	}
	if bg {
		c := s.bash(cmd)
		buf := &lockedBuffer{}
		c.Stdout, c.Stderr = buf, buf
		if err := c.Start(); err != nil {
			s.t.Fatalf("README: %s: %v", line, err)
		}
		s.bg, s.bgOut = append(s.bg, c), append(s.bgOut, buf)
		return "", comment
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", "-c", cmd)
	c.Dir, c.Env = s.root, s.env
	c.SysProcAttr = framework.SysProcAttr()
	b, err := c.CombinedOutput()
	if err != nil {
		s.t.Fatalf("README: `%s` failed: %v\n%s", line, err, b)
	}
	return string(b), comment
}

// stop ends the background commands and returns what each printed.
func (s *readmeShell) stop() []string {
	var outs []string
	for i, c := range s.bg {
		if c.Process != nil {
			syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
			c.Wait()
		}
		outs = append(outs, s.bgOut[i].String())
	}
	s.bg, s.bgOut = nil, nil
	return outs
}

// state is the pair's breaker state, from `colony breaker get -o json`.
func (s *readmeShell) state(caller, callee string) string {
	c := s.bash(fmt.Sprintf(`"$COLONY" breaker get %s %s -o json`, caller, callee))
	b, err := c.Output()
	if err != nil {
		return ""
	}
	var v struct {
		Record struct {
			State string `json:"state"`
		} `json:"record"`
		State string `json:"state"`
	}
	if json.Unmarshal(b, &v) != nil {
		return ""
	}
	return cmpOr(v.Record.State, v.State)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// waitState waits until caller->callee is in state want, as the README's
// comment promises.
func (s *readmeShell) waitState(caller, callee, want, why string) {
	s.t.Helper()
	start := time.Now()
	last := ""
	for s.ctx.Err() == nil {
		if last = s.state(caller, callee); last == want {
			s.t.Logf("README: %s->%s %s %.1fs after %q", caller, callee, want, time.Since(start).Seconds(), why)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("README: %q: %s->%s never became %s (last %q)", why, caller, callee, want, last)
}

// TestREADMEAgainstDev runs the README's command blocks that are meant for
// a terminal next to `colony dev`, as written, against the colony binary's
// `colony dev` (with its demo mesh), in the README's order: the demo's trip,
// heal, switched-off breaker and cascade; the kv commands; and "Shared
// breakers from the CLI". Each command must exit 0, and where the README's
// comment says what happens next (OPEN ~5 s later, then CLOSED, frontend's
// pair trips too, CLOSED below the quorum, OPEN), the test waits for it.
// The blocks for other setups (a 3-node cluster, the standalone mesh) are
// exercised by TestCLIAgainstCluster and the mesh tests.
func TestREADMEAgainstDev(t *testing.T) {
	ctx := testContext(t, 240*time.Second)
	blocks := readmeBlocks(t)
	tmp := t.TempDir()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "COLONY_") || strings.HasPrefix(kv, "TMPDIR=") || strings.HasPrefix(kv, "OTEL_")
	})
	env = append(env, "TMPDIR="+tmp, "COLONY="+colonyBin)
	if _, ok := os.LookupEnv("GORACE"); !ok {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	sh := &readmeShell{t: t, ctx: ctx, env: env, root: root}
	t.Cleanup(func() { sh.stop() })

	// `go run ./cmd/colony dev`, on free ports (the README names the
	// flags), keeping its state where it would with this TMPDIR.
	grpcAddr, dev := startDev(t, filepath.Join(tmp, "colony-dev"))
	env = append(env, "COLONY_ENDPOINTS="+grpcAddr)
	sh.env = env
	// The demo is up once its callees can be told to fail.
	for sh.bash(`"$COLONY" demo heal payments`).Run() != nil {
		select {
		case <-ctx.Done():
			t.Fatalf("colony dev's demo never answered: %v", ctx.Err())
		case <-dev.Done():
			t.Fatalf("colony dev exited: %s", dev.Describe())
		case <-time.After(200 * time.Millisecond):
		}
	}

	// Quick start: trip, heal, breaker off and the cascade.
	demo := findBlock(t, blocks, "Quick start", "go run ./cmd/colony breaker watch &")
	expect := map[string]func(comment string){
		"OPEN ~5 s later": func(c string) { sh.waitState("checkout", "payments", "OPEN", c) },
		"then CLOSED":     func(c string) { sh.waitState("checkout", "payments", "CLOSED", c) },
		"trips too":       func(c string) { sh.waitState("frontend", "checkout", "OPEN", c) },
	}
	used := map[string]bool{}
	for _, line := range demo.lines {
		out, comment := sh.run(line)
		if strings.Contains(line, "breaker get checkout payments") && !strings.Contains(out, "OPEN") {
			t.Errorf("README: `%s` does not show OPEN:\n%s", line, out)
		}
		for k, f := range expect {
			if strings.Contains(comment, k) {
				f(comment)
				used[k] = true
			}
		}
	}
	for k := range expect {
		if !used[k] {
			t.Errorf("README's demo block no longer says %q: update this test with it", k)
		}
	}
	if outs := sh.stop(); !strings.Contains(outs[0], "OPEN") {
		t.Errorf("README: `breaker watch &` printed no OPEN during the demo:\n%s", outs[0])
	}

	// Quick start: the kv commands; the watch sees a set from "a third
	// terminal".
	kv := findBlock(t, blocks, "Quick start", "go run ./cmd/colony kv create /hello world")
	for _, line := range kv.lines {
		if strings.Contains(line, "kv watch") {
			line = strings.TrimSpace(strings.SplitN(line, "   #", 2)[0]) + " &"
		}
		sh.run(line)
	}
	time.Sleep(time.Second) // the watch registers
	sh.run("go run ./cmd/colony kv set /hello again")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(sh.bgOut[0].String(), "again") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if outs := sh.stop(); !strings.Contains(outs[0], "again") {
		t.Errorf("README: `kv watch /hello` did not print the set from another terminal:\n%s", outs[0])
	}

	// Shared breakers from the CLI, with the demo running.
	cli := findBlock(t, blocks, "Shared breakers from the CLI", "go run ./cmd/colony policy apply -f examples/policies.yaml")
	for _, line := range cli.lines {
		out, comment := sh.run(line)
		if !strings.Contains(line, "breaker ls") {
			continue
		}
		row := ""
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[0] == "orders" && f[1] == "payments" {
				row = l
			}
		}
		want := "CLOSED"
		if strings.HasPrefix(comment, "OPEN") {
			want = "OPEN"
		}
		if !strings.Contains(row, want) {
			t.Errorf("README: `%s` (%s): orders->payments is not %s:\n%s", line, comment, want, out)
		}
	}
	sh.stop()
}
