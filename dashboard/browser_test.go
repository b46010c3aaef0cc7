package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// liveSetup starts a single-node coordinator, a client, a policy for
// payments that one failing caller instance can trip (open for a minute,
// so the test sees OPEN), and the dashboard on 127.0.0.1:0.
func liveSetup(t *testing.T) (*client.Client, *httptest.Server) {
	c, hs, _ := liveSetupAt(t)
	return c, hs
}

// liveSetupAt is liveSetup that also returns the coordinator's address.
func liveSetupAt(t *testing.T) (*client.Client, *httptest.Server, string) {
	t.Helper()
	srv := coordinatortest.StartNode(t)
	c, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	policy := []byte(`{"minFailingInstances": 1, "minimumCalls": 10, "openDuration": "1m", "maxOpenDuration": "2m"}`)
	_, err = c.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments", Policy: policy}, {Callee: "inventory", Policy: policy}}, "test", false)
	if err != nil {
		t.Fatal(err)
	}
	// The page acts as an anonymous operator: authentication has its own
	// tests (auth_test.go); this one follows the page.
	d, err := New(Config{Coordinator: c, PollInterval: 500 * time.Millisecond, AnonymousOperators: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(d)
	t.Cleanup(func() {
		d.Close() // ends the event streams first, so the server can close
		hs.Close()
	})
	return c, hs, srv.Addr()
}

// report sends one checkout instance's outcomes for checkout->payments.
func report(t *testing.T, c *client.Client, instance string, counts *colonyv1.OutcomeCounts) {
	t.Helper()
	reportPair(t, c, "checkout", "payments", instance, counts)
}

func reportPair(t *testing.T, c *client.Client, caller, callee, instance string, counts *colonyv1.OutcomeCounts) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Report(ctx, &colonyv1.OutcomeReport{Caller: caller, Callee: callee, Instance: instance, Counts: counts}); err != nil {
		t.Fatal(err)
	}
}

// TestLiveFeedFromCoordinator follows the event stream of a dashboard on a
// real coordinator (no browser): the pair's record appears CLOSED, then
// the trip arrives as a pair event.
func TestLiveFeedFromCoordinator(t *testing.T) {
	c, hs := liveSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/api/events", nil)
	res, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	events := readEvents(res.Body)
	waitFor := func(what string, ok func(sse) bool) {
		t.Helper()
		for {
			select {
			case ev, open := <-events:
				if !open {
					t.Fatalf("event stream ended before %s", what)
				}
				if ok(ev) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %s within the deadline", what)
			}
		}
	}
	waitFor("live status", func(ev sse) bool {
		var st feedStatus
		return ev.name == eventStatus && json.Unmarshal([]byte(ev.data), &st) == nil && st.Watching
	})
	report(t, c, "c1", &colonyv1.OutcomeCounts{Failures: 30, TrailingFailures: 30})
	waitFor("OPEN pair event", func(ev sse) bool {
		var p pairSummary
		return ev.name == eventPair && json.Unmarshal([]byte(ev.data), &p) == nil &&
			p.Caller == "checkout" && p.Callee == "payments" && p.State == "OPEN" && p.Window == nil &&
			p.Evidence != nil && p.Evidence.Calls == 30
	})
	// Snapshots carry the evidence of the record's generation too, so a
	// browser that connects now sees why the pair is open.
	waitFor("snapshot with the trip's evidence", func(ev sse) bool {
		var l breakerList
		if ev.name != eventSnapshot || json.Unmarshal([]byte(ev.data), &l) != nil || len(l.Breakers) != 1 {
			return false
		}
		b := l.Breakers[0]
		return b.State == "OPEN" && b.Window != nil && b.Evidence != nil && b.Evidence.FailureRate == 1 && b.Cause == "failureRate"
	})

	// A dashboard started after the trip reads the records when its watch
	// starts: its first snapshot has the evidence as well.
	d2, err := New(Config{Coordinator: c, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	s, err := d2.hub.subscribe("test")
	if err != nil {
		t.Fatal(err)
	}
	defer d2.hub.unsubscribe(s)
	for {
		select {
		case f := <-s.ch:
			var l breakerList
			name, data, _ := strings.Cut(strings.TrimPrefix(string(f), "event: "), "\ndata: ")
			if name == eventSnapshot && json.Unmarshal([]byte(data), &l) == nil && len(l.Breakers) == 1 && l.Breakers[0].Evidence != nil {
				return
			}
		case <-ctx.Done():
			t.Fatal("a new dashboard's snapshots never carried the open pair's evidence")
		}
	}
}

// TestTrafficFromCoordinator: the leader's live window reaches
// GET /api/breakers with its slow and rejected calls, a call rate and the
// latency percentiles of the calls reported with durations.
func TestTrafficFromCoordinator(t *testing.T) {
	c, hs := liveSetup(t)
	// 30 calls within 10 ms, 10 within 20 ms.
	report(t, c, "c1", &colonyv1.OutcomeCounts{Successes: 30, Failures: 10, Slow: 8, Rejected: 5, Latency: []int64{0, 0, 0, 30, 10}})
	res, err := hs.Client().Get(hs.URL + "/api/breakers")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var l breakerList
	if err := json.NewDecoder(res.Body).Decode(&l); err != nil || len(l.Breakers) != 1 || l.Breakers[0].Window == nil {
		t.Fatalf("GET /api/breakers: %+v (%v)", l, err)
	}
	w := l.Breakers[0].Window
	if w.WindowCalls != 40 || w.FailureRate != 0.25 || w.SlowCalls != 8 || w.SlowCallRate != 0.2 || w.RejectedCalls != 5 || w.WindowMs <= 0 || w.CallRate <= 0 || w.RejectRate != 0.5 {
		t.Fatalf("window %+v: want 40 calls at 25%% failures, 8 slow (20%%), 5 rejected (0.5/s), over a counted time with a rate", *w)
	}
	if w.LatencySamples != 40 || w.P50Ms != 10 || w.P99Ms != 20 {
		t.Fatalf("window %+v: want 40 latency samples, p50 10 ms, p99 20 ms", *w)
	}

	// OPEN: the window counts nothing, but the callers' rejections are
	// what an operator wants to see.
	report(t, c, "c1", &colonyv1.OutcomeCounts{Failures: 30, TrailingFailures: 30})
	waitRecord(t, c, func(r breaker.PairRecord) bool { return r.State == breaker.Open })
	report(t, c, "c1", &colonyv1.OutcomeCounts{Rejected: 25})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := c.ListBreakers(ctx, "checkout", "payments")
	if err != nil || len(rows) != 1 {
		t.Fatalf("ListBreakers: %v %v", rows, err)
	}
	// GET /api/breakers carries the trip's evidence too (what ?snapshot=1 shows).
	var open breakerList
	for deadline := time.Now().Add(5 * time.Second); ; {
		res, err := hs.Client().Get(hs.URL + "/api/breakers")
		if err != nil {
			t.Fatal(err)
		}
		open = breakerList{}
		err = json.NewDecoder(res.Body).Decode(&open)
		res.Body.Close()
		if err == nil && len(open.Breakers) == 1 && open.Breakers[0].Evidence != nil && open.Breakers[0].Cause == "failureRate" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/breakers of an open pair: %+v (%v); want the trip's evidence", open, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rows[0].GetState() != "OPEN" || rows[0].GetRejectedCalls() != 30 {
		t.Fatalf("open pair: %v with %d rejected calls, want OPEN with the 5 + 25 reported in the last 10s", rows[0].GetState(), rows[0].GetRejectedCalls())
	}
}

// TestBrowser drives the page in headless Chromium against a real
// coordinator: the cell turns OPEN without a reload when the breaker
// trips, and an override set from the page (reason, confirmation) is
// applied. It saves a screenshot in $COLONY_ARTIFACTS or the test's
// artifact directory (go test -artifacts keeps it).
func TestBrowser(t *testing.T) {
	chromium, err := exec.LookPath("/usr/bin/chromium")
	if err != nil {
		if chromium, err = exec.LookPath("chromium"); err != nil {
			t.Skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it): skipping the browser test")
		}
	}
	c, hs, coord := liveSetupAt(t)
	// A first report creates the pair's record, CLOSED; two more pairs
	// fill the matrix out (web->inventory has none: an empty cell).
	report(t, c, "c1", &colonyv1.OutcomeCounts{Successes: 5})
	reportPair(t, c, "checkout", "inventory", "c1", &colonyv1.OutcomeCounts{Successes: 40, Failures: 2})
	reportPair(t, c, "web", "payments", "w1", &colonyv1.OutcomeCounts{Successes: 12})
	waitRecord(t, c, func(r breaker.PairRecord) bool { return r.State == breaker.Closed })
	// checkout/c1 has a real sidecar and a proxyless gRPC client, so the
	// pair's detail has a data-plane client's trip-to-enforce to show.
	caller := startEnforcingCaller(t, coord)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // CI runs as root
		chromedp.WindowSize(1400, 1100),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()
	// The browser lives as long as the context of the first call: start it
	// without a deadline, then bound the steps.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	ctx, cancel := context.WithTimeout(bctx, 25*time.Second)
	defer cancel()

	cell := `button.cell[data-caller="checkout"][data-callee="payments"]`
	var marker string
	run(t, ctx, "load the page",
		chromedp.Navigate(hs.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(cell+`[data-state="CLOSED"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn.conn-live`)),
		// The first full state is on screen: what headless capture waits for.
		chromedp.WaitVisible(chromedp.CSS(`html[data-ready="true"] #sidecars table`)),
		chromedp.WaitVisible(chromedp.CSS(`table.pairs tr.pair[data-caller="checkout"][data-callee="inventory"] svg.spark-err`)),
		// Survives only if the page is never reloaded.
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[any](`window.__colonyTestMarker = "loaded-once"`)(ctx, tg)
			return err
		}),
	)

	// The pair list reads as the matrix does, caller first, with the
	// window's error share.
	// (Reported again: the first report may have left the 10s window.)
	reportPair(t, c, "checkout", "inventory", "c1", &colonyv1.OutcomeCounts{Successes: 40, Failures: 2})
	var row string
	for deadline := time.Now().Add(10 * time.Second); ; {
		if row, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`table.pairs tr.pair[data-caller="checkout"][data-callee="inventory"]`))); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(row, "checkout → inventory") && strings.Contains(row, "4.8%") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkout->inventory's row: %q; want the direction and 2 of 42 calls failed (4.8%%)", row)
		}
		time.Sleep(100 * time.Millisecond)
	}
	run(t, ctx, "filter the pairs",
		chromedp.SendKeys(chromedp.CSS(`#filter`), "web"),
		chromedp.WaitNotPresent(chromedp.CSS(`table.pairs tr.pair[data-caller="checkout"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.pairs tr.pair[data-caller="web"]`)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[any](`(() => { const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input')); })()`)(ctx, tg)
			return err
		}),
		chromedp.WaitVisible(chromedp.CSS(`table.pairs tr.pair[data-caller="checkout"][data-callee="payments"]`)),
	)

	report(t, c, "c1", &colonyv1.OutcomeCounts{Failures: 30, TrailingFailures: 30})
	run(t, ctx, "see the cell turn OPEN, and its pair first in the list",
		chromedp.WaitVisible(chromedp.CSS(cell+`[data-state="OPEN"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.pairs tbody tr:first-child[data-caller="checkout"][data-callee="payments"][data-state="OPEN"]`)),
	)
	marker, err = chromedp.Run(ctx, chromedp.Evaluate[string](`window.__colonyTestMarker`))
	if err != nil {
		t.Fatal(err)
	}
	if marker != "loaded-once" {
		t.Fatalf("the page was reloaded (marker %q)", marker)
	}
	screenshot(t, ctx, "dashboard-open.png")
	open := waitRecord(t, c, func(r breaker.PairRecord) bool { return r.State == breaker.Open })
	waitEnforced(t, caller, "payments", open.Generation)

	run(t, ctx, "open the pair: the client's trip-to-enforce is shown",
		chromedp.Click(chromedp.CSS(cell)),
		chromedp.WaitVisible(chromedp.CSS(`#detail-history table`)),
		chromedp.WaitVisible(chromedp.CSS(`#detail-enforcement li[data-client="checkout/c1"] .enforce-ms`)),
	)
	policy, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#detail-policy .classification`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(policy, "Failures: HTTP 5xx; gRPC UNKNOWN") || strings.Contains(policy, "{") {
		t.Fatalf("the policy's classification on the page: %q; want it in words", policy)
	}
	enforceMs, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#detail-enforcement li[data-client="checkout/c1"]`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(enforceMs, "OPEN") || !strings.Contains(enforceMs, fmt.Sprintf("gen %d", open.Generation)) {
		t.Fatalf("the client's enforcement on the page: %q; want OPEN, generation %d and a latency", enforceMs, open.Generation)
	}

	run(t, ctx, "ask to force it closed",
		chromedp.Click(chromedp.CSS(`#act-force-closed`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm[open]`)),
		// Confirming without a reason does nothing.
		chromedp.Click(chromedp.CSS(`#confirm-ok`)),
	)
	time.Sleep(200 * time.Millisecond)
	if info := getBreaker(t, c); info.Record.Override != nil {
		t.Fatalf("an override was set without a reason: %+v", info.Record.Override)
	}
	run(t, ctx, "give a reason and confirm",
		chromedp.WaitVisible(chromedp.CSS(`#confirm[open]`)),
		chromedp.SendKeys(chromedp.CSS(`#confirm-reason`), "false alarm, INC-42"),
		chromedp.SendKeys(chromedp.CSS(`#confirm-ttl`), "10m"),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#confirm[open]`)),
	)
	rec := waitRecord(t, c, func(r breaker.PairRecord) bool { return r.Override != nil })
	if o := rec.Override; o.Mode != breaker.ForceClosed || o.Reason != "false alarm, INC-42" || o.By != "anonymous@127.0.0.1 (asserted by dashboard)" || o.Until.IsZero() || rec.State != breaker.Closed {
		t.Fatalf("override %+v, state %v: want force-closed with the reason, by dashboard, expiring", o, rec.State)
	}
	run(t, ctx, "see the override on the page",
		chromedp.WaitVisible(chromedp.CSS(cell+`[data-override="force-closed"][data-state="CLOSED"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#detail-history tr.kind-override`)),
		chromedp.WaitVisible(chromedp.CSS(`#cluster table`)),
	)

	screenshot(t, ctx, "dashboard.png")

	// ?snapshot=1 renders once and follows nothing, for headless capture.
	run(t, ctx, "load a snapshot",
		chromedp.Navigate(hs.URL+"/?snapshot=1"),
		chromedp.WaitVisible(chromedp.CSS(`html[data-ready="true"] `+cell+`[data-override="force-closed"]`)),
	)
	conn, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#conn`)))
	if err != nil || conn != "snapshot" {
		t.Fatalf("snapshot mode's feed indicator: %q (%v)", conn, err)
	}
}

// screenshot saves the whole page as a PNG in $COLONY_ARTIFACTS, or else
// the test's artifact directory (kept with go test -artifacts).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("COLONY_ARTIFACTS")
	if dir == "" {
		dir = t.ArtifactDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

func run(t *testing.T, ctx context.Context, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}

func getBreaker(t *testing.T, c *client.Client) *client.BreakerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.GetBreaker(ctx, "checkout", "payments", 0)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// waitRecord polls the pair's record until ok holds (5s at most).
func waitRecord(t *testing.T, c *client.Client, ok func(breaker.PairRecord) bool) breaker.PairRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := c.GetBreaker(ctx, "checkout", "payments", 0)
		cancel()
		if err == nil && ok(info.Record) {
			return info.Record
		}
		last = fmt.Sprint(err)
		if err == nil {
			last = fmt.Sprintf("%+v", info.Record)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the record did not reach the expected state: %s", last)
	return breaker.PairRecord{}
}
