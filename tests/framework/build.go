//go:build unix

package framework

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

// BinaryEnv names a prebuilt colony binary for RunSuite to use instead of
// building one.
const BinaryEnv = "COLONY_E2E_BINARY"

// RunSuite is the body of a process-level suite's TestMain: it sets *bin to
// the colony binary the tests run (BinaryEnv, or ./cmd/colony built into a
// temporary directory, with -race when the tests run with it, so the
// servers' races fail the run), runs the tests, and fails the run if a
// goroutine outlives them. suite names the suite in its messages.
func RunSuite(m *testing.M, suite string, bin *string) int {
	*bin = os.Getenv(BinaryEnv)
	if *bin == "" {
		dir, err := os.MkdirTemp("", "colony-"+suite+"-bin-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", suite, err)
			return 1
		}
		defer os.RemoveAll(dir)
		*bin = filepath.Join(dir, "colony")
		start := time.Now()
		if err := BuildColony(*bin, RaceEnabled); err != nil {
			fmt.Fprintf(os.Stderr, "%s: building the colony binary: %v\n", suite, err)
			return 1
		}
		if testingVerbose() {
			fmt.Fprintf(os.Stderr, "%s: built %s in %v (race=%v)\n", suite, *bin, time.Since(start).Round(time.Millisecond), RaceEnabled)
		}
	}
	code := m.Run()
	if code == 0 {
		// Every process wait, proxy, stream and connection a test started
		// must be gone when it ends.
		if err := goleak.Find(
			goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "%s: leaked goroutines: %v\n", suite, err)
			code = 1
		}
	}
	return code
}

// testingVerbose is testing.Verbose, usable before m.Run has parsed flags.
func testingVerbose() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.v" || a == "-test.v=true" || a == "-test.v=test2json" {
			return true
		}
	}
	return false
}

// BuildColony builds ./cmd/colony of the module the tests belong to into
// out, with -race if race is set.
func BuildColony(out string, race bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if s := strings.TrimSpace(string(gomod)); s == "" || s == os.DevNull {
		// Not in module mode: the tests run in tests/<suite>.
		if root, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
			return err
		}
	}
	args := []string{"build"}
	if race {
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
