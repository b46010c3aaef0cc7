//go:build unix

package framework

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFreePortsAreDistinct(t *testing.T) {
	ports, err := FreePorts("127.0.0.1", 8)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ports)
	if len(slices.Compact(ports)) != 8 {
		t.Fatalf("FreePorts(8) = %v, want 8 distinct ports", ports)
	}
}

func TestLogTailAndExcerpt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n1.log")
	if err := os.WriteFile(path, []byte("a\nb\nc\nd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n    int
		want string
	}{
		{n: 2, want: "c\nd"},
		{n: 10, want: "a\nb\nc\nd"},
	} {
		if got := LogTail(path, tc.n); got != tc.want {
			t.Errorf("LogTail(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	if got := LogTail(filepath.Join(t.TempDir(), "missing.log"), 3); !strings.HasPrefix(got, "(reading ") {
		t.Errorf("LogTail of a missing file = %q, want a note that it could not be read", got)
	}
	if got, want := Excerpt([]byte("x\ny\nz\n"), 2, 2), "y\nz"; got != want {
		t.Errorf("Excerpt = %q, want %q", got, want)
	}
}

func TestEventually(t *testing.T) {
	calls := 0
	err := Eventually(context.Background(), time.Millisecond, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Eventually = %v after %d calls, want nil after 3", err, calls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = Eventually(ctx, time.Millisecond, func() error { return errors.New("never") })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never") {
		t.Fatalf("Eventually past its deadline = %v, want the deadline and the last error", err)
	}
}

// A killed process is reported as exited, with its log's marker lines.
func TestProcessKill(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary:", err)
	}
	logPath := filepath.Join(t.TempDir(), "sleep.log")
	p, err := StartProcess(context.Background(), "framework", sleep, []string{"60"}, logPath)
	if err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("the process exited at once")
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if !p.WaitExit(ExitTimeout) {
		t.Fatalf("the process did not exit within %v of SIGKILL", ExitTimeout)
	}
	if got := p.Describe(); !strings.Contains(got, "killed") {
		t.Errorf("Describe() = %q, want it to say the process was killed", got)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("a second Kill = %v, want nil", err)
	}
	log := LogTail(logPath, 10)
	if !strings.Contains(log, "=== framework") || !strings.Contains(log, "process exited") {
		t.Errorf("log = %q, want the start and exit markers", log)
	}
}
