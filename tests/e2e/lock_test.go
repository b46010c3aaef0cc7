//go:build unix

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/recipe"
	"github.com/colonymesh/colony/tests/framework"
)

// The lock tests run `colony lock` processes against a 3-node cluster. Their
// commands are shell scripts that share files in a directory ($DIR):
//
//   - criticalSection is the work done under the lock: it takes a marker
//     directory with mkdir (which fails if another holder has it: an
//     overlap), appends "start TOKEN" to a log, increments a counter
//     file non-atomically, appends "end TOKEN", and removes the marker.
//   - holder scripts record their shell's pid (the leader of the command's
//     process group), token and lock path in an info file, then hold the
//     lock until the test lets them go or kills them.
const criticalSection = `
mkdir "$DIR/held" || { echo "overlap: another holder is in the critical section" >&2; exit 99; }
echo "start $COLONY_FENCING_TOKEN" >> "$DIR/log"
n=$(cat "$DIR/counter")
sleep 0.02
echo $((n + 1)) > "$DIR/counter"
echo "end $COLONY_FENCING_TOKEN" >> "$DIR/log"
rmdir "$DIR/held"
`

// recordInfo writes $INFO: pid token lock-path.
const recordInfo = `echo "$$ $COLONY_FENCING_TOKEN $COLONY_LOCK_PATH" > "$INFO.tmp" && mv "$INFO.tmp" "$INFO"
`

// lockTTL is the session TTL of the lock processes: the coordinator's
// default minimum.
const lockTTL = 2 * time.Second

// lockProc is one `colony lock` process.
type lockProc struct {
	name   string
	cmd    *exec.Cmd
	stderr string // path of its stderr
	info   string // path of the info file its command writes, if any
	done   chan struct{}
	err    error // Wait's result, set before done is closed
}

// startLock starts `colony lock lockName --ttl ttl -- sh -c script` with
// DIR set to dir and INFO to dir/<name>.info, its output in dir/<name>.out
// and .err. The process (its group, and its command's group) is killed and
// waited for when the test ends.
func startLock(t *testing.T, dir, name string, c *Cluster, from int, lockName string, ttl time.Duration, script string) *lockProc {
	t.Helper()
	p, err := tryStartLock(t, dir, name, c, from, lockName, ttl, script)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tryStartLock is startLock for goroutines other than the test's: it
// returns its error instead of failing the test.
func tryStartLock(t *testing.T, dir, name string, c *Cluster, from int, lockName string, ttl time.Duration, script string) (*lockProc, error) {
	p := &lockProc{
		name:   name,
		stderr: filepath.Join(dir, name+".err"),
		info:   filepath.Join(dir, name+".info"),
		done:   make(chan struct{}),
	}
	out, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	errf, err := os.Create(p.stderr)
	if err != nil {
		return nil, err
	}
	defer errf.Close()
	args := append([]string{"lock", lockName, "--ttl", ttl.String(),
		"--endpoints", strings.Join(endpointsFrom(c, from), ",")}, c.CLIArgs()...)
	p.cmd = exec.Command(colonyBin, append(args, "--", "sh", "-c", script)...)
	p.cmd.Stdout, p.cmd.Stderr = out, errf
	p.cmd.SysProcAttr = framework.SysProcAttr()
	p.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "COLONY_") })
	p.cmd.Env = append(p.cmd.Env, "DIR="+dir, "INFO="+p.info)
	if _, ok := os.LookupEnv("GORACE"); !ok {
		p.cmd.Env = append(p.cmd.Env, "GORACE=atexit_sleep_ms=0") // see runCLI
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.cleanup(t) })
	return p, nil
}

// cleanup kills the process and its command if they still run, waits for
// it, and reports its stderr if the test failed.
func (p *lockProc) cleanup(t *testing.T) {
	if !p.exited() {
		// While colony runs and has not been waited for, its command's pid
		// (the leader of the command's group) is not reused.
		if pid, _, _, ok := p.readInfo(); ok {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		t.Errorf("%s did not exit within %v of SIGKILL", p.name, exitTimeout)
	}
	stderr := p.stderrText()
	if t.Failed() {
		t.Logf("--- %s (%s): stderr ---\n%s", p.name, framework.ExitDescription(p.cmd, p.err), stderr)
	}
	if strings.Contains(stderr, "WARNING: DATA RACE") {
		t.Errorf("%s reported a data race:\n%s", p.name, stderr)
	}
}

func (p *lockProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// readInfo reads what a holder script recorded: its pid (the leader of its
// process group), token and lock path.
func (p *lockProc) readInfo() (pid int, token recipe.Token, path string, ok bool) {
	b, err := os.ReadFile(p.info)
	if err != nil {
		return 0, 0, "", false
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return 0, 0, "", false
	}
	pid, err = strconv.Atoi(f[0])
	if err != nil {
		return 0, 0, "", false
	}
	token, err = recipe.ParseToken(f[1])
	if err != nil {
		return 0, 0, "", false
	}
	return pid, token, f[2], true
}

// waitInfo waits until the holder script has recorded its info.
func (p *lockProc) waitInfo(t *testing.T, ctx context.Context) (pid int, token recipe.Token, path string) {
	t.Helper()
	for {
		if pid, token, path, ok := p.readInfo(); ok {
			return pid, token, path
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: its command did not start: %v", p.name, ctx.Err())
		case <-p.done:
			b, _ := os.ReadFile(p.stderr)
			t.Fatalf("%s exited (%v) before its command started; stderr: %s", p.name, framework.ExitDescription(p.cmd, p.err), b)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wait waits for the process to exit and returns its error (nil: status 0).
func (p *lockProc) wait(t *testing.T, ctx context.Context) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		t.Fatalf("%s has not exited: %v", p.name, ctx.Err())
		return nil
	}
}

func (p *lockProc) stderrText() string {
	b, _ := os.ReadFile(p.stderr)
	return string(b)
}

// lockDir prepares a directory for the scripts: a counter at 0, an empty log.
func lockDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "counter"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkHolds reads the critical sections' log and checks that they never
// overlapped (every start is followed by its own end), that there are want
// of them, and that their tokens strictly increase. It returns the tokens.
func checkHolds(t *testing.T, dir string, want int) []recipe.Token {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var tokens []recipe.Token
	var open string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		what, tok, _ := strings.Cut(l, " ")
		switch {
		case what == "start" && open == "":
			open = tok
			token, err := recipe.ParseToken(tok)
			if err != nil {
				t.Fatalf("log line %q: %v", l, err)
			}
			if n := len(tokens); n > 0 && token <= tokens[n-1] {
				t.Errorf("holder with token %d came after one with token %d", token, tokens[n-1])
			}
			tokens = append(tokens, token)
		case what == "end" && tok == open:
			open = ""
		default:
			t.Fatalf("critical sections overlapped: %q while %q held; log:\n%s", l, open, b)
		}
	}
	if open != "" {
		t.Errorf("the holder with token %s did not finish", open)
	}
	if len(tokens) != want {
		t.Errorf("%d critical sections, want %d; log:\n%s", len(tokens), want, b)
	}
	c, err := os.ReadFile(filepath.Join(dir, "counter"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(c)); got != strconv.Itoa(want) {
		t.Errorf("counter is %s after %d critical sections", got, want)
	}
	return tokens
}

// endpointsFrom returns the cluster's gRPC addresses, starting at node i.
func endpointsFrom(c *Cluster, i int) []string {
	var eps []string
	for j := range c.Nodes {
		eps = append(eps, c.Nodes[(i+j)%len(c.Nodes)].GRPCAddr)
	}
	return eps
}

// newLockClient returns a Go client of the whole cluster, closed at cleanup.
func newLockClient(t *testing.T, c *Cluster) *client.Client {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Endpoints = endpointsFrom(c, 0)
	cfg.RequestTimeout = time.Second
	cfg.TLS = c.ClientTLS()
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// lockNodes returns the names of the nodes under the lock's directory.
func lockNodes(t *testing.T, ctx context.Context, cl *client.Client, lockName string) []string {
	t.Helper()
	names, _, err := cl.Children(ctx, "/colony/locks/"+lockName)
	if err != nil && !errors.Is(err, client.ErrNoNode) {
		t.Fatalf("listing the lock's nodes: %v", err)
	}
	return names
}

// waitLockNodes waits until the lock's directory has n nodes.
func waitLockNodes(t *testing.T, ctx context.Context, cl *client.Client, lockName string, n int) {
	t.Helper()
	err := framework.Eventually(ctx, 20*time.Millisecond, func() error {
		if got := lockNodes(t, ctx, cl, lockName); len(got) != n {
			return fmt.Errorf("have %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for %d contenders of %s: %v", n, lockName, err)
	}
}

// TestLockMutualExclusion: contenders in separate `colony lock` processes,
// each going through different coordinator nodes, run a non-atomic
// read-increment-write of a counter file. No two critical sections overlap,
// the counter is exact, and the fencing tokens strictly increase.
func TestLockMutualExclusion(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 90*time.Second)
	c.WaitLeader(t, ctx)
	dir := lockDir(t)
	const (
		workers = 6
		rounds  = 3
	)
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				p, err := tryStartLock(t, dir, fmt.Sprintf("w%d-r%d", w, r), c, w, "counter", lockTTL, criticalSection)
				if err != nil {
					errs <- err
					return
				}
				select {
				case <-p.done:
				case <-ctx.Done():
					errs <- fmt.Errorf("%s did not finish: %w", p.name, ctx.Err())
					return
				}
				if p.err != nil {
					errs <- fmt.Errorf("%s: %v; stderr: %s", p.name, p.err, p.stderrText())
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	tokens := checkHolds(t, dir, workers*rounds)
	t.Logf("%d holders through %d processes in turn; tokens %d..%d", len(tokens), workers*rounds, tokens[0], tokens[len(tokens)-1])
}

// TestLockHolderKilledOrFrozen: a holder that dies (SIGKILL) or freezes
// (SIGSTOP) keeps the lock until its session expires, not longer and not
// less; then the next contender takes it with a greater token, and a
// guarded write in the old holder's name is rejected. A frozen holder that
// resumes finds its session lost, kills its command and exits non-zero.
func TestLockHolderKilledOrFrozen(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 90*time.Second)
	c.WaitLeader(t, ctx)
	cl := newLockClient(t, c)
	if _, _, err := cl.Create(ctx, "/fenced", []byte("initial")); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name   string
		freeze bool
	}{
		{"SIGKILL", false},
		{"SIGSTOP", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := lockDir(t)
			lockName := "victim-" + strings.ToLower(tt.name)
			holder := startLock(t, dir, "holder", c, 0, lockName, lockTTL, recordInfo+"exec sleep 60")
			childPid, oldToken, oldPath := holder.waitInfo(t, ctx)
			// The holder writes, guarded by its lock node: accepted.
			if _, err := recipe.GuardedMulti(ctx, cl, oldPath, client.SetOp("/fenced", []byte("holder"), client.AnyVersion)); err != nil {
				t.Fatalf("guarded write while the holder holds: %v", err)
			}
			next := startLock(t, dir, "next", c, 1, lockName, lockTTL, recordInfo)
			waitLockNodes(t, ctx, cl, lockName, 2)

			stoppedAt := time.Now()
			if tt.freeze {
				// The whole holder: colony and its command.
				for _, pg := range []int{holder.cmd.Process.Pid, childPid} {
					if err := syscall.Kill(-pg, syscall.SIGSTOP); err != nil {
						t.Fatal(err)
					}
				}
				t.Cleanup(func() {
					_ = syscall.Kill(-holder.cmd.Process.Pid, syscall.SIGCONT)
					_ = syscall.Kill(-childPid, syscall.SIGCONT)
				})
			} else {
				if err := syscall.Kill(-holder.cmd.Process.Pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}

			// Not before the session can have expired. Keep-alives go every
			// TTL/3, so the last acknowledged one was sent at most TTL/3
			// (and a round trip) before the stop: the session lives at
			// least until about 2/3 TTL after it. Check a little less.
			notBefore := stoppedAt.Add(lockTTL / 2)
			var tookAt time.Time
			for {
				if _, _, _, ok := next.readInfo(); ok {
					tookAt = time.Now()
					break
				}
				if time.Since(stoppedAt) > lockTTL+15*time.Second {
					t.Fatalf("the next contender did not take the lock within %v of the holder's %s (nodes: %v)",
						time.Since(stoppedAt).Round(time.Millisecond), tt.name, lockNodes(t, ctx, cl, lockName))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if tookAt.Before(notBefore) {
				t.Errorf("the next contender took the lock %v after the holder's %s, before its %v session could expire",
					tookAt.Sub(stoppedAt), tt.name, lockTTL)
			}
			t.Logf("the next contender took the lock %v after the holder's %s (TTL %v)", tookAt.Sub(stoppedAt).Round(time.Millisecond), tt.name, lockTTL)
			_, newToken, newPath, _ := next.readInfo()
			if newToken <= oldToken {
				t.Errorf("next holder's token %d is not above the old holder's %d", newToken, oldToken)
			}
			if err := next.wait(t, ctx); err != nil {
				t.Errorf("next contender: %v; stderr: %s", err, next.stderrText())
			}

			// A write guarded by the old holder's lock node is rejected, and
			// so is its token by a resource that has seen the new one.
			_, err := recipe.GuardedMulti(ctx, cl, oldPath, client.SetOp("/fenced", []byte("stale holder"), client.AnyVersion))
			if !errors.Is(err, recipe.ErrNotHeld) {
				t.Errorf("guarded write with the old holder's lock node %s = %v, want ErrNotHeld", oldPath, err)
			}
			if data, _, err := cl.Get(ctx, "/fenced"); err != nil || string(data) != "holder" {
				t.Errorf("/fenced = %q, %v; want the holder's write only", data, err)
			}
			var fence recipe.Fence
			if err := fence.Admit(newToken); err != nil {
				t.Fatal(err)
			}
			if err := fence.Admit(oldToken); !errors.Is(err, recipe.ErrStaleToken) {
				t.Errorf("a fence that admitted %d admitted the old token %d: %v", newToken, oldToken, err)
			}
			if oldPath == newPath {
				t.Errorf("both holders had lock node %s", oldPath)
			}

			if tt.freeze {
				// Thaw: the holder finds its session lost, kills its command
				// and exits non-zero.
				// The command first: once thawed, colony lock may kill the
				// command's group at once (its session is gone), and then
				// that group no longer exists to be continued.
				for _, pg := range []int{childPid, holder.cmd.Process.Pid} {
					if err := syscall.Kill(-pg, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
						t.Fatal(err)
					}
				}
				err := holder.wait(t, ctx)
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 1 {
					t.Errorf("the thawed holder exited with %v, want status 1", err)
				}
				if stderr := holder.stderrText(); !strings.Contains(stderr, "lost the lock") || !strings.Contains(stderr, "killed the command") {
					t.Errorf("the thawed holder's stderr does not say it lost the lock and killed its command:\n%s", stderr)
				}
			} else if err := holder.wait(t, ctx); err == nil {
				t.Error("the killed holder exited with status 0")
			}
			// Its command is gone with it (killed by colony, or with colony
			// by the kernel: Pdeathsig, on Linux only).
			if !tt.freeze && runtime.GOOS != "linux" {
				_ = syscall.Kill(-childPid, syscall.SIGKILL)
			}
			deadline := time.Now().Add(exitTimeout)
			for syscall.Kill(childPid, 0) == nil {
				if time.Now().After(deadline) {
					t.Fatalf("the old holder's command (pid %d) still runs", childPid)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if left := lockNodes(t, ctx, cl, lockName); len(left) != 0 {
				t.Errorf("lock nodes left: %v", left)
			}
		})
	}
}

// TestLockAcrossLeaderChange: while one process holds a lock and three
// wait for it, each talking to a different node, the coordinator's leader
// is killed. Nobody takes the lock while it is held, and once the holder
// lets go every waiter gets it in turn: no double grant, no lost waiter.
func TestLockAcrossLeaderChange(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 90*time.Second)
	leader := c.WaitLeader(t, ctx)
	cl := newLockClient(t, c)
	dir := lockDir(t)
	// A TTL that outlasts an election and the clients' failover.
	const ttl = 5 * time.Second
	leaderIdx := slices.Index(c.Nodes, leader)

	// The holder goes through the leader, and waits (at most 60s) for the
	// test to let it go before its critical section.
	holder := startLock(t, dir, "holder", c, leaderIdx, "failover", ttl,
		recordInfo+`i=0; while [ ! -e "$DIR/release" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
`+criticalSection)
	holder.waitInfo(t, ctx)
	var waiters []*lockProc
	for i := range 3 {
		// The first waiter talks to the leader too, the others to followers.
		p := startLock(t, dir, fmt.Sprintf("waiter%d", i), c, leaderIdx+i, "failover", ttl, criticalSection)
		waiters = append(waiters, p)
		waitLockNodes(t, ctx, cl, "failover", 2+i) // queue them in order
	}

	killedAt := time.Now()
	leader.Kill(t)
	newLeader := c.WaitLeader(t, ctx)
	t.Logf("new leader %s after %v", newLeader.ID, time.Since(killedAt).Round(time.Millisecond))
	// Past the election, and long enough for any wrong grant to show.
	time.Sleep(time.Second)
	if nodes := lockNodes(t, ctx, cl, "failover"); len(nodes) != 4 {
		t.Fatalf("after the leader change the lock has contenders %v, want the holder and 3 waiters", nodes)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "log")); len(b) != 0 {
		t.Fatalf("critical sections ran while the holder held the lock:\n%s", b)
	}
	for _, p := range append([]*lockProc{holder}, waiters...) {
		if p.exited() {
			t.Fatalf("%s exited during the leader change: %v; stderr: %s", p.name, p.err, p.stderrText())
		}
	}

	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]*lockProc{holder}, waiters...) {
		if err := p.wait(t, ctx); err != nil {
			t.Errorf("%s: %v; stderr: %s", p.name, err, p.stderrText())
		}
	}
	tokens := checkHolds(t, dir, 4)
	t.Logf("4 holders in turn across the leader change; tokens %v", tokens)
}

// TestLockSignals: SIGINT to a waiting `colony lock` ends its wait and
// leaves nothing in the lock; SIGTERM to a holding one reaches its command,
// whose exit status colony passes on, and the lock is released.
func TestLockSignals(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 60*time.Second)
	c.WaitLeader(t, ctx)
	cl := newLockClient(t, c)
	dir := lockDir(t)

	holder := startLock(t, dir, "holder", c, 0, "signals", lockTTL,
		`trap 'echo TERM > "$DIR/term"; exit 7' TERM
`+recordInfo+`i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done`)
	holder.waitInfo(t, ctx)
	waiter := startLock(t, dir, "waiter", c, 1, "signals", lockTTL, "true")
	waitLockNodes(t, ctx, cl, "signals", 2)

	if err := waiter.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := waiter.wait(t, ctx); !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(waiter.stderrText(), "interrupt while waiting") {
		t.Errorf("waiter after SIGINT: %v, stderr %q; want status 1 saying it was interrupted", err, waiter.stderrText())
	}
	if nodes := lockNodes(t, ctx, cl, "signals"); len(nodes) != 1 {
		t.Errorf("lock nodes after the waiter was interrupted: %v, want the holder's only", nodes)
	}

	if err := holder.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := holder.wait(t, ctx); !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("holder after SIGTERM: %v, want its command's status 7", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "term")); err != nil {
		t.Errorf("the holder's command did not get SIGTERM: %v", err)
	}
	if nodes := lockNodes(t, ctx, cl, "signals"); len(nodes) != 0 {
		t.Errorf("lock nodes after the holder exited: %v", nodes)
	}
}
