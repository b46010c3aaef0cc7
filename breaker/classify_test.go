package breaker_test

import (
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

func TestClassifier(t *testing.T) {
	def := breaker.DefaultPolicy().Classification
	custom := breaker.Classification{
		HTTPFailures:            []string{"5xx", "429"},
		HTTPExcluded:            []string{"501", "4xx"},
		GRPCFailures:            []string{"Unavailable", "DeadlineExceeded", "resource_exhausted"},
		GRPCExcluded:            []string{"Canceled"},
		ExcludeTimeouts:         true,
		ExcludeConnectionErrors: true,
	}
	const slow = time.Second
	http := func(code int) breaker.Call { return breaker.Call{Kind: breaker.CallHTTP, Code: code} }
	grpc := func(code int) breaker.Call { return breaker.Call{Kind: breaker.CallGRPC, Code: code} }
	tests := []struct {
		name string
		c    breaker.Classification
		call breaker.Call
		want breaker.Outcome
		slow bool
	}{
		{"HTTP 200 succeeds", def, http(200), breaker.Success, false},
		{"HTTP 404 succeeds by default", def, http(404), breaker.Success, false},
		{"HTTP 500 fails (5xx)", def, http(500), breaker.Failure, false},
		{"HTTP 503 fails (5xx)", def, http(503), breaker.Failure, false},
		{"HTTP 599 fails (5xx)", def, http(599), breaker.Failure, false},
		{"HTTP status out of range fails", def, http(0), breaker.Failure, false},
		{"HTTP 700 fails", def, http(700), breaker.Failure, false},
		{"HTTP 429 listed as a failure beats 4xx excluded", custom, http(429), breaker.Failure, false},
		{"HTTP 501 excluded wins over 5xx", custom, http(501), breaker.Excluded, false},
		{"HTTP 4xx excluded", custom, http(404), breaker.Excluded, false},
		{"HTTP code listed both ways is excluded", breaker.Classification{HTTPFailures: []string{"503"}, HTTPExcluded: []string{"503"}}, http(503), breaker.Excluded, false},
		{"HTTP class listed both ways is excluded", breaker.Classification{HTTPFailures: []string{"5xx"}, HTTPExcluded: []string{"5xx"}}, http(503), breaker.Excluded, false},
		{"gRPC OK succeeds", def, grpc(0), breaker.Success, false},
		{"gRPC UNAVAILABLE fails", def, grpc(14), breaker.Failure, false},
		{"gRPC DEADLINE_EXCEEDED fails", def, grpc(4), breaker.Failure, false},
		{"gRPC INTERNAL fails", def, grpc(13), breaker.Failure, false},
		{"gRPC NOT_FOUND succeeds", def, grpc(5), breaker.Success, false},
		{"gRPC CANCELLED excluded by default", def, grpc(1), breaker.Excluded, false},
		{"gRPC RESOURCE_EXHAUSTED succeeds by default", def, grpc(8), breaker.Success, false},
		{"gRPC RESOURCE_EXHAUSTED listed by grpc-go-ish name", custom, grpc(8), breaker.Failure, false},
		{"gRPC INTERNAL not listed in custom", custom, grpc(13), breaker.Success, false},
		{"gRPC unknown code number is UNKNOWN", def, grpc(99), breaker.Failure, false},
		{"timeout fails by default", def, breaker.Call{Kind: breaker.CallTimeout}, breaker.Failure, false},
		{"timeout excluded", custom, breaker.Call{Kind: breaker.CallTimeout}, breaker.Excluded, false},
		{"connection error fails by default", def, breaker.Call{Kind: breaker.CallConnectionError}, breaker.Failure, false},
		{"connection error excluded", custom, breaker.Call{Kind: breaker.CallConnectionError}, breaker.Excluded, false},
		{"the breaker's own rejection", def, breaker.Call{Kind: breaker.CallRejected, Code: 503, Duration: time.Hour}, breaker.Rejected, false},
		{"unknown kind counts neither way", def, breaker.Call{}, breaker.Excluded, false},
		{"slow success", def, breaker.Call{Kind: breaker.CallHTTP, Code: 200, Duration: slow + 1}, breaker.Success, true},
		{"exactly the slow duration is not slow", def, breaker.Call{Kind: breaker.CallHTTP, Code: 200, Duration: slow}, breaker.Success, false},
		{"slow failure", def, breaker.Call{Kind: breaker.CallTimeout, Duration: 2 * slow}, breaker.Failure, true},
		{"excluded calls are never slow", def, breaker.Call{Kind: breaker.CallGRPC, Code: 1, Duration: 2 * slow}, breaker.Excluded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := breaker.NewClassifier(tt.c, slow)
			must(t, err)
			if got := k.Classify(tt.call); got != (breaker.Verdict{Outcome: tt.want, Slow: tt.slow}) {
				t.Errorf("Classify(%+v) = %v slow=%v, want %v slow=%v", tt.call, got.Outcome, got.Slow, tt.want, tt.slow)
			}
		})
	}
	if _, err := breaker.NewClassifier(breaker.Classification{HTTPFailures: []string{"50x"}}, 0); err == nil {
		t.Error("NewClassifier accepted 50x")
	}
	// No slow duration: nothing is slow.
	k, _ := breaker.NewClassifier(def, 0)
	if v := k.Classify(breaker.Call{Kind: breaker.CallHTTP, Code: 200, Duration: time.Hour}); v.Slow {
		t.Error("slow without a slow-call duration")
	}
}

func TestGRPCCodeNames(t *testing.T) {
	for name, want := range map[string]int{
		"OK": 0, "CANCELLED": 1, "Canceled": 1, "DEADLINE_EXCEEDED": 4, "DeadlineExceeded": 4,
		"unavailable": 14, "UNAUTHENTICATED": 16, "DATA_LOSS": 15,
	} {
		if got, ok := breaker.GRPCCode(name); !ok || got != want {
			t.Errorf("GRPCCode(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
	if _, ok := breaker.GRPCCode("UNAVAIL"); ok {
		t.Error("GRPCCode accepted UNAVAIL")
	}
}

// TestCountsAdd: a sidecar's classify-and-count loop yields valid Counts
// with the trailing run of failures.
func TestCountsAdd(t *testing.T) {
	k, err := breaker.NewClassifier(breaker.DefaultPolicy().Classification, time.Second)
	must(t, err)
	var c breaker.Counts
	for _, call := range []breaker.Call{
		{Kind: breaker.CallHTTP, Code: 500},
		{Kind: breaker.CallHTTP, Code: 200, Duration: 2 * time.Second},
		{Kind: breaker.CallGRPC, Code: 1},
		{Kind: breaker.CallRejected},
		{Kind: breaker.CallTimeout, Duration: 3 * time.Second},
		{Kind: breaker.CallConnectionError},
	} {
		c.Add(k.Classify(call))
	}
	want := breaker.Counts{Successes: 1, Failures: 3, Slow: 2, Rejected: 1, Excluded: 1, TrailingFailures: 2}
	if c != want {
		t.Errorf("counts %+v, want %+v", c, want)
	}
	must(t, c.Validate())
}
