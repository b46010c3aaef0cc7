package sidecar

// Load reports: the outcomes of xDS clients that run no Colony code (stock
// gRPC in any language), from the load reports (LRS, gRFC A27) they send
// to the sidecar's xDS server.
//
// Counted once per instance: a call is counted by exactly one source.
//   - A client whose xDS node carries the metadata "colony.guard": true
//     (xds.GuardNodeMetadataKey) links Colony's client library, which
//     reports its calls with latencies and status codes: its load reports
//     are ignored.
//   - An Envoy that streams access logs to the sidecar is counted from its
//     access logs (they carry latency and status): its load reports are
//     ignored while an access log stream from the same node id is open.
//   - Every other client is counted from its load reports.
//
// What such callers cannot express: LRS carries no latency, so their calls
// are never slow (a policy's slow-call rate sees none of them), and no
// status code, so a policy's classification of codes cannot apply: every
// error counts as a failure, every success as a success. Calls the breaker
// rejects (a route's fault abort) are not in the load at all. Calls through
// the probe gate (a HALF_OPEN holder's) are reported for the gate's
// cluster, not the callee's: the gate counts them, exactly (gate.go).

import (
	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/xds"
)

// onLoad handles one client's load report for one cluster. It runs on the
// client's LRS stream goroutine.
func (s *Sidecar) onLoad(ld xds.Load) {
	if ld.Guard {
		return // counted through the client library
	}
	if breaker.ValidateServiceName(ld.Cluster) != nil {
		return // not a callee's cluster
	}
	if ld.Envoy && s.accessLogging(ld.NodeID) {
		return // counted from its access logs
	}
	c := breaker.Counts{
		Successes: int64(min(ld.Succeeded, uint64(breaker.MaxCount))),
		Failures:  int64(min(ld.Errored, uint64(breaker.MaxCount))),
	}
	if c.Successes == 0 {
		c.TrailingFailures = c.Failures
	}
	if c.Calls() == 0 {
		return
	}
	if err := s.report(ld.Cluster, c, true); err != nil {
		s.log.Debug("load report outcomes dropped", "callee", ld.Cluster, "node", ld.NodeID, "err", err)
	}
}

// accessLogging reports whether an access log stream from node is open.
func (s *Sidecar) accessLogging(node string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alsNodes[node] > 0
}

// accessLogOpened records an open access log stream from node; the
// returned func records its end.
func (s *Sidecar) accessLogOpened(node string) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.alsNodes) >= maxAccessLogNodes && s.alsNodes[node] == 0 {
		return func() {}
	}
	s.alsNodes[node]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.alsNodes[node]--; s.alsNodes[node] <= 0 {
			delete(s.alsNodes, node)
		}
	}
}

// maxAccessLogNodes bounds the access log streams' nodes remembered (an
// Envoy beside each app: one or a few).
const maxAccessLogNodes = 1024
