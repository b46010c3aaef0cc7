// Command colony is Colony's one binary: the coordinator server, the
// single-process dev mode, and the client commands operators use.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	if err := execute(context.Background(), newRootCmd()); err != nil {
		var st *exitStatus
		if errors.As(err, &st) { // a status passed on (colony lock's command's)
			os.Exit(st.code)
		}
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "colony",
		Short:         "Colony: shared circuit breakers and locks for microservices",
		Version:       currentVersion().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("colony {{.Version}}\n")
	root.AddCommand(newCoordinatorCmd(), newDevCmd(), newSidecarCmd(), newVersionCmd())
	addClientCommands(root)
	markUsageErrors(root)
	return root
}

// newLogger returns a text logger on stderr at the named level.
func newLogger(level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, errors.New("--log-level: want debug, info, warn or error, got " + level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})), nil
}
