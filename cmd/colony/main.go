// Command colony is Colony's one binary: the coordinator server, the
// single-process dev mode, and the client commands operators use.
//
// This package holds the server commands (coordinator, dev, sidecar, the
// dev UI and demo mesh, version) and builds the root command. The client
// command groups live in internal/kvcmd, internal/clustercmd and
// internal/breakercmd, on what they share in internal/cli (see DESIGN.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/colonymesh/colony/cmd/colony/internal/certcmd"
	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/spf13/cobra"
)

func main() {
	if err := cli.Execute(context.Background(), newRootCmd()); err != nil {
		var st *cli.ExitStatus
		if errors.As(err, &st) { // a status passed on (colony lock's command's)
			os.Exit(st.Code)
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
	root.AddCommand(newCoordinatorCmd(), newDevCmd(), newSidecarCmd(), newVersionCmd(), newUICmd(), certcmd.NewCertCmd())
	addClientCommands(root)
	cli.MarkUsageErrors(root)
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
