package breaker

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// FuzzParsePolicy checks that ParsePolicy never panics, that every policy it
// accepts validates and drives the state machine without panicking, and that an accepted
// policy survives a JSON round trip unchanged.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"window":"10s","buckets":10,"minimumCalls":20,"failureRateThreshold":50}`,
		`{"consecutiveFailures":5,"openDuration":"30s","backoffMultiplier":2,"maxOpenDuration":"5m","jitter":0.1}`,
		`{"slowCallRateThreshold":80,"slowCallDuration":"2s","probeBudget":3,"successesToClose":2,"probeTimeout":"5s"}`,
		`{"minFailingInstances":2,"minFailingShare":0.5}`,
		`{"window":"-1s"}`, `{"window":"1ns","buckets":1000000}`, `{"failureRateThreshold":1e308}`,
		`{"failureRateTreshold":50}`, `{"window":10}`, `{} {}`, `[]`, `null`, ``, `{"jitter":NaN}`,
		`{"openDuration":"9223372036854775807ns","backoffMultiplier":1e9}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(DefaultPolicy(), b)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("ParsePolicy accepted %q, which does not validate: %v", b, err)
		}
		// Accepted policies drive the state machine without panicking.
		now := time.Unix(1_700_000_000, 0)
		for opens := 0; opens < 70; opens += 7 {
			if d := p.OpenDurationFor(opens, 0.5); d < 0 {
				t.Fatalf("policy %q: open duration %v after %d opens", b, d, opens)
			}
		}
		if p.bucketWidth() <= 0 {
			t.Fatalf("policy %q: bucket width %d", b, p.bucketWidth())
		}
		b2, err := New(p, now)
		if err != nil {
			t.Fatalf("New with accepted policy %q: %v", b, err)
		}
		for i := range 3 {
			at := now.Add(time.Duration(i) * p.Window)
			b2.Report(at, "i1", Counts{Failures: 100})
			b2.Evaluate(at)
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("marshalling accepted policy %q: %v", b, err)
		}
		back, err := ParsePolicy(Policy{}, out)
		if err != nil {
			t.Fatalf("an accepted policy's own JSON %s does not parse: %v", out, err)
		}
		if !reflect.DeepEqual(back, p) {
			t.Fatalf("round trip differs:\n in %+v\nout %+v", p, back)
		}
	})
}
