package sidecar

import (
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

// TestShouldDegrade: the degraded-mode decision as a table of how long the
// coordinator has been silent, how long the sidecar has run, and the grace
// period.
func TestShouldDegrade(t *testing.T) {
	const after = 5 * time.Second
	tests := []struct {
		name      string
		stale, up time.Duration
		want      bool
	}{
		{"answered just now", 0, time.Hour, false},
		{"silent for less than the grace period", 4 * time.Second, time.Hour, false},
		{"silent for exactly the grace period", after, time.Hour, false},
		{"silent for longer than the grace period", after + time.Millisecond, time.Hour, true},
		{"never answered, just started", -1, time.Second, false},
		{"never answered, started the grace period ago", -1, after, false},
		{"never answered for longer than the grace period", -1, after + time.Millisecond, true},
		{"answered once, then silent, though started long ago", time.Second, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shouldDegrade(tt.stale, tt.up, after); got != tt.want {
				t.Errorf("shouldDegrade(stale %v, up %v, after %v) = %v, want %v", tt.stale, tt.up, after, got, tt.want)
			}
		})
	}
}

// policySet is a policy for callee whose degradedMode is mode, with
// callerMode for calls from the caller "checkout" when set.
func policySet(callee, mode, callerMode string) breaker.PolicySet {
	p := breaker.DefaultPolicy()
	p.DegradedMode = mode
	ps := breaker.PolicySet{Callee: callee, Policy: p}
	if callerMode != "" {
		cp := breaker.DefaultPolicy()
		cp.DegradedMode = callerMode
		ps.Callers = map[string]breaker.Policy{"checkout": cp}
	}
	return ps
}

// TestModeForPrecedence: the sidecar's per-callee setting wins, then the
// pair's policy (its caller-specific one first), then the sidecar's default.
func TestModeForPrecedence(t *testing.T) {
	s := &Sidecar{
		cfg: Config{Service: "checkout", Instance: "c1", DegradedMode: FailOpen,
			DegradedModes: map[string]Mode{"flagged": FailClosed}},
		policies: map[string]breaker.PolicySet{
			"flagged":    policySet("flagged", "local", ""),
			"policied":   policySet("policied", "local", ""),
			"per-caller": policySet("per-caller", "local", "last-known"),
			"unset":      policySet("unset", "", ""),
		},
	}
	for callee, want := range map[string]Mode{
		"flagged":    FailClosed, // the flag beats the policy
		"policied":   Local,
		"per-caller": LastKnown, // the policy for this caller beats the callee's
		"unset":      FailOpen,  // a policy without a mode: the sidecar's default
		"unknown":    FailOpen,  // no policy: the default policy has no mode either
	} {
		if got := s.modeFor(callee); got != want {
			t.Errorf("modeFor(%s) = %s, want %s", callee, got, want)
		}
	}
}

// TestDegradedRecord: what each degraded mode enforces, given the last
// record from the coordinator.
func TestDegradedRecord(t *testing.T) {
	now := time.Unix(1700000000, 0)
	last := &breaker.PairRecord{Caller: "checkout", Callee: "payments", Record: breaker.Record{State: breaker.Open, Generation: 7}, Cause: "failureRate"}
	tests := []struct {
		mode      Mode
		last      *breaker.PairRecord
		wantState breaker.State
		wantNil   bool
	}{
		{mode: LastKnown, last: last, wantState: breaker.Open},
		{mode: LastKnown, last: nil, wantNil: true},
		{mode: FailOpen, last: last, wantState: breaker.Closed},
		{mode: FailClosed, last: last, wantState: breaker.Open},
		{mode: FailClosed, last: nil, wantState: breaker.Open},
		{mode: Local, last: last, wantState: breaker.Closed}, // a local breaker starts CLOSED
	}
	for _, tt := range tests {
		name := string(tt.mode)
		if tt.last == nil {
			name += ", no record"
		}
		t.Run(name, func(t *testing.T) {
			s := &Sidecar{cfg: Config{Service: "checkout", Instance: "c1"}, local: map[string]*localBreaker{}, policies: map[string]breaker.PolicySet{}}
			got := s.degradedRecordLocked("payments", tt.last, tt.mode, now)
			if tt.wantNil {
				if got != nil {
					t.Fatalf("got %+v, want no record", got)
				}
				return
			}
			if got == nil {
				t.Fatal("got no record")
			}
			if got.State != tt.wantState {
				t.Errorf("state %v, want %v", got.State, tt.wantState)
			}
			if tt.mode == LastKnown {
				if got != tt.last {
					t.Errorf("last-known enforces %+v, want the last record itself", got)
				}
				return
			}
			if want := "degraded:" + string(tt.mode); got.Cause != want {
				t.Errorf("cause %q, want %q", got.Cause, want)
			}
			if tt.last != nil && got.Generation != tt.last.Generation {
				t.Errorf("generation %d, want the last record's %d", got.Generation, tt.last.Generation)
			}
			if !got.Since.Equal(now) || got.Caller != "checkout" || got.Callee != "payments" {
				t.Errorf("record %+v, want checkout->payments since %v", got, now)
			}
			if _, ok := s.local["payments"]; ok != (tt.mode == Local) {
				t.Errorf("local breaker kept: %v, want %v", ok, tt.mode == Local)
			}
		})
	}
}
