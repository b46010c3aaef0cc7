package breakercmd

import (
	"context"
	"strings"
	"testing"
)

// TestBreakerReportAndWatch: outcomes sent with "breaker report"
// trip the pair (a quorum of one), and "breaker watch" prints the transition with
// its evidence as it is committed.
func TestBreakerReportAndWatch(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()
	if out, err := colony(ctx, t, tripPolicy, "policy", "apply", "-f", "-", "--endpoints", addr); err != nil {
		t.Fatalf("policy apply = %q, %v", out, err)
	}
	if _, err := colony(ctx, t, "", "breaker", "report", "web", "inventory", "--failures", "5", "--endpoints", addr); err == nil || !strings.Contains(err.Error(), "--instance") {
		t.Fatalf("report without --instance: %v, want an error naming --instance", err)
	}
	if _, err := colony(ctx, t, "", "breaker", "report", "web", "nosuch", "--instance", "web-1", "--failures", "5", "--endpoints", addr); err == nil || !strings.Contains(err.Error(), `unknown callee "nosuch"`) {
		t.Fatalf("report for an unknown callee: %v, want the coordinator's NotFound", err)
	}

	wctx, cancel := context.WithCancel(ctx)
	var wout, werr syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := runColony(wctx, &wout, &werr, "", "breaker", "watch", "--caller", "web", "--endpoints", addr)
		done <- err
	}()
	waitFor(t, "the watch to start", func() bool { return strings.Contains(werr.String(), "watching /colony/breakers/web") }, done, &werr)
	for _, inst := range []string{"web-1", "web-2"} {
		out, err := colony(ctx, t, "", "breaker", "report", "web", "inventory", "--instance", inst, "--failures", "10", "--endpoints", addr)
		if err != nil || !strings.Contains(out, "10 failures") {
			t.Fatalf("report from %s = %q, %v", inst, out, err)
		}
	}
	waitFor(t, "the trip", func() bool {
		return strings.Contains(wout.String(), "web->inventory  OPEN") && strings.Contains(wout.String(), "failed (100%)")
	}, done, &werr)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watch ended with %v, want nil on Ctrl-C", err)
	}
}
