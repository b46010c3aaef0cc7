// Package ztree is the coordinator's replicated state machine: the znode tree,
// sessions, the request-id deduplication table and the member registry. The
// coordinator's raft FSM feeds it committed log entries with Apply, serves
// reads from a View, and hands WriteSnapshot / Restore to raft.
//
// Everything is deterministic: applying the same entries to two trees gives
// the same results, events and snapshot bytes. The tree never reads a clock
// (time is the leader's time_ms carried by each command, never going back),
// never iterates a Go map, and evicts deduplication entries from log data
// only. Malformed commands yield error results, never panics.
//
// All state lives in immutable radix trees (go-immutable-radix) held by one
// immutable state value behind an atomic pointer. Apply builds the next
// state from the previous one, command by command, and publishes it once per
// batch; View and snapshot capture just grab the pointer, so readers never
// block the writer and see none or all of a batch. A failed multi simply
// discards the transaction it was building.
//
// Errors match the sentinels (ErrNoNode, ErrBadVersion, ...) with errors.Is;
// Code maps them to gRPC codes, and ToOpError / FromOpError carry them
// through command results. ValidateOps and ValidatePath are the checks the
// API edge runs before proposing; the state machine runs the same checks
// (but not the size limits, which are node configuration).
//
// See DESIGN.md in this directory for the key layouts and the rules the
// state machine follows.
package ztree
