//go:build unix

package kvcmd

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/recipe"
)

func TestLockCommand(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()
	lock := func(args ...string) (stdout, stderr string, err error) {
		t.Helper()
		var out, errw syncBuffer
		_, err = runColony(ctx, &out, &errw, "", append([]string{"lock", "--endpoints", addr}, args...)...)
		return out.String(), errw.String(), err
	}

	t.Run("runs the command with the token and passes on its status", func(t *testing.T) {
		out, _, err := lock("job", "--", "sh", "-c", `echo "$COLONY_FENCING_TOKEN $COLONY_LOCK_PATH"; exit 3`)
		var st *cli.ExitStatus
		if !errors.As(err, &st) || st.Code != 3 {
			t.Fatalf("lock = %v, want exit status 3", err)
		}
		tok, path, _ := strings.Cut(strings.TrimSpace(out), " ")
		if _, err := recipe.ParseToken(tok); err != nil || !strings.HasPrefix(path, "/colony/locks/job/lock-") {
			t.Errorf("the command saw token %q and path %q", tok, path)
		}
		if out, _, err := lock("job", "--", "true"); err != nil || out != "" {
			t.Errorf("lock -- true = %q, %v; want no output and no error", out, err)
		}
	})
	t.Run("a signal's status", func(t *testing.T) {
		_, _, err := lock("job", "--", "sh", "-c", "kill -TERM $$")
		var st *cli.ExitStatus
		if !errors.As(err, &st) || st.Code != 128+15 {
			t.Fatalf("lock of a command killed by SIGTERM = %v, want exit status 143", err)
		}
	})
	t.Run("a command that does not exist", func(t *testing.T) {
		_, stderr, err := lock("job", "--", "/nonexistent/command")
		var st *cli.ExitStatus
		if !errors.As(err, &st) || st.Code != 127 || !strings.Contains(stderr, "/nonexistent/command") {
			t.Fatalf("lock of a missing command = %v (stderr %q), want exit status 127 naming it", err, stderr)
		}
	})
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{"job"}, "NAME -- COMMAND"},
		{"no dash", []string{"job", "true"}, "NAME -- COMMAND"},
		{"bad name", []string{"a/b", "--", "true"}, "byte 1"},
		{"bad ttl", []string{"job", "--ttl", "0s", "--", "true"}, "--ttl"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := lock(tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("lock %v = %v, want an error mentioning %q", tt.args, err, tt.want)
			}
		})
	}

	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.OpenSession(ctx, 10*time.Second, "test holder")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close(context.Background())
	m, err := recipe.NewMutex(c, sess, "held")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("try while held", func(t *testing.T) {
		if _, _, err := lock("held", "--try", "--", "true"); err == nil || !strings.Contains(err.Error(), "held by another") {
			t.Errorf("lock --try of a held lock = %v", err)
		}
	})
	t.Run("wait while held", func(t *testing.T) {
		if _, _, err := lock("held", "--wait", "100ms", "--", "true"); err == nil || !strings.Contains(err.Error(), "--wait 100ms") {
			t.Errorf("lock --wait of a held lock = %v", err)
		}
	})
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("session lost while the command runs", func(t *testing.T) {
		res := make(chan error, 1)
		var out, errw syncBuffer
		go func() {
			_, err := runColony(ctx, &out, &errw, "", "lock", "--endpoints", addr, "lost", "--", "sh", "-c", "echo started; exec sleep 30")
			res <- err
		}()
		waitFor(t, "the command to start", func() bool { return out.String() != "" }, res, &errw)
		sessions, err := c.ListSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		closed := false
		for _, s := range sessions {
			if strings.HasPrefix(s.GetName(), "colony lock lost ") {
				if err := c.CloseSession(ctx, s.GetSessionId()); err != nil {
					t.Fatal(err)
				}
				closed = true
			}
		}
		if !closed {
			t.Fatalf("no session of colony lock among %v", sessions)
		}
		select {
		case err := <-res:
			if err == nil || !strings.Contains(err.Error(), "lost the lock") || !strings.Contains(err.Error(), "killed the command") {
				t.Errorf("lock after its session was closed = %v, want an error saying it lost the lock and killed the command", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("colony lock still runs 20s after its session was closed")
		}
	})
}

func TestElectCommand(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	var obsOut, obsErr syncBuffer
	obsDone := make(chan error, 1)
	go func() {
		_, err := runColony(ctx, &obsOut, &obsErr, "", "elect", "prim", "--observe", "-o", "json", "--endpoints", addr)
		obsDone <- err
	}()
	waitFor(t, "the observer to report no leader", func() bool { return strings.Contains(obsOut.String(), `"leader":false`) }, obsDone, &obsErr)
	var candOut, candErr syncBuffer
	cctx, stopCandidate := context.WithCancel(ctx)
	candDone := make(chan error, 1)
	go func() {
		_, err := runColony(cctx, &candOut, &candErr, "", "elect", "prim", "--value", "replica-1", "--endpoints", addr)
		candDone <- err
	}()
	waitFor(t, "the candidate to lead", func() bool { return strings.Contains(candErr.String(), "leads prim") }, candDone, &candErr)
	waitFor(t, "the observer to see it", func() bool { return strings.Contains(obsOut.String(), "replica-1") }, obsDone, &obsErr)
	waitFor(t, "the candidate to print its leadership", func() bool { return strings.Contains(candOut.String(), "leader: replica-1 (token ") }, candDone, &candErr)
	stopCandidate()
	if err := <-candDone; err != nil {
		t.Fatalf("elect after Ctrl-C: %v", err)
	}
	waitFor(t, "the observer to see the resignation", func() bool { return strings.Count(obsOut.String(), `"leader":false`) == 2 }, obsDone, &obsErr)
	cancel()
	if err := <-obsDone; err != nil {
		t.Fatalf("elect --observe after Ctrl-C: %v", err)
	}

	var lines []leaderLine
	for _, l := range strings.Split(strings.TrimSpace(obsOut.String()), "\n") {
		var ll leaderLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("observer line %q: %v", l, err)
		}
		lines = append(lines, ll)
	}
	if len(lines) != 3 || lines[0].Leader || !lines[1].Leader || lines[1].Value != "replica-1" || lines[1].Token == 0 || lines[2].Leader {
		t.Errorf("observed %+v, want none, replica-1 with a token, none", lines)
	}
	if got := candOut.String(); !strings.HasPrefix(got, "leader: none\n") && !strings.HasPrefix(got, "leader: replica-1") {
		t.Errorf("the candidate printed %q, want the leaders it saw, ending with itself", got)
	}
}
