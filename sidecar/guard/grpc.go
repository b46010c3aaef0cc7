package guard

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
)

// BreakerHeader is the response header the sidecar's routes put on a call
// they rejected for a breaker (HTTP through Envoy). A response carrying it
// is counted as rejected, not as a failure of the callee.
const BreakerHeader = "x-colony-breaker"

// grpcFailures are the codes that count as the callee failing: the server
// could not serve (not the caller's mistake, not the caller giving up).
var grpcFailures = [17]bool{
	codes.Unknown: true, codes.DeadlineExceeded: true, codes.ResourceExhausted: true,
	codes.Internal: true, codes.Unavailable: true, codes.DataLoss: true,
}

// UnaryClientInterceptor checks every unary call on the connection against
// the breaker of the pair this service -> callee. A rejected call fails with
// codes.Unavailable and a message naming the breaker, without a network
// round trip. Outcomes: UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
// INTERNAL, UNAVAILABLE and DATA_LOSS are failures; CANCELED is excluded, and
// so is a call that never reached a server for a reason of this client's own
// (its xDS configuration not there yet, no endpoints, no route), while
// connection errors and timeouts count as failures; a call the data plane
// aborted for a breaker (gRPC's fault injection) counts as rejected; the
// rest are successes. A call rejected either way marks the caller's current
// span with the breaker's generation and a link to the coordinator's trace
// of the decision (the record's traceparent).
func (g *Guard) UnaryClientInterceptor(callee string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		p, err := g.Allow(callee)
		if err != nil {
			annotateRejection(ctx, err)
			return status.Error(codes.Unavailable, err.Error())
		}
		if p.Probe {
			ctx = metadata.AppendToOutgoingContext(ctx, ProbeHeader, p.ProbeValue)
		}
		start := time.Now()
		var pr peer.Peer
		err = invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&pr))...)
		took := time.Since(start)
		p.finishGRPC(err, pr.Addr != nil, g.slow(took), took)
		if err != nil && dataPlaneRejected(status.Convert(err)) {
			g.annotateDataPlaneRejection(ctx, callee)
		}
		return err
	}
}

// transportFailure reports whether a call that never reached a server
// failed because the callee could not be reached (a connection error, a
// timeout), rather than because this client is not configured yet (no xDS
// resources, no endpoints, no route): only the former says anything about
// the callee.
func transportFailure(st *status.Status) bool {
	if st.Code() == codes.DeadlineExceeded {
		return true
	}
	msg := st.Message()
	for _, s := range []string{"connection error", "connection refused", "connection reset", "transport", "dial"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func (p Permit) finishGRPC(err error, reachedServer, slow bool, took time.Duration) {
	st, _ := status.FromError(err)
	code := st.Code()
	switch {
	case code == codes.Canceled:
		p.Exclude()
	case err != nil && !reachedServer && !transportFailure(st) && !strings.Contains(st.Message(), "fault injection"):
		p.Exclude() // the client is not ready (xDS resolving, no endpoints)
	case code == codes.Unavailable && strings.Contains(st.Message(), "fault injection"):
		// Aborted by the route (the breaker), not by the callee.
		p.Refund()
		if p.c != nil {
			p.c.rejected.Add(1)
		}
	default:
		p.DoneAfter(int(code) < len(grpcFailures) && grpcFailures[code], slow, took)
	}
}

// RoundTripper checks every HTTP request sent through next (nil:
// http.DefaultTransport) against this service -> callee's breaker. A
// rejected request fails with a *RejectedError (errors.Is ErrOpen). 5xx
// responses count as failures, except those the sidecar's routes produced for
// a breaker (BreakerHeader), which count as rejected.
func (g *Guard) RoundTripper(callee string, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		p, err := g.Allow(callee)
		if err != nil {
			annotateRejection(req.Context(), err)
			return nil, err
		}
		if p.Probe {
			req = req.Clone(req.Context())
			req.Header.Set(ProbeHeader, p.ProbeValue)
		}
		start := time.Now()
		resp, err := next.RoundTrip(req)
		took := time.Since(start)
		switch {
		case err != nil && req.Context().Err() != nil:
			p.Exclude()
		case err != nil:
			p.DoneAfter(true, false, took)
		case resp.Header.Get(BreakerHeader) != "":
			g.annotateDataPlaneRejection(req.Context(), callee)
			p.Refund()
			if p.c != nil {
				p.c.rejected.Add(1)
			}
		default:
			p.DoneAfter(resp.StatusCode >= 500, g.slow(took), took)
		}
		return resp, err
	})
}

// slow reports whether a call that took this long counts as slow
// (Config.SlowCall).
func (g *Guard) slow(took time.Duration) bool {
	return g.cfg.SlowCall > 0 && took > g.cfg.SlowCall
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// annotateRejection marks the caller's current span (if it is recording) with
// the breaker's decision: its generation, and a link to the coordinator's
// trace of it, so a trace viewer goes from "why was my call rejected?" to the
// failures that tripped the breaker.
func annotateRejection(ctx context.Context, err error) {
	span := trace.SpanFromContext(ctx)
	var re *RejectedError
	if !span.IsRecording() || !errors.As(err, &re) {
		return
	}
	span.SetAttributes(
		attribute.String("colony.breaker.caller", re.Caller), attribute.String("colony.breaker.callee", re.Callee),
		attribute.String("colony.breaker.state", re.State.String()), attribute.Int64("colony.breaker.generation", int64(re.Generation)),
		attribute.String("colony.breaker.traceparent", re.Traceparent),
	)
	if sc := spanContextOf(re.Traceparent); sc.IsValid() {
		span.AddLink(trace.Link{SpanContext: sc})
	}
}

// annotateDataPlaneRejection marks the caller's current span, for a call
// the data plane rejected for callee's breaker (gRPC's fault injection on
// the sidecar's routes, or Envoy's response with BreakerHeader), with the
// decision it enforces as this guard knows it: the pair's record when it is
// not CLOSED (a guard that still holds CLOSED has not heard of the decision
// yet, and links nothing).
func (g *Guard) annotateDataPlaneRejection(ctx context.Context, callee string) {
	if p := (*g.pairs.Load())[callee]; p != nil && p.state != breaker.Closed {
		annotateRejection(ctx, p.reject)
	}
}

// dataPlaneRejected reports whether a call's status is the sidecar's
// routes aborting it for a breaker (gRPC's fault injection).
func dataPlaneRejected(st *status.Status) bool {
	return st.Code() == codes.Unavailable && strings.Contains(st.Message(), "fault injection")
}

// spanContextOf parses a W3C traceparent ("00-<trace>-<span>-<flags>"). It
// is internal/telemetry's SpanContextFromTraceparent again on purpose: that
// package brings the OTel SDK and Prometheus, which apps linking the guard
// should not have to.
func spanContextOf(tp string) trace.SpanContext {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 {
		return trace.SpanContext{}
	}
	tid, err1 := trace.TraceIDFromHex(parts[1])
	sid, err2 := trace.SpanIDFromHex(parts[2])
	if err1 != nil || err2 != nil {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
}
