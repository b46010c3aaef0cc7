package kvcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/recipe"
)

// Environment variables `colony lock` sets for its command.
const (
	tokenEnv    = "COLONY_FENCING_TOKEN"
	lockPathEnv = "COLONY_LOCK_PATH"
)

// NewLockCmd returns `colony lock`: run a command while holding a named lock.
func NewLockCmd(f *cli.Flags) *cobra.Command {
	var (
		ttl  time.Duration
		wait time.Duration
		try  bool
	)
	cmd := &cobra.Command{
		Use:   "lock NAME [flags] -- COMMAND [ARGS...]",
		Short: "Run a command while holding a named lock",
		Long: `Take the lock NAME (waiting for the processes ahead of this one), run
COMMAND while holding it, release it when COMMAND exits, and exit with
COMMAND's status (128+N if a signal N ended it).

COMMAND gets the lock's fencing token in $` + tokenEnv + ` and its lock node
in $` + lockPathEnv + `. Tokens of one lock increase from holder to holder:
a resource that remembers the highest token it has seen and rejects lower ones
is safe from a holder that paused and lost the lock. A write to the znode tree
that checks the lock node exists in the same multi applies only while this
process holds the lock.

The lock lives as long as this process's coordinator session (--ttl): if the
session is lost while COMMAND runs (the coordinator was unreachable for a TTL,
or this process was paused), another process may take the lock, so COMMAND and
its process group are killed at once and colony exits with status 1.

COMMAND runs in its own process group; SIGINT and SIGTERM are forwarded to it.
On Linux it is also killed if colony itself dies. Ctrl-C while waiting gives up
the wait, leaving no trace in the lock.`,
		Example: `  colony lock nightly-billing -- ./bill.sh --all
  colony lock deploy --try -- ./deploy.sh       # fail at once if another deploy runs
  colony lock reindex --wait 5m --ttl 30s -- sh -c './reindex.sh --fence "$COLONY_FENCING_TOKEN"'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 || len(args) < 2 {
				return errors.New("want NAME -- COMMAND [ARGS...], with -- right after NAME")
			}
			return recipe.ValidateName(args[0])
		},
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if ttl <= 0 {
			return fmt.Errorf("--ttl: must be positive, got %v", ttl)
		}
		if wait < 0 {
			return fmt.Errorf("--wait: must not be negative, got %v", wait)
		}
		s, err := f.Connect(cmd)
		if err != nil {
			return err
		}
		defer s.Client.Close()
		l := &locker{Env: s, cmd: cmd, name: args[0], argv: args[1:], ttl: ttl, wait: wait, try: try}
		return l.run(cmd.Context())
	}
	fl := cmd.Flags()
	fl.DurationVar(&ttl, "ttl", 10*time.Second,
		"session TTL: how long the lock outlives this process if it dies or is cut off (the coordinator clamps it)")
	fl.DurationVar(&wait, "wait", 0, "give up if the lock is not taken within this time (0: wait until Ctrl-C)")
	fl.BoolVar(&try, "try", false, "give up at once if another process holds or waits for the lock")
	cmd.MarkFlagsMutuallyExclusive("wait", "try")
	return cmd
}

// locker is one run of `colony lock`.
type locker struct {
	*cli.Env
	cmd  *cobra.Command
	name string
	argv []string
	ttl  time.Duration
	wait time.Duration
	try  bool
}

func (l *locker) run(ctx context.Context) error {
	// Catch SIGINT and SIGTERM for the whole run: while waiting they end the
	// wait; once the command runs they are forwarded to it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	// Opening the session is where a cluster that is not there shows:
	// when every endpoint refuses, fail at once as every client command
	// does, rather than retry for --timeout.
	octx, cancel := context.WithTimeout(ctx, l.Flags.Timeout)
	host, _ := os.Hostname()
	var sess *client.Session
	err := cli.FailFast(octx, l.cmd, func(ctx context.Context) error {
		var err error
		sess, err = l.Client.OpenSession(ctx, l.ttl, fmt.Sprintf("colony lock %s on %s pid %d", l.name, host, os.Getpid()))
		return err
	})
	cancel()
	var refused *cli.RefusedError
	switch {
	case errors.As(err, &refused):
		return err // explained as every command's refusal is
	case err != nil:
		return fmt.Errorf("open session: %w", err)
	}
	defer func() {
		// Closing the session also releases the lock if Unlock could not.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.Flags.Timeout)
		defer cancel()
		_ = sess.Close(cctx)
	}()
	m, err := recipe.NewMutex(l.Client, sess, l.name)
	if err != nil {
		return err
	}

	g, err := l.acquire(ctx, m, sigs)
	if err != nil {
		return err
	}
	status, runErr := l.runCommand(ctx, g, sigs)

	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.Flags.Timeout)
	defer cancel()
	unlockErr := m.Unlock(uctx)
	switch {
	case runErr != nil:
		return runErr
	case errors.Is(unlockErr, recipe.ErrLost):
		// The command finished, but not (entirely) under the lock.
		return fmt.Errorf("the lock %q was lost before the command finished: %w", l.name, unlockErr)
	case unlockErr != nil:
		fmt.Fprintf(l.ErrOut, "colony lock: releasing %q: %v (it goes with the session)\n", l.name, unlockErr)
	}
	if status != 0 {
		return &cli.ExitStatus{Code: status}
	}
	return nil
}

// acquire takes the lock, giving up on --wait, --try, SIGINT or SIGTERM.
func (l *locker) acquire(ctx context.Context, m *recipe.Mutex, sigs <-chan os.Signal) (*recipe.Grant, error) {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if l.wait > 0 {
		var cancelTimeout context.CancelFunc
		wctx, cancelTimeout = context.WithTimeoutCause(wctx, l.wait,
			fmt.Errorf("lock %q not taken within --wait %v", l.name, l.wait))
		defer cancelTimeout()
	}
	type result struct {
		g   *recipe.Grant
		err error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		if l.try {
			r.g, r.err = m.TryLock(wctx)
		} else {
			r.g, r.err = m.Lock(wctx)
		}
		res <- r
	}()
	var r result
	for done := false; !done; {
		select {
		case sig := <-sigs:
			cancel(fmt.Errorf("%v while waiting for the lock %q", sig, l.name))
		case r = <-res:
			done = true
		}
	}
	switch {
	case errors.Is(r.err, recipe.ErrLocked):
		return nil, fmt.Errorf("lock %q is held by another process (--try)", l.name)
	case r.err != nil && context.Cause(wctx) != nil && ctx.Err() == nil:
		return nil, context.Cause(wctx) // --wait, or a signal: say which
	}
	return r.g, r.err
}

// runCommand runs the command while g holds and returns its exit status. If
// the grant ends first, it kills the command and returns an error.
func (l *locker) runCommand(ctx context.Context, g *recipe.Grant, sigs <-chan os.Signal) (int, error) {
	cmd := exec.Command(l.argv[0], l.argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = l.In, l.Out, l.ErrOut
	cmd.Env = append(os.Environ(), tokenEnv+"="+g.Token().String(), lockPathEnv+"="+g.Path())
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(l.ErrOut, "colony lock: %v\n", err)
		return 127, nil // as a shell does for a command it cannot run
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	for {
		select {
		case err := <-waited:
			return exitCode(cmd.ProcessState, err), nil
		case sig := <-sigs:
			_ = signalGroup(cmd.Process, sig)
		case <-g.Done():
			// Another process may hold the lock already: stop at once.
			_ = signalGroup(cmd.Process, syscall.SIGKILL)
			<-waited
			return 0, fmt.Errorf("lost the lock %q while the command ran (%w); killed the command", l.name, g.Err())
		case <-ctx.Done():
			_ = signalGroup(cmd.Process, syscall.SIGKILL)
			<-waited
			return 0, ctx.Err()
		}
	}
}

// exitCode is a finished command's exit status, as a shell reports it:
// 128+N when signal N ended it.
func exitCode(st *os.ProcessState, err error) int {
	if st == nil {
		return 1
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if code := st.ExitCode(); code >= 0 {
		return code
	}
	return 1
}
