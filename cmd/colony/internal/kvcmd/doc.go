// Package kvcmd holds colony's client commands for the coordination
// primitives: kv (znodes), session, lock (run a command under a named lock,
// fenced by a token) and elect (leader election). Each New*Cmd builds one
// command group on the shared cli.Flags; main registers them.
package kvcmd
