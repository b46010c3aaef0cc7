package sidecar

import (
	"errors"
	"io"
	"strconv"

	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"

	"github.com/colonymesh/colony/breaker"
)

// accessLogs serves Envoy's gRPC access log service: every call the local
// Envoy proxied becomes an outcome, classified with the callee's policy and
// added to the current report period. Envoy names the upstream cluster after
// the callee (package xds).
type accessLogs struct {
	accesslogv3.UnimplementedAccessLogServiceServer
	s *Sidecar
}

func (a *accessLogs) StreamAccessLogs(stream accesslogv3.AccessLogService_StreamAccessLogsServer) error {
	for first := true; ; first = false {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&accesslogv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return err
		}
		if node := msg.GetIdentifier().GetNode().GetId(); first && node != "" {
			// This node's calls are counted from its access logs, not
			// from its load reports (lrs.go).
			defer a.s.accessLogOpened(node)()
		}
		counts := map[string]*breaker.Counts{}
		for _, e := range msg.GetHttpLogs().GetLogEntry() {
			callee := e.GetCommonProperties().GetUpstreamCluster()
			if breaker.ValidateServiceName(callee) != nil {
				continue // not a callee's cluster (no route, or Colony's own)
			}
			c := counts[callee]
			if c == nil {
				c = &breaker.Counts{}
				counts[callee] = c
			}
			call := callOf(e)
			c.AddTimed(a.s.classify(callee, call), call.Duration)
		}
		for callee, c := range counts {
			if err := a.s.Report(callee, *c); err != nil {
				a.s.log.Debug("access log outcomes dropped", "callee", callee, "err", err)
			}
		}
	}
}

// callOf turns an Envoy access log entry into a breaker.Call.
func callOf(e *accesslogdatav3.HTTPAccessLogEntry) breaker.Call {
	cp := e.GetCommonProperties()
	f := cp.GetResponseFlags()
	call := breaker.Call{Duration: cp.GetTimeToLastDownstreamTxByte().AsDuration()}
	switch {
	case f.GetFaultInjected():
		call.Kind = breaker.CallRejected // the breaker's own abort
	case f.GetUpstreamRequestTimeout(), f.GetStreamIdleTimeout():
		call.Kind = breaker.CallTimeout
	case f.GetUpstreamConnectionFailure(), f.GetNoHealthyUpstream(), f.GetUpstreamConnectionTermination(),
		f.GetUpstreamRemoteReset(), f.GetUpstreamOverflow():
		call.Kind = breaker.CallConnectionError
	default:
		resp := e.GetResponse()
		gs, ok := resp.GetResponseTrailers()["grpc-status"]
		if !ok {
			gs, ok = resp.GetResponseHeaders()["grpc-status"]
		}
		if code, err := strconv.Atoi(gs); ok && err == nil {
			call.Kind, call.Code = breaker.CallGRPC, code
		} else {
			call.Kind, call.Code = breaker.CallHTTP, int(resp.GetResponseCode().GetValue())
		}
	}
	return call
}

// classify classifies a call to callee with the callee's policy for this
// service (its classification and slow-call duration).
func (s *Sidecar) classify(callee string, call breaker.Call) breaker.Verdict {
	s.mu.Lock()
	k := s.classifiers[callee]
	if k == nil {
		p := s.policyLocked(callee)
		var err error
		if k, err = breaker.NewClassifier(p.Classification, p.SlowCallDuration); err != nil {
			d := breaker.DefaultPolicy()
			k, _ = breaker.NewClassifier(d.Classification, d.SlowCallDuration)
		}
		if len(s.classifiers) < 10000 {
			s.classifiers[callee] = k
		}
	}
	s.mu.Unlock()
	return k.Classify(call)
}
