package sidecar_test

import (
	"testing"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/sidecar"
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
	if guard.XDSNodeMetadataKey != xds.GuardNodeMetadataKey {
		t.Fatalf("guard apps mark their xDS node with %q, the sidecar looks for %q", guard.XDSNodeMetadataKey, xds.GuardNodeMetadataKey)
	}
	if guard.BreakerHeader != xds.DefaultBreakerHeader {
		t.Fatalf("guard reads rejections from %q, Envoy writes %q", guard.BreakerHeader, xds.DefaultBreakerHeader)
	}
}

// TestModesAreThePolicyModes: the sidecar's degraded modes are exactly
// what a policy's degradedMode accepts.
func TestModesAreThePolicyModes(t *testing.T) {
	want := []sidecar.Mode{sidecar.LastKnown, sidecar.Local, sidecar.FailOpen, sidecar.FailClosed}
	got := breaker.DegradedModes()
	if len(got) != len(want) {
		t.Fatalf("policies accept %v, the sidecar has %v", got, want)
	}
	for _, m := range want {
		if p, err := sidecar.ParseMode(string(m)); err != nil || p != m {
			t.Errorf("ParseMode(%q) = %q, %v", m, p, err)
		}
	}
	if _, err := sidecar.ParseMode(string(sidecar.ModeCoordinator)); err == nil {
		t.Errorf("ParseMode accepts %q, which is not a degraded mode", sidecar.ModeCoordinator)
	}
}
