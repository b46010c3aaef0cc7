// Package clustercmd holds colony's commands for operating the coordinator
// cluster itself: cluster (status, members, membership changes, leadership
// transfer, waiting until ready) and snapshot (save from a running node;
// status and restore, which work on files and need no cluster). Each
// New*Cmd builds one command group on the shared cli.Flags; main registers
// them.
package clustercmd
