package guard

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSlowCallIsPerGuard: whether a call counts as slow follows the
// SlowCall of the guard's own Config, so two guards in one process can
// differ and nothing global is written while calls run.
func TestSlowCallIsPerGuard(t *testing.T) {
	// A call that takes at least a millisecond.
	next := roundTripper(func(*http.Request) (*http.Response, error) {
		time.Sleep(time.Millisecond)
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}, nil
	})
	tests := []struct {
		name     string
		slowCall time.Duration
		wantSlow int64
	}{
		{"zero: no call is slow", 0, 0},
		{"a 1ms call is slower than 1µs", time.Microsecond, 1},
		{"a 1ms call is not slower than 1h", time.Hour, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &Guard{cfg: Config{SlowCall: tt.slowCall}, outcome: map[string]*counters{}}
			none := map[string]*pair{}
			g.pairs.Store(&none)
			resp, err := g.RoundTripper("payments", next).RoundTrip(httptest.NewRequest(http.MethodGet, "http://payments/", nil))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			c := g.outcome["payments"]
			if c == nil {
				t.Fatal("the call was not counted")
			}
			if got := c.successes.Load(); got != 1 {
				t.Errorf("successes = %d, want 1", got)
			}
			if got := c.slow.Load(); got != tt.wantSlow {
				t.Errorf("slow = %d, want %d", got, tt.wantSlow)
			}
		})
	}
}
