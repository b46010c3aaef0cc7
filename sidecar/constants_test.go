package sidecar_test

import (
	"testing"

	"github.com/colonymesh/colony/sidecar/guard"
	"github.com/colonymesh/colony/xds"
)

// TestProbeHeaderAgrees: the client library marks probe calls with the
// header the xDS routes of a probe holder match. They are two constants so
// that apps linking the library do not pull in the Envoy API types.
func TestProbeHeaderAgrees(t *testing.T) {
	if guard.ProbeHeader != xds.ProbeHeader {
		t.Fatalf("guard marks probes with %q, the routes match %q", guard.ProbeHeader, xds.ProbeHeader)
	}
	if guard.BreakerHeader != xds.DefaultBreakerHeader {
		t.Fatalf("guard reads rejections from %q, Envoy writes %q", guard.BreakerHeader, xds.DefaultBreakerHeader)
	}
}
