package dashboard

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// The 20 x 20 mesh: 20 calling services, 20 called ones, every caller
// calling every callee (400 pairs).
var (
	meshCallers = []string{"web", "mobile-api", "partner-api", "checkout", "cart", "orders", "search", "catalog",
		"recommend", "reviews", "accounts", "auth", "shipping", "fulfilment", "billing", "ads", "email", "notify",
		"analytics", "admin"}
	meshCallees = []string{"payments", "inventory", "pricing", "users", "ledger", "fraud", "tax", "currency",
		"images", "sessions", "geo", "quotes", "stock", "promotions", "loyalty", "rates", "audit", "kv-cache",
		"queue", "profiles"}
	// meshOpen trip and stay OPEN (a one-minute open duration); meshHalfOpen
	// trip on ledger, whose one-second open duration ends in HALF_OPEN,
	// where no probe result arrives for ten minutes.
	meshOpen     = [][2]string{{"web", "payments"}, {"mobile-api", "payments"}, {"checkout", "payments"}, {"orders", "fraud"}}
	meshHalfOpen = [][2]string{{"cart", "ledger"}, {"billing", "ledger"}}
	// meshStock callers send counts without durations, as stock gRPC
	// clients' load reports do.
	meshStock = []string{"partner-api", "analytics", "admin"}
)

// meshTraffic is one report period of a CLOSED pair: a call count, an
// error share under the trip threshold and a latency spread that differ
// from pair to pair and round to round, so the sparklines move.
func meshTraffic(i, j, round int) *colonyv1.OutcomeCounts {
	calls := int64(20 + (i*7+j*13+round*5)%60)
	failures := calls * int64((i*3+j*5)%12) / 100
	if (i+j)%17 == 0 {
		failures = calls * int64(20+round%10) / 100 // a few pairs near trouble
	}
	c := &colonyv1.OutcomeCounts{Successes: calls - failures, Failures: failures}
	if slices.Contains(meshStock, meshCallers[i]) {
		return c
	}
	var l breaker.Latency
	base := time.Duration(1+(i*5+j*11)%40) * time.Millisecond
	for k := range calls {
		switch {
		case k == 0 && (i+j+round)%9 == 0:
			l.Observe(base * 60) // an occasional slow call
		case k%10 == 0:
			l.Observe(base * 4)
		default:
			l.Observe(base)
		}
	}
	c.Latency = l.Slice()
	return c
}

// meshLayout is what the page's geometry says, read in the browser.
type meshLayout struct {
	ViewportWidth   float64  `json:"vw"`
	ViewportHeight  float64  `json:"vh"`
	ScrollX         float64  `json:"scrollX"`
	ScrollY         float64  `json:"scrollY"`
	PageScrollWidth float64  `json:"pageScrollWidth"`
	Cells           int      `json:"cells"`
	Clipped         []string `json:"clipped"`
	OpenOffscreen   []string `json:"openOffscreen"`
	OpenCells       int      `json:"openCells"`
	PairsOverflow   float64  `json:"pairsOverflow"`
	RowStates       []string `json:"rowStates"`
	RowCallees      []string `json:"rowCallees"`
	MatrixCallees   int      `json:"matrixCallees"`
	StockText       string   `json:"stockText"`
	TimedText       string   `json:"timedText"`
}

const meshLayoutJS = `(() => {
  const vw = document.documentElement.clientWidth, vh = window.innerHeight;
  const out = {vw, vh, scrollX: window.scrollX, scrollY: window.scrollY,
    pageScrollWidth: document.documentElement.scrollWidth, cells: 0, clipped: [], openOffscreen: [], openCells: 0};
  for (const c of document.querySelectorAll('#matrix button.cell')) {
    out.cells++;
    const r = c.getBoundingClientRect();
    const name = c.dataset.caller + '->' + c.dataset.callee;
    const parts = [c.querySelector('.st'), c.querySelector('.ratio')];
    const cut = parts.filter((p) => p.scrollWidth > p.clientWidth + 0.5);
    if (r.left < 0 || r.right > vw + 0.5 || r.width < 40 || cut.length) {
      out.clipped.push(name + ' x ' + r.left.toFixed(0) + '..' + r.right.toFixed(0) + ', cut: ' + cut.map((p) => p.className + ' ' + p.scrollWidth + '>' + p.clientWidth).join(' '));
    }
    if (c.dataset.state === 'OPEN') {
      out.openCells++;
      if (r.top < 0 || r.left < 0 || r.bottom > vh + 0.5 || r.right > vw + 0.5) out.openOffscreen.push(name + ' at ' + r.top.toFixed(0) + '..' + r.bottom.toFixed(0));
    }
  }
  const pl = document.getElementById('pairs');
  out.pairsOverflow = pl.scrollWidth - pl.clientWidth;
  const rows = [...document.querySelectorAll('table.pairs tbody tr.pair')];
  out.rowStates = rows.map((r) => r.dataset.state);
  out.rowCallees = rows.map((r) => r.dataset.callee);
  out.matrixCallees = document.querySelectorAll('#matrix th.callee').length;
  const row = (caller, callee) => document.querySelector('table.pairs tr.pair[data-caller="' + caller + '"][data-callee="' + callee + '"]');
  const stock = row('admin', 'inventory'), timed = row('search', 'inventory');
  out.stockText = stock ? stock.textContent : '';
  out.timedText = timed ? timed.textContent : '';
  return out;
})()`

// TestBrowserMesh20x20 feeds a real coordinator a mesh of 20 callers and
// 20 callees (400 pairs: four OPEN, two HALF_OPEN, the rest CLOSED with
// traffic and latency, three callers without latency) and checks in
// headless Chromium what an operator relies on at that size: the troubled
// pairs come first, the filter narrows to one service, no matrix cell is
// clipped and the page never scrolls sideways at 1920x1080 nor at
// 1280x800, and every OPEN pair is on screen at 1920x1080 without
// scrolling. It saves the 1920x1080 view as dashboard-mesh.png (in
// $COLONY_ARTIFACTS or the test's artifact directory; with
// COLONY_UPDATE_DOCS=1 also as docs/dashboard-mesh.png, the README's).
func TestBrowserMesh20x20(t *testing.T) {
	chromium, err := exec.LookPath("/usr/bin/chromium")
	if err != nil {
		if chromium, err = exec.LookPath("chromium"); err != nil {
			t.Skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it): skipping the browser test")
		}
	}
	srv := coordinatortest.StartNode(t)
	c, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	policy := `{"window": "30s", "minFailingInstances": 1, "minimumCalls": 10, "openDuration": "1m", "maxOpenDuration": "2m"}`
	halfOpen := `{"window": "30s", "minFailingInstances": 1, "minimumCalls": 10, "openDuration": "1s", "jitter": 0,` +
		` "probeTimeout": "10m", "halfOpenMaxWait": "10m"}`
	specs := make([]*colonyv1.PolicySpec, len(meshCallees))
	for j, callee := range meshCallees {
		specs[j] = &colonyv1.PolicySpec{Callee: callee, Policy: []byte(policy)}
		if callee == "ledger" {
			specs[j].Policy = []byte(halfOpen)
		}
	}
	if _, err := c.ApplyPolicies(ctx, specs, "test", false); err != nil {
		t.Fatal(err)
	}

	troubled := map[[2]string]bool{}
	for _, p := range append(slices.Clone(meshOpen), meshHalfOpen...) {
		troubled[p] = true
	}
	// feed sends one report period of every pair: traffic for the CLOSED
	// ones, failures for the troubled ones on the first round and their
	// callers' local rejections of the OPEN ones after it.
	feed := func(round int) {
		t.Helper()
		var reports []*colonyv1.OutcomeReport
		for i, caller := range meshCallers {
			for j, callee := range meshCallees {
				r := &colonyv1.OutcomeReport{Caller: caller, Callee: callee, Instance: caller + "-1"}
				switch p := [2]string{caller, callee}; {
				case !troubled[p]:
					r.Counts = meshTraffic(i, j, round)
				case round == 0:
					r.Counts = &colonyv1.OutcomeCounts{Successes: 4, Failures: 36, TrailingFailures: 30}
				case slices.Contains(meshOpen, p):
					r.Counts = &colonyv1.OutcomeCounts{Rejected: int64(10 + 3*(round%4))}
				default:
					continue // HALF_OPEN: nothing, so it stays there
				}
				reports = append(reports, r)
			}
		}
		if err := c.Report(ctx, reports...); err != nil {
			t.Fatal(err)
		}
	}
	feed(0)
	waitStates(ctx, t, c, func(states map[[2]string]string) bool {
		if len(states) != len(meshCallers)*len(meshCallees) {
			return false
		}
		for _, p := range meshOpen {
			if states[p] != "OPEN" {
				return false
			}
		}
		for _, p := range meshHalfOpen {
			if states[p] != "HALF_OPEN" {
				return false
			}
		}
		return true
	})

	d, err := New(Config{Coordinator: c, PollInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(d)
	t.Cleanup(func() {
		d.Close()
		hs.Close()
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // CI runs as root
		chromedp.WindowSize(1920, 1080),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	bctx, cancel = context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	// Waits poll in the page (chromedp.Poll) rather than track nodes: the
	// page rebuilds its 400 rows and cells on every snapshot, and node
	// tracking would stream every one of those changes to the test.
	run(t, bctx, "load the page at 1920x1080",
		chromedp.EmulateViewport(1920, 1080),
		chromedp.Navigate(hs.URL+"/"),
		waitJS(`document.querySelector('html[data-ready="true"] #breakers-grid.dense') && document.querySelector('#conn.conn-live')`),
	)
	// A few report periods while the page follows, for the sparklines (the
	// dashboard samples the windows only while a browser is connected).
	for round := 1; round <= 8; round++ {
		feed(round)
		time.Sleep(600 * time.Millisecond) // pacing the traffic, not waiting for a state
	}
	run(t, bctx, "see the troubled pairs",
		waitJS(`document.querySelector('table.pairs tbody tr:first-child[data-state="OPEN"]') &&
			document.querySelector('#matrix button.cell[data-caller="cart"][data-callee="ledger"][data-state="HALF_OPEN"]') &&
			document.querySelector('table.pairs tr.pair[data-caller="search"][data-callee="inventory"] td.lat') &&
			document.querySelector('#matrix button.cell[data-state="OPEN"] .ratio').textContent.includes('rejecting')`),
	)

	at1920 := layout(t, bctx)
	checkLayout(t, "1920x1080", at1920)
	if at1920.OpenCells != len(meshOpen) || len(at1920.OpenOffscreen) > 0 || at1920.ScrollY != 0 {
		t.Errorf("1920x1080: %d OPEN cells, off screen without scrolling (scrollY %v): %v; want all %d on screen",
			at1920.OpenCells, at1920.ScrollY, at1920.OpenOffscreen, len(meshOpen))
	}
	// Troubled first: the OPEN pairs, then the HALF_OPEN ones, then CLOSED.
	want := slices.Repeat([]string{"OPEN"}, len(meshOpen))
	want = append(want, slices.Repeat([]string{"HALF_OPEN"}, len(meshHalfOpen))...)
	if n := len(want); len(at1920.RowStates) != 400 || !slices.Equal(at1920.RowStates[:n], want) || slices.Contains(at1920.RowStates[n:], "OPEN") {
		t.Errorf("pair list: %d rows starting %v; want 400 with the %d OPEN then the %d HALF_OPEN first",
			len(at1920.RowStates), at1920.RowStates[:min(8, len(at1920.RowStates))], len(meshOpen), len(meshHalfOpen))
	}
	// Latency: percentiles where callers time calls, and words (not 0)
	// where they cannot.
	if !strings.Contains(at1920.TimedText, "≤") || !strings.Contains(at1920.StockText, "no latency from stock callers") {
		t.Errorf("latency in the list: timed row %q, stock caller's row %q", at1920.TimedText, at1920.StockText)
	}
	png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	savePNG(t, "dashboard-mesh.png", png)
	if os.Getenv("COLONY_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(filepath.Join("..", "docs", "dashboard-mesh.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	run(t, bctx, "filter to one service",
		setFilter("payments"),
		waitJS(`!document.querySelector('table.pairs tr.pair[data-callee="inventory"]')`),
	)
	filtered := layout(t, bctx)
	if len(filtered.RowCallees) != len(meshCallers) || slices.ContainsFunc(filtered.RowCallees, func(c string) bool { return c != "payments" }) ||
		filtered.MatrixCallees != 1 || filtered.Cells != len(meshCallers) {
		t.Errorf("filtered to payments: rows to %v, %d matrix columns, %d cells; want the %d pairs calling payments",
			filtered.RowCallees, filtered.MatrixCallees, filtered.Cells, len(meshCallers))
	}
	run(t, bctx, "clear the filter",
		setFilter(""),
		waitJS(`document.querySelector('table.pairs tr.pair[data-callee="inventory"]')`),
	)

	// A pair's detail gives its window's percentiles, or says why not.
	run(t, bctx, "open a timed pair's detail",
		clickJS(`#matrix button.cell[data-caller="search"][data-callee="inventory"]`),
		waitJS(`/latency\s*p50 ≤\d+m?s, p99 [≤>]\d+m?s \(bucket upper bounds; \d+ of \d+ calls timed\)/.test(document.getElementById('detail-live').textContent)`),
	)
	run(t, bctx, "open a stock caller's pair's detail",
		clickJS(`#matrix button.cell[data-caller="admin"][data-callee="inventory"]`),
		waitJS(`document.getElementById('detail-title').textContent === 'admin → inventory' &&
			document.getElementById('detail-live').textContent.includes('no latency from stock callers')`),
	)

	run(t, bctx, "resize to 1280x800",
		chromedp.EmulateViewport(1280, 800),
		// The layout is CSS: it follows the width without a re-render.
		waitJS(`window.innerWidth === 1280 && window.innerHeight === 800`),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)(ctx, tg) // back to the matrix, for the screenshot
			return err
		}),
	)
	at1280 := layout(t, bctx)
	checkLayout(t, "1280x800", at1280)
	png, err = chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	savePNG(t, "dashboard-mesh-1280.png", png)
}

// waitJS waits until a JavaScript expression is truthy in the page.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond))(ctx, tg)
		return err
	})
}

// clickJS clicks the element a CSS selector names, in the page.
func clickJS(selector string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).click()`, selector))(ctx, tg)
		return err
	})
}

// setFilter types into the page's filter as a user would (an input event).
func setFilter(text string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const f = document.getElementById('filter'); f.value = %q; f.dispatchEvent(new Event('input')); })()`, text))(ctx, tg)
		return err
	})
}

// layout reads the page's geometry.
func layout(t *testing.T, ctx context.Context) meshLayout {
	t.Helper()
	l, err := chromedp.Run(ctx, chromedp.Evaluate[meshLayout](meshLayoutJS))
	if err != nil {
		t.Fatalf("reading the layout: %v", err)
	}
	return l
}

// checkLayout: all 400 cells, none clipped, no sideways scrolling of the
// page or of the pair list.
func checkLayout(t *testing.T, size string, l meshLayout) {
	t.Helper()
	if l.Cells != 400 {
		t.Errorf("%s: %d matrix cells, want 400", size, l.Cells)
	}
	if len(l.Clipped) > 0 {
		t.Errorf("%s: %d clipped cells, e.g. %v", size, len(l.Clipped), l.Clipped[:min(5, len(l.Clipped))])
	}
	if l.PageScrollWidth > l.ViewportWidth || l.ScrollX != 0 {
		t.Errorf("%s: the page is %v px wide in a %v px viewport: it overflows sideways", size, l.PageScrollWidth, l.ViewportWidth)
	}
	if l.PairsOverflow > 0 {
		t.Errorf("%s: the pair list overflows its box sideways by %v px", size, l.PairsOverflow)
	}
}

// waitStates polls ListBreakers until ok holds for the pairs' states.
func waitStates(ctx context.Context, t *testing.T, c *client.Client, ok func(map[[2]string]string) bool) {
	t.Helper()
	var last map[[2]string]string
	for {
		rows, err := c.ListBreakers(ctx, "", "")
		if err == nil {
			last = map[[2]string]string{}
			for _, r := range rows {
				last[[2]string{r.GetCaller(), r.GetCallee()}] = r.GetState()
			}
			if ok(last) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the mesh did not reach the expected states: %d pairs, %v", len(last), troubledStates(last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func troubledStates(states map[[2]string]string) string {
	var b strings.Builder
	for p, s := range states {
		if s != "CLOSED" {
			fmt.Fprintf(&b, "%s->%s %s; ", p[0], p[1], s)
		}
	}
	return b.String()
}

// savePNG writes a screenshot to $COLONY_ARTIFACTS, or else the test's
// artifact directory (kept with go test -artifacts).
func savePNG(t *testing.T, name string, png []byte) {
	t.Helper()
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
