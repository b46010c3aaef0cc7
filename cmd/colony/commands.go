package main

import (
	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/aclcmd"
	"github.com/colonymesh/colony/cmd/colony/internal/benchcmd"
	"github.com/colonymesh/colony/cmd/colony/internal/breakercmd"
	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/cmd/colony/internal/clustercmd"
	"github.com/colonymesh/colony/cmd/colony/internal/kvcmd"
)

// addClientCommands adds the operator commands that talk to a coordinator
// cluster: kv, cluster, session, breaker, policy, lock, elect, demo and
// snapshot (whose save alone is a client). They share one cli.Flags.
func addClientCommands(root *cobra.Command) {
	f := &cli.Flags{}
	for _, cmd := range []*cobra.Command{
		kvcmd.NewKVCmd(f), clustercmd.NewClusterCmd(f), kvcmd.NewSessionCmd(f),
		breakercmd.NewBreakerCmd(f), breakercmd.NewPolicyCmd(f), kvcmd.NewLockCmd(f),
		kvcmd.NewElectCmd(f), breakercmd.NewDemoCmd(f), aclcmd.NewACLCmd(f),
		benchcmd.NewBenchCmd(f),
	} {
		f.Register(cmd, cmd.PersistentFlags())
		root.AddCommand(cmd)
	}
	root.AddCommand(clustercmd.NewSnapshotCmd(f))
	cli.AddCompletions(root, f)
}
