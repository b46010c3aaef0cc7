// Package breakercmd holds colony's client commands for the shared circuit
// breakers: breaker (ls, get, overrides, rm, report and watch), policy
// (apply, get, rm) and demo (make the demo callee of `colony dev` fail or
// recover). They share the breaker-specific formatting of records, evidence
// and policies. Each New*Cmd builds one command group on the shared
// cli.Flags; main registers them.
package breakercmd
