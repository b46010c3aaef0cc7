// Package telemetry sets up Colony's OpenTelemetry tracing and Prometheus
// metrics the same way for every command, and names the spans, attributes
// and metric namespace the coordinator and the sidecar share.
//
// Tracing: TracingFromEnv builds a tracer provider from the standard
// OTEL_EXPORTER_OTLP_* variables (OTLP over gRPC, batched), with the
// resource attributes service.name and service.instance.id; when no
// endpoint is configured it returns a no-op provider and nothing leaves the
// process. ServerOption and DialOption instrument gRPC with otelgrpc and
// W3C trace context. Tracing.ForService gives another role that runs in
// the same process (colony dev's demo sidecars) a provider of its own
// service name and instance over the same exporter.
//
// One breaker transition is one chain of spans, across processes:
//
//	SpanSidecarReport (sidecar: the outcome counts it sends)
//	  -> colony.v1.Breakers/Report (otelgrpc: client, then server span)
//	       -> SpanReport (node receiving Breakers.Report)
//	            -> SpanIngest (leader: the reports reach the engine)
//	                 -> SpanDecide (leader: the evaluation that changes the record)
//	                      -> SpanApply (leader: the write through the raft log, until applied)
//	                           -> SpanWatchDeliver (each sidecar: the record change arrives)
//	                                -> SpanXDSPush (routes sent to one xDS client, until it answers)
//	                                     -> SpanXDSAck (that client's ACK)
//
// A decision on reports is the child of the newest one and links the others
// of its window, up to 31 (the rest are counted); a decision on the
// leader's timer (OPEN to HALF_OPEN, for one) starts a trace of its own,
// linked to the previous record's. The coordinator stores SpanApply's
// context in the record it writes (breaker.PairRecord.Traceparent); a
// sidecar starts SpanWatchDeliver with ContextWithTraceparent (as a child)
// so the whole path, from "failures observed" to "enforced on this caller",
// is one trace.
//
// Metrics: NewRegistry gives a registry with the Go runtime and process
// collectors; Handler serves it (and, optionally, net/http/pprof);
// ListenMetrics runs that handler on its own listener. Metric names start
// with Namespace and follow Prometheus conventions (base units, _total
// counters).
package telemetry

import "go.opentelemetry.io/otel/attribute"

// Service names (the service.name resource attribute).
const (
	ServiceCoordinator = "colony-coordinator"
	ServiceSidecar     = "colony-sidecar"
)

// Namespace prefixes every Colony metric name.
const Namespace = "colony"

// InstrumentationName names Colony's tracers.
const InstrumentationName = "github.com/colonymesh/colony"

// Span names of a breaker transition's chain, in order (see the package doc).
const (
	// SpanSidecarReport is a sidecar sending one batch of outcome counts
	// (the Breakers.Report call, whose client span is its child): where a
	// trip's trace starts.
	SpanSidecarReport = "colony.sidecar.report"
	// SpanReport is one Breakers.Report call on the node that received it.
	SpanReport = "colony.breaker.report"
	// SpanIngest is a report reaching the leader's engine (a child of
	// SpanReport, across the forwarding hop when a follower received it).
	SpanIngest = "colony.breaker.ingest"
	// SpanDecide is the leader's evaluation that changed a pair's record:
	// a transition, a probe reassignment, an override set, cleared or
	// expired. A transition caused by reports is a child of the newest
	// SpanIngest of the pair, linked to up to 31 others since the last
	// decision (AttrReports counts them all, AttrUnlinked those not
	// linked); one decided on a timer is a root linked to the previous
	// record's trace.
	SpanDecide = "colony.breaker.decide"
	// SpanApply is the write of a pair's record through the raft log, from
	// the proposal until the leader applied it: a child of the (newest)
	// SpanDecide it writes. Its context is the record's traceparent.
	SpanApply = "colony.breaker.apply"
	// SpanWatchDeliver is a sidecar receiving a changed record from its
	// watch: a child of the record's traceparent.
	SpanWatchDeliver = "colony.breaker.watch"
	// SpanXDSPush is a sidecar sending routes that carry the change to one
	// xDS client, from the response until the client's ACK: a child of
	// SpanWatchDeliver.
	SpanXDSPush = "colony.xds.push"
	// SpanXDSAck is that client's ACK of the routes: a child of
	// SpanXDSPush, at the moment the ACK arrived.
	SpanXDSAck = "colony.xds.ack"
)

// Span attributes.
const (
	AttrCaller     = attribute.Key("colony.breaker.caller")
	AttrCallee     = attribute.Key("colony.breaker.callee")
	AttrInstance   = attribute.Key("colony.breaker.instance")
	AttrReports    = attribute.Key("colony.breaker.reports")          // reports in one call, or behind one decision
	AttrUnlinked   = attribute.Key("colony.breaker.reports_unlinked") // reports behind a decision it does not link (the bound)
	AttrPairs      = attribute.Key("colony.breaker.pairs")            // distinct pairs in one call
	AttrFrom       = attribute.Key("colony.breaker.from")             // state before: CLOSED, OPEN, HALF_OPEN
	AttrTo         = attribute.Key("colony.breaker.to")               // state after
	AttrCause      = attribute.Key("colony.breaker.cause")            // condition, or override, cleared, expired, probes
	AttrGeneration = attribute.Key("colony.breaker.generation")       // the record's generation after the change
	AttrShadow     = attribute.Key("colony.breaker.shadow")           // only recorded (shadow mode), not enforced
	AttrOverride   = attribute.Key("colony.breaker.override")         // override mode in force
	AttrFailures   = attribute.Key("colony.breaker.failures")         // failures in the evidence window
	AttrCalls      = attribute.Key("colony.breaker.calls")            // calls in the evidence window
	AttrFailing    = attribute.Key("colony.breaker.failing_instances")
	AttrForwarded  = attribute.Key("colony.forwarded")  // the request went on to the leader
	AttrRaftIndex  = attribute.Key("colony.raft.index") // the log index (zxid) of a write
	AttrNode       = attribute.Key("colony.node")       // a coordinator node id
	AttrXDSNode    = attribute.Key("colony.xds.node")   // an xDS client's node id
	AttrXDSVersion = attribute.Key("colony.xds.version")
)
