package breaker_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

func TestDefaultPolicyIsValid(t *testing.T) {
	if err := breaker.DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := testPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*breaker.Policy)
		want  []string // each must appear in the error
	}{
		{"failure rate above 1", func(p *breaker.Policy) { p.FailureRateThreshold = 1.5 },
			[]string{"failureRateThreshold: 1.5 is outside 0..1"}},
		{"failure rate negative", func(p *breaker.Policy) { p.FailureRateThreshold = -0.1 },
			[]string{"failureRateThreshold: -0.1 is outside 0..1"}},
		{"failure rate NaN", func(p *breaker.Policy) { p.FailureRateThreshold = nan() },
			[]string{"failureRateThreshold: NaN is outside 0..1"}},
		{"zero window", func(p *breaker.Policy) { p.Window = 0 },
			[]string{"window: must be > 0"}},
		{"zero buckets", func(p *breaker.Policy) { p.Buckets = 0 },
			[]string{"buckets: 0 is outside 1..1000"}},
		{"too many buckets", func(p *breaker.Policy) { p.Buckets = 5000 },
			[]string{"buckets: 5000 is outside 1..1000"}},
		{"buckets not whole milliseconds", func(p *breaker.Policy) { p.Buckets = 7 },
			[]string{"buckets: window 10s / 7 buckets is not a whole number of milliseconds"}},
		{"window not whole milliseconds", func(p *breaker.Policy) { p.Window = 10*time.Second + time.Microsecond },
			[]string{"is not a whole number of milliseconds"}},
		{"negative minimum calls", func(p *breaker.Policy) { p.MinimumCalls = -1 },
			[]string{"minimumCalls: -1 must be >= 0"}},
		{"negative consecutive failures", func(p *breaker.Policy) { p.ConsecutiveFailures = -2 },
			[]string{"consecutiveFailures: -2 must be >= 0"}},
		{"slow rate above 1", func(p *breaker.Policy) { p.SlowCallRateThreshold = 2 },
			[]string{"slowCallRateThreshold: 2 is outside 0..1"}},
		{"slow rate without slow duration", func(p *breaker.Policy) { p.SlowCallRateThreshold, p.SlowCallDuration = 0.5, 0 },
			[]string{"slowCallDuration: must be > 0 when slowCallRateThreshold is set"}},
		{"no trip condition", func(p *breaker.Policy) { p.FailureRateThreshold = 0 },
			[]string{"at least one must be set, or the breaker never trips"}},
		{"bad HTTP class", func(p *breaker.Policy) { p.Classification.HTTPFailures = []string{"5xx", "6xx"} },
			[]string{`classification.httpFailures[1]: "6xx" is not an HTTP status (100..599) or class (1xx..5xx)`}},
		{"bad gRPC name", func(p *breaker.Policy) { p.Classification.GRPCExcluded = []string{"UNAVAIL"} },
			[]string{`classification.grpcExcluded[0]: "UNAVAIL" is not a gRPC status code name`}},
		{"half-open bound below the probe timeout", func(p *breaker.Policy) { p.HalfOpenMaxWait = 4 * time.Second },
			[]string{"halfOpenMaxWait: 4s is below probeTimeout 5s"}},
		{"half-open bound above a day", func(p *breaker.Policy) { p.HalfOpenMaxWait = 25 * time.Hour },
			[]string{"halfOpenMaxWait: 25h0m0s is outside 0..24h0m0s"}},
		{"negative half-open bound", func(p *breaker.Policy) { p.HalfOpenMaxWait = -time.Second },
			[]string{"halfOpenMaxWait: -1s is outside 0..24h0m0s"}},
		{"zero open duration", func(p *breaker.Policy) { p.OpenDuration = 0 },
			[]string{"openDuration: must be > 0"}},
		{"multiplier below 1", func(p *breaker.Policy) { p.BackoffMultiplier = 0.5 },
			[]string{"backoffMultiplier: 0.5 must be >= 1"}},
		{"max open below open", func(p *breaker.Policy) { p.MaxOpenDuration = 5 * time.Second },
			[]string{"maxOpenDuration: 5s must be 0 (no cap) or >= openDuration 10s"}},
		{"jitter above 1", func(p *breaker.Policy) { p.Jitter = 1.2 },
			[]string{"jitter: 1.2 is outside 0..1"}},
		{"zero probe budget", func(p *breaker.Policy) { p.ProbeBudget = 0 },
			[]string{"probeBudget: must be >= 1"}},
		{"absurd probe budget", func(p *breaker.Policy) { p.ProbeBudget, p.SuccessesToClose = 1e6, 1 },
			[]string{"probeBudget: 1000000 is above the limit 10000"}},
		{"successes above budget", func(p *breaker.Policy) { p.SuccessesToClose = 5 },
			[]string{"successesToClose: 5 exceeds probeBudget 3"}},
		{"zero successes", func(p *breaker.Policy) { p.SuccessesToClose = 0 },
			[]string{"successesToClose: must be >= 1"}},
		{"zero probe timeout", func(p *breaker.Policy) { p.ProbeTimeout = 0 },
			[]string{"probeTimeout: must be > 0"}},
		{"negative quorum", func(p *breaker.Policy) { p.MinFailingInstances = -1 },
			[]string{"minFailingInstances: -1 must be >= 0"}},
		{"share above 1", func(p *breaker.Policy) { p.MinFailingShare = 1.01 },
			[]string{"minFailingShare: 1.01 is outside 0..1"}},
		{"every problem is reported", func(p *breaker.Policy) {
			p.FailureRateThreshold, p.Window, p.ProbeBudget = 1.5, 0, 0
		}, []string{"failureRateThreshold: 1.5 is outside 0..1", "window: must be > 0", "probeBudget: must be >= 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			tt.tweak(&p)
			err := p.Validate()
			if !errors.Is(err, breaker.ErrInvalidPolicy) {
				t.Fatalf("Validate() = %v, want ErrInvalidPolicy", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if _, err := breaker.New(p, t0); !errors.Is(err, breaker.ErrInvalidPolicy) {
				t.Errorf("New accepted an invalid policy: %v", err)
			}
		})
	}
}

func nan() float64 { var z float64; return z / z }

func TestPolicyJSON(t *testing.T) {
	p := breaker.DefaultPolicy()
	data, err := json.Marshal(p)
	must(t, err)
	for _, want := range []string{`"window":"10s"`, `"openDuration":"10s"`, `"maxOpenDuration":"5m0s"`,
		`"probeTimeout":"10s"`, `"failureRateThreshold":0.5`, `"httpFailures":["5xx"]`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("JSON %s\nlacks %s", data, want)
		}
	}
	var back breaker.Policy
	must(t, json.Unmarshal(data, &back))
	if back.Window != p.Window || back.MaxOpenDuration != p.MaxOpenDuration || back.MinFailingInstances != p.MinFailingInstances ||
		len(back.Classification.GRPCFailures) != len(p.Classification.GRPCFailures) {
		t.Errorf("round trip: %+v\nwant %+v", back, p)
	}
	// Decoding overlays: fields absent keep their values.
	over := breaker.DefaultPolicy()
	must(t, json.Unmarshal([]byte(`{"window":"30s","buckets":30,"failureRateThreshold":0.25}`), &over))
	if over.Window != 30*time.Second || over.Buckets != 30 || over.FailureRateThreshold != 0.25 || over.OpenDuration != 10*time.Second {
		t.Errorf("overlay: %+v", over)
	}
	if err := json.Unmarshal([]byte(`{"window":10}`), &over); err == nil {
		t.Error("a bare number as a duration was accepted")
	}
	if err := json.Unmarshal([]byte(`{"openDuration":"ten seconds"}`), &over); err == nil || !strings.Contains(err.Error(), `want a duration like "10s"`) {
		t.Errorf("bad duration: %v", err)
	}
}

// TestDegradedModesCannotBeChanged: DegradedModes hands out a copy, so a
// caller that changes it changes neither what policies accept nor what the
// next caller gets.
func TestDegradedModesCannotBeChanged(t *testing.T) {
	modes := breaker.DegradedModes()
	want := strings.Join(modes, ",")
	for _, m := range modes {
		p := breaker.DefaultPolicy()
		p.DegradedMode = m
		if err := p.Validate(); err != nil {
			t.Errorf("degradedMode %q: %v", m, err)
		}
	}
	modes[0] = "anything-goes"
	if got := strings.Join(breaker.DegradedModes(), ","); got != want {
		t.Fatalf("DegradedModes() = %s after changing a copy, want %s", got, want)
	}
	p := breaker.DefaultPolicy()
	p.DegradedMode = "anything-goes"
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "degradedMode") {
		t.Fatalf("degradedMode %q after changing a copy: %v, want it rejected", p.DegradedMode, err)
	}
}
