//go:build unix

package robustness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// colonyBin is the colony binary the tests run, set by TestMain.
var colonyBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	bin := os.Getenv("COLONY_E2E_BINARY")
	if bin == "" {
		dir, err := os.MkdirTemp("", "colony-robustness-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "robustness:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "colony")
		if err := buildColony(bin); err != nil {
			fmt.Fprintln(os.Stderr, "robustness: building the colony binary:", err)
			return 1
		}
	}
	colonyBin = bin
	code := m.Run()
	if code == 0 {
		// Every process wait, proxy, stream and connection a test started
		// must be gone when it ends.
		if err := goleak.Find(
			goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "robustness: leaked goroutines:", err)
			code = 1
		}
	}
	return code
}

// buildColony builds ./cmd/colony of the module these tests belong to, with
// -race when the tests run with it (so the servers' races fail the run).
func buildColony(out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if s := strings.TrimSpace(string(gomod)); s == "" || s == os.DevNull {
		if root, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
			return err
		}
	}
	args := []string{"build"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "-o", out, "./cmd/colony")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), root, err, b)
		}
		return fmt.Errorf("go %s (in %s): %w", strings.Join(args, " "), root, err)
	}
	return nil
}
