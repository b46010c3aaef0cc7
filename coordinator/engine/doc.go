// Package engine is the coordinator leader's breaker engine: it keeps a
// breaker.Breaker per caller -> callee pair in memory, feeds it the outcome
// reports callers send (soft state, never logged), evaluates the callees'
// policies, and writes only what changes (transitions, probe assignments,
// overrides, policies, deletions) into the replicated tree.
//
// The engine lives for one leadership term. It knows the node that runs it
// only through Host: a read view of the applied tree (internal/ztree) and a
// way to commit a transaction through the log and wait until it is applied.
// Its limits, logger, metrics and tracer come in Config. Tests run it on an
// in-memory ztree, without raft.
//
//	e := engine.New(host, engine.Config{Logger: log, Metrics: m, Tracer: tr})
//	if err := e.Start(ctx); err != nil { ... } // load policies and records
//	go e.Run(ctx)                              // evaluate and write until ctx ends
//	err := e.Report(ctx, time.Now(), reports)
//
// Its errors, and those of the input checks (ValidateReports,
// ParseOverride, ResolvePolicies, ...), match the sentinels in errors.go;
// Code maps them to gRPC codes at the API edge. DESIGN.md beside this file
// explains the decisions.
package engine
