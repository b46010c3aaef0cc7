//go:build unix

package e2e

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
		dir, err := os.MkdirTemp("", "colony-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "colony")
		start := time.Now()
		if err := buildColony(bin); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: building the colony binary:", err)
			return 1
		}
		if testingVerbose() {
			fmt.Fprintf(os.Stderr, "e2e: built %s in %v (race=%v)\n", bin, time.Since(start).Round(time.Millisecond), raceEnabled)
		}
	}
	colonyBin = bin
	code := m.Run()
	if code == 0 {
		// Every process wait, stream and connection a test started must be
		// gone when it ends.
		if err := goleak.Find(
			goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: leaked goroutines:", err)
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

// buildColony builds ./cmd/colony of the module these tests belong to.
func buildColony(out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		root, err = filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
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
