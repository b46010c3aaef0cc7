package breakercmd

import (
	"context"
	"strings"
	"testing"

	"github.com/colonymesh/colony/breaker"
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
		return strings.Contains(wout.String(), "web->inventory") && strings.Contains(wout.String(), " OPEN ") && strings.Contains(wout.String(), "failed (100%)")
	}, done, &werr)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watch ended with %v, want nil on Ctrl-C", err)
	}

	// breaker ls says why the OPEN pair tripped, not "-".
	out, err := colony(ctx, t, "", "breaker", "ls", "--endpoints", addr)
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "web ") && strings.Contains(l, "inventory") {
			row = l
		}
	}
	if !strings.Contains(row, "OPEN") || !strings.Contains(row, "100% of 10 at trip") || !strings.Contains(row, "1/1 at trip") {
		t.Errorf("breaker ls row of the OPEN pair = %q; want its failure rate and failing instances\n%s", row, out)
	}
}

// TestWatchColumnsAlign: the state, generation and detail of every line
// start where the header's do, whatever the pair's and state's lengths.
func TestWatchColumnsAlign(t *testing.T) {
	c := &watchColumns{}
	lines := []string{c.header()}
	for _, r := range []breaker.PairRecord{
		{Caller: "web", Callee: "db", Record: breaker.Record{State: breaker.Open, Generation: 3}, Cause: "failure rate"},
		{Caller: "checkout", Callee: "payments", Record: breaker.Record{State: breaker.HalfOpen, Generation: 12}},
		{Caller: "a", Callee: "b", Record: breaker.Record{State: breaker.Closed, Generation: 100}, Cause: "probes succeeded"},
	} {
		lines = append(lines, c.line(r))
	}
	want := strings.Index(lines[0], "STATE")
	for _, l := range lines[1:] {
		i := -1
		for _, s := range []string{"OPEN", "HALF_OPEN", "CLOSED"} {
			if j := strings.Index(l, " "+s); j >= 0 {
				i = j + 1
				break
			}
		}
		if i != want {
			t.Errorf("state at column %d, header's at %d:\n%s\n%s", i, want, lines[0], l)
		}
	}
	if d := strings.Index(lines[0], "DETAIL"); strings.Index(lines[1], "cause failure rate") != d {
		t.Errorf("detail not under DETAIL:\n%s\n%s", lines[0], lines[1])
	}
}
