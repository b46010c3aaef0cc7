package xds

import (
	"errors"
	"io"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Load reporting (LRS, gRFC A27): the clusters the server serves name the
// server itself as their LRS server, so every gRPC xDS client streams, per
// cluster, how many calls it issued and how many ended in success or error
// since its last report. Those reports are the outcomes of callers that run
// no Colony code.
//
// What LRS cannot carry: a call's latency (so no slow-call rate) and its
// status code (an error is an error: a policy's classification of codes does
// not apply, every error counts as a failure, CANCELLED and
// DEADLINE_EXCEEDED set by the caller included). Calls a route's fault
// filter aborts (the breaker's rejections) are not counted at all: gRPC
// aborts them before picking a cluster, so they are not in the load.

// Limits of the load reporting service.
const (
	// DefaultLoadReportInterval is the interval clients are asked to report
	// at when Config.LoadReportInterval is zero: the sidecar's default
	// report interval, so an LRS report adds at most about one report
	// period between a call ending and the coordinator seeing it. A client
	// process sends four small messages a second.
	DefaultLoadReportInterval = 250 * time.Millisecond
	// MinLoadReportInterval and MaxLoadReportInterval bound
	// Config.LoadReportInterval.
	MinLoadReportInterval = 50 * time.Millisecond
	MaxLoadReportInterval = time.Minute
	// MaxLoadStreams is how many LRS streams the server serves at once;
	// one more is refused with RESOURCE_EXHAUSTED (gRPC retries it with
	// backoff).
	MaxLoadStreams = 1024
	// MaxLoadClusters is how many clusters of one report are read; the
	// rest of that report is ignored.
	MaxLoadClusters = 1024
)

// GuardNodeMetadataKey is the node metadata field (a true boolean) that
// marks an xDS client whose process also reports its outcomes through
// Colony's client library (sidecar/guard), with latencies and status codes:
// its load reports are not outcomes (OnLoad sees them with Guard set), so
// its calls are counted once. Keep it equal to guard.XDSNodeMetadataKey.
const GuardNodeMetadataKey = "colony.guard"

// Load is one client's load report for one cluster: counts since its
// previous report on the stream.
type Load struct {
	// NodeID and UserAgent come from the client's node; Envoy is set for an
	// Envoy (user agent "envoy"), Guard for a node marked with
	// GuardNodeMetadataKey.
	NodeID    string
	UserAgent string
	Envoy     bool
	Guard     bool
	// Stream numbers the client's LRS stream (one per process and server).
	Stream int64
	// Cluster is the cluster name: the callee.
	Cluster string
	// Succeeded, Errored and Issued are calls that ended well, ended in an
	// error, and started, since the last report; InProgress is calls
	// still running; Dropped is calls the client dropped before picking an
	// endpoint (drop_overloads, circuit breaking).
	Succeeded, Errored, Issued, InProgress, Dropped uint64
	// Interval is the time the counts cover, as the client says.
	Interval time.Duration
}

// isGuard reports whether node carries GuardNodeMetadataKey = true.
func isGuard(n *corev3.Node) bool {
	v, ok := n.GetMetadata().GetFields()[GuardNodeMetadataKey]
	return ok && v.GetBoolValue()
}

// loadService serves envoy.service.load_stats.v3.LoadReportingService.
type loadService struct {
	lrsv3.UnimplementedLoadReportingServiceServer
	interval time.Duration
	onLoad   func(Load)

	mu      sync.Mutex
	streams int
	next    int64
}

func (l *loadService) acquire() (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streams >= MaxLoadStreams {
		return 0, false
	}
	l.streams++
	l.next++
	return l.next, true
}

func (l *loadService) release() {
	l.mu.Lock()
	l.streams--
	l.mu.Unlock()
}

// StreamLoadStats answers the client's first request with every cluster and
// the report interval, then hands each report's clusters to onLoad.
func (l *loadService) StreamLoadStats(stream grpc.BidiStreamingServer[lrsv3.LoadStatsRequest, lrsv3.LoadStatsResponse]) error {
	id, ok := l.acquire()
	if !ok {
		return status.Errorf(codes.ResourceExhausted, "this sidecar already serves %d load reporting streams, its limit", MaxLoadStreams)
	}
	defer l.release()
	var node *corev3.Node
	for first := true; ; first = false {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if n := req.GetNode(); n != nil {
			node = n
		}
		if first {
			if node == nil {
				return status.Error(codes.InvalidArgument, "the first load stats request carries no node")
			}
			if err := stream.Send(&lrsv3.LoadStatsResponse{
				SendAllClusters:       true,
				LoadReportingInterval: durationpb.New(l.interval),
			}); err != nil {
				return err
			}
		}
		if l.onLoad == nil {
			continue
		}
		stats := req.GetClusterStats()
		if len(stats) > MaxLoadClusters {
			stats = stats[:MaxLoadClusters]
		}
		for _, cs := range stats {
			ld := Load{
				NodeID: node.GetId(), UserAgent: node.GetUserAgentName(), Envoy: isEnvoy(node), Guard: isGuard(node),
				Stream: id, Cluster: cs.GetClusterName(), Dropped: cs.GetTotalDroppedRequests(),
				Interval: cs.GetLoadReportInterval().AsDuration(),
			}
			for _, ls := range cs.GetUpstreamLocalityStats() {
				ld.Succeeded = satAdd(ld.Succeeded, ls.GetTotalSuccessfulRequests())
				ld.Errored = satAdd(ld.Errored, ls.GetTotalErrorRequests())
				ld.Issued = satAdd(ld.Issued, ls.GetTotalIssuedRequests())
				ld.InProgress = satAdd(ld.InProgress, ls.GetTotalRequestsInProgress())
			}
			if ld.Succeeded == 0 && ld.Errored == 0 && ld.Issued == 0 && ld.InProgress == 0 && ld.Dropped == 0 {
				continue
			}
			l.onLoad(ld)
		}
	}
}

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return ^uint64(0)
	}
	return a + b
}
