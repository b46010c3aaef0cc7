package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// gRPC's and raft's background goroutines outlive a closed
		// connection or node by a moment (as in package coordinator).
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

// fakeCoordinator answers from fixed data and records overrides.
type fakeCoordinator struct {
	mu        sync.Mutex
	summaries []*colonyv1.BreakerSummary
	info      *client.BreakerInfo
	status    *colonyv1.StatusResponse
	tree      map[string][]byte // registry: path -> data; children derived
	setCalls  []string
	clearErr  error
}

var _ Coordinator = (*fakeCoordinator)(nil)

func (f *fakeCoordinator) ListBreakers(context.Context, string, string) ([]*colonyv1.BreakerSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.summaries, nil
}

func (f *fakeCoordinator) GetBreaker(_ context.Context, caller, callee string, _ int) (*client.BreakerInfo, error) {
	if f.info == nil || f.info.Record.Caller != caller || f.info.Record.Callee != callee {
		return nil, fmt.Errorf("breaker %s->%s: %w", caller, callee, client.ErrNotFound)
	}
	return f.info, nil
}

func (f *fakeCoordinator) SetOverride(_ context.Context, caller, callee string, mode breaker.OverrideMode, reason, by string, ttl time.Duration) (*breaker.PairRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setCalls = append(f.setCalls, fmt.Sprintf("%s->%s %s %q by %q ttl %v", caller, callee, mode, reason, by, ttl))
	return &breaker.PairRecord{Caller: caller, Callee: callee, Override: &breaker.Override{Mode: mode, Reason: reason, By: by}}, nil
}

func (f *fakeCoordinator) ClearOverride(_ context.Context, caller, callee, reason, by string) (*breaker.PairRecord, error) {
	if f.clearErr != nil {
		return nil, f.clearErr
	}
	return &breaker.PairRecord{Caller: caller, Callee: callee}, nil
}

func (f *fakeCoordinator) Status(context.Context) (*colonyv1.StatusResponse, error) {
	if f.status == nil {
		return nil, fmt.Errorf("status: %w", client.ErrUnavailable)
	}
	return f.status, nil
}

func (f *fakeCoordinator) Children(_ context.Context, p string, _ ...client.ReadOption) ([]string, *colonyv1.Stat, error) {
	seen := map[string]bool{}
	var out []string
	found := false
	for k := range f.tree {
		rest, ok := strings.CutPrefix(k, p+"/")
		if !ok {
			continue
		}
		found = true
		name, _, _ := strings.Cut(rest, "/")
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	if !found {
		return nil, nil, client.ErrNoNode
	}
	return out, &colonyv1.Stat{}, nil
}

func (f *fakeCoordinator) Get(_ context.Context, p string, _ ...client.ReadOption) ([]byte, *colonyv1.Stat, error) {
	d, ok := f.tree[p]
	if !ok {
		return nil, nil, client.ErrNoNode
	}
	return d, &colonyv1.Stat{}, nil
}

func (f *fakeCoordinator) Watch(context.Context, string, colonyv1.WatchKind, ...client.WatchOption) (*client.Watcher, error) {
	return nil, fmt.Errorf("watch: %w", client.ErrUnavailable)
}

func newTestDashboard(t *testing.T, f *fakeCoordinator, mod func(*Config)) *httptest.Server {
	t.Helper()
	cfg := Config{Coordinator: f, PollInterval: 20 * time.Millisecond, Tokens: []Token{{Name: "ops", Secret: testToken}}}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(func() {
		d.Close() // ends event streams, so the server can close
		srv.Close()
	})
	return srv
}

// testToken is the operator token of newTestDashboard; opAuth presents it.
const testToken = "0123456789abcdef0123"

var opAuth = []string{"Authorization", "Bearer " + testToken}

type response struct {
	code int
	body string
	err  apiError
}

func do(t *testing.T, srv *httptest.Server, method, path, contentType, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := response{code: res.StatusCode, body: string(b)}
	json.Unmarshal(b, &r.err)
	return r
}

func TestOverrideBadInput(t *testing.T) {
	f := &fakeCoordinator{}
	srv := newTestDashboard(t, f, nil)
	const js = "application/json"
	long := strings.Repeat("x", breaker.MaxReasonLen+1)
	tests := []struct {
		name        string
		path        string
		contentType string
		body        string
		header      []string
		code        int
		field       string // the field the error must name
	}{
		{"caller not a service name", "/api/breakers/bad%20name/payments/override", js, `{"mode":"force-open","reason":"x"}`, nil, 400, "caller"},
		{"callee not a service name", "/api/breakers/checkout/-x/override", js, `{"mode":"force-open","reason":"x"}`, nil, 400, "callee"},
		{"no content type", "/api/breakers/checkout/payments/override", "", `{"mode":"force-open","reason":"x"}`, nil, 415, "Content-Type"},
		{"form post", "/api/breakers/checkout/payments/override", "application/x-www-form-urlencoded", `mode=force-open&reason=x`, nil, 415, "Content-Type"},
		{"text/plain", "/api/breakers/checkout/payments/override", "text/plain", `{"mode":"force-open","reason":"x"}`, nil, 415, "Content-Type"},
		{"empty body", "/api/breakers/checkout/payments/override", js, ``, nil, 400, "body"},
		{"not JSON", "/api/breakers/checkout/payments/override", js, `mode=force-open`, nil, 400, "body"},
		{"two values", "/api/breakers/checkout/payments/override", js, `{"mode":"force-open","reason":"x"} {}`, nil, 400, "body"},
		{"unknown field", "/api/breakers/checkout/payments/override", js, `{"mode":"force-open","reason":"x","forever":true}`, nil, 400, "forever"},
		{"mode not a string", "/api/breakers/checkout/payments/override", js, `{"mode":1,"reason":"x"}`, nil, 400, "mode"},
		{"no mode", "/api/breakers/checkout/payments/override", js, `{"reason":"x"}`, nil, 400, "mode"},
		{"unknown mode", "/api/breakers/checkout/payments/override", js, `{"mode":"explode","reason":"x"}`, nil, 400, "mode"},
		{"no reason", "/api/breakers/checkout/payments/override", js, `{"mode":"force-open"}`, nil, 400, "reason"},
		{"blank reason", "/api/breakers/checkout/payments/override", js, `{"mode":"force-open","reason":"  "}`, nil, 400, "reason"},
		{"reason too long", "/api/breakers/checkout/payments/override", js, `{"mode":"force-open","reason":"` + long + `"}`, nil, 400, "reason"},
		{"ttl not a duration", "/api/breakers/checkout/payments/override", js, `{"mode":"force-open","reason":"x","ttl":"soon"}`, nil, 400, "ttl"},
		{"ttl negative", "/api/breakers/checkout/payments/override", js, `{"mode":"force-open","reason":"x","ttl":"-5m"}`, nil, 400, "ttl"},
		{"body too large", "/api/breakers/checkout/payments/override", js, `{"mode":"force-open","reason":"` + strings.Repeat("x", maxBody) + `"}`, nil, 413, "body"},
		{"clear without reason", "/api/breakers/checkout/payments/clear", js, `{}`, nil, 400, "reason"},
		{"clear with unknown field", "/api/breakers/checkout/payments/clear", js, `{"reason":"x","mode":"force-open"}`, nil, 400, "mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, srv, "POST", tc.path, tc.contentType, tc.body, append(tc.header, opAuth...)...)
			if r.code != tc.code {
				t.Fatalf("status %d, want %d; body %s", r.code, tc.code, r.body)
			}
			if r.err.Field != tc.field || !strings.HasPrefix(r.err.Error, tc.field+": ") {
				t.Fatalf("error %+v: want it to name field %q", r.err, tc.field)
			}
		})
	}
	if len(f.setCalls) != 0 {
		t.Fatalf("bad input reached the coordinator: %v", f.setCalls)
	}
}

func TestOverrideAccepted(t *testing.T) {
	f := &fakeCoordinator{}
	srv := newTestDashboard(t, f, func(c *Config) { c.By = "ops-console" })
	tests := []struct {
		name   string
		body   string
		header []string
		want   string
	}{
		{"by the token's name", `{"mode":"force-open","reason":"INC-1"}`, nil, `checkout->payments force-open "INC-1" by "token:ops (asserted by ops-console)" ttl 0s`},
		{"a user header from an untrusted peer is ignored", `{"mode":"force-close","reason":" INC-2 ","ttl":"10m"}`, []string{"X-Forwarded-User", "alice"}, `checkout->payments force-closed "INC-2" by "token:ops (asserted by ops-console)" ttl 10m0s`},
		{"disable alias", `{"mode":"disable","reason":"r"}`, nil, `checkout->payments disabled "r" by "token:ops (asserted by ops-console)" ttl 0s`},
		{"shadow", `{"mode":"shadow","reason":"r"}`, nil, `checkout->payments shadow "r" by "token:ops (asserted by ops-console)" ttl 0s`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.setCalls = nil
			r := do(t, srv, "POST", "/api/breakers/checkout/payments/override", "application/json; charset=utf-8", tc.body, append(tc.header, opAuth...)...)
			if r.code != 200 {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			if len(f.setCalls) != 1 || f.setCalls[0] != tc.want {
				t.Fatalf("SetOverride calls %q, want %q", f.setCalls, tc.want)
			}
		})
	}
}

func TestCrossSitePostRejected(t *testing.T) {
	f := &fakeCoordinator{}
	srv := newTestDashboard(t, f, nil)
	r := do(t, srv, "POST", "/api/breakers/checkout/payments/override", "application/json", `{"mode":"force-open","reason":"x"}`,
		"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example", opAuth[0], opAuth[1])
	if r.code != http.StatusForbidden {
		t.Fatalf("cross-site POST: status %d, want 403; %s", r.code, r.body)
	}
	if len(f.setCalls) != 0 {
		t.Fatalf("cross-site POST reached the coordinator: %v", f.setCalls)
	}
	if r := do(t, srv, "GET", "/api/breakers/checkout/payments/override", "", ""); r.code != http.StatusNotFound || len(f.setCalls) != 0 {
		t.Fatalf("GET of a POST endpoint: status %d, want 404", r.code)
	}
}

func TestCoordinatorErrors(t *testing.T) {
	f := &fakeCoordinator{clearErr: fmt.Errorf("clear: %w", status.Error(codes.FailedPrecondition, "checkout->payments has no override"))}
	srv := newTestDashboard(t, f, nil)
	tests := []struct {
		name, method, path, body string
		code                     int
	}{
		{"unknown pair", "GET", "/api/breakers/checkout/nobody", "", 404},
		{"escaped slash in a name", "GET", "/api/breakers/checkout/no%2Fbody", "", 400},
		{"bad caller name", "GET", "/api/breakers/_x/payments", "", 400},
		{"clear without override", "POST", "/api/breakers/checkout/payments/clear", `{"reason":"x"}`, 409},
		{"coordinator down", "GET", "/api/cluster", "", 503},
		{"unknown endpoint", "GET", "/api/nothing", "", 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := ""
			if tc.method == "POST" {
				ct = "application/json"
			}
			r := do(t, srv, tc.method, tc.path, ct, tc.body, opAuth...)
			if r.code != tc.code || r.err.Error == "" {
				t.Fatalf("status %d (error %q), want %d with a message; body %s", r.code, r.err.Error, tc.code, r.body)
			}
		})
	}
}

func TestBreakerDetailFindsLastTrip(t *testing.T) {
	now := time.Now()
	at := func(i int) time.Time { return now.Add(time.Duration(i) * time.Second) }
	override := breaker.HistoryEntry{At: at(0), Kind: breaker.HistoryOverride, Override: &breaker.Override{Mode: breaker.ForceOpen, Reason: "drill", By: "bob"}}
	trip := breaker.HistoryEntry{At: at(1), Kind: breaker.HistoryTransition, From: breaker.Closed, To: breaker.Open, Generation: 2,
		Cause: "failureRate", Evidence: &breaker.Evidence{Calls: 30, Failures: 30, FailureRate: 1, FailingInstances: 1, ReportingInstances: 1}}
	halfOpen := breaker.HistoryEntry{At: at(2), Kind: breaker.HistoryTransition, From: breaker.Open, To: breaker.HalfOpen, Generation: 3, Cause: "openElapsed"}
	reopen := breaker.HistoryEntry{At: at(3), Kind: breaker.HistoryTransition, From: breaker.HalfOpen, To: breaker.Open, Generation: 4,
		Cause: "probeFailed", Evidence: &breaker.Evidence{ProbeFailures: 3}}
	tests := []struct {
		name                 string
		history              []breaker.HistoryEntry
		lastTrip, fromClosed uint64 // generations; 0: none
	}{
		{"no trip", []breaker.HistoryEntry{override}, 0, 0},
		{"tripped from CLOSED", []breaker.HistoryEntry{override, trip, halfOpen}, 2, 0},
		{"re-opened by a failed probe", []breaker.HistoryEntry{override, trip, halfOpen, reopen}, 4, 2},
		{"re-opened, the first trip beyond the history", []breaker.HistoryEntry{halfOpen, reopen}, 4, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeCoordinator{info: &client.BreakerInfo{
				Record:  breaker.PairRecord{Caller: "checkout", Callee: "payments", Record: breaker.Record{State: breaker.HalfOpen, Generation: 3, Probes: map[string]int{"c1": 2}}},
				Policy:  breaker.DefaultPolicy(),
				History: tc.history,
			}}
			srv := newTestDashboard(t, f, nil)
			r := do(t, srv, "GET", "/api/breakers/checkout/payments", "", "")
			if r.code != 200 {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			var d pairDetail
			if err := json.Unmarshal([]byte(r.body), &d); err != nil {
				t.Fatal(err)
			}
			gen := func(h *breaker.HistoryEntry) uint64 {
				if h == nil {
					return 0
				}
				return h.Generation
			}
			if gen(d.LastTrip) != tc.lastTrip || gen(d.TripFromClosed) != tc.fromClosed {
				t.Fatalf("lastTrip gen %d, tripFromClosed gen %d; want %d, %d", gen(d.LastTrip), gen(d.TripFromClosed), tc.lastTrip, tc.fromClosed)
			}
			if d.Record.Probes["c1"] != 2 || len(d.History) != len(tc.history) {
				t.Fatalf("record %+v, %d history entries", d.Record, len(d.History))
			}
		})
	}
}

// TestSidecarsAndEnforcement serves a sidecar's Status from a real gRPC
// server and registers it, plus one whose sidecar does not answer.
func TestSidecarsAndEnforcement(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	now := time.Now()
	colonyv1.RegisterSidecarServer(gs, &fakeSidecar{st: &colonyv1.SidecarStatusResponse{
		Service: "checkout", Instance: "c1", StaleMs: 1200, Mode: "last-known", Degraded: true,
		Pairs: []*colonyv1.PairStatus{{Callee: "payments", State: "OPEN", Generation: 4, Source: "last-known",
			SinceMs: now.Add(-80 * time.Millisecond).UnixMilli(), SeenMs: now.UnixMilli()}},
		Enforcers: []string{"xds client c1"},
		Enforcements: []*colonyv1.Enforcement{
			{Callee: "payments", Generation: 3, State: "CLOSED", Client: "checkout/c1", FromLeaderUs: 9000, Initial: true},
			{Callee: "payments", Generation: 3, State: "CLOSED", Client: "checkout/c1-envoy", FromLeaderUs: 8000, Initial: true},
			{Callee: "payments", Generation: 4, State: "OPEN", Client: "checkout/c1", FromLeaderUs: 12500, FromSeenUs: 2500},
			{Callee: "ledger", Generation: 9, State: "OPEN", Client: "checkout/c1", FromLeaderUs: 1000},
		},
	}})
	go gs.Serve(lis)
	defer gs.Stop()
	// A listener that accepts and never speaks gRPC: the status call times out.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()

	reg := func(svc, inst, sc string) []byte {
		b, _ := json.Marshal(contract.Registration{Service: svc, Instance: inst, Address: "127.0.0.1", Port: 9000, Protocol: "grpc", Sidecar: sc})
		return b
	}
	f := &fakeCoordinator{tree: map[string][]byte{
		"/colony/services/checkout/c1": reg("checkout", "c1", lis.Addr().String()),
		"/colony/services/checkout/c2": reg("checkout", "c2", dead.Addr().String()),
		"/colony/services/payments/p1": reg("payments", "p1", ""),
	}}
	srv := newTestDashboard(t, f, func(c *Config) { c.SidecarTimeout = 300 * time.Millisecond })

	r := do(t, srv, "GET", "/api/sidecars", "", "")
	if r.code != 200 {
		t.Fatalf("status %d: %s", r.code, r.body)
	}
	var list struct {
		Sidecars []struct {
			Registration contract.Registration `json:"registration"`
			Status       *struct {
				Mode     string `json:"mode"`
				Degraded bool   `json:"degraded"`
				StaleMs  string `json:"staleMs"`
			} `json:"status"`
			Error string `json:"error"`
		} `json:"sidecars"`
	}
	if err := json.Unmarshal([]byte(r.body), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Sidecars) != 3 {
		t.Fatalf("%d sidecars, want 3: %s", len(list.Sidecars), r.body)
	}
	c1, c2, p1 := list.Sidecars[0], list.Sidecars[1], list.Sidecars[2]
	if c1.Status == nil || c1.Status.Mode != "last-known" || !c1.Status.Degraded || c1.Status.StaleMs != "1200" {
		t.Errorf("c1: %+v", c1)
	}
	if c2.Status != nil || !strings.Contains(c2.Error, "did not answer") {
		t.Errorf("c2 (dead sidecar): %+v", c2)
	}
	if p1.Registration.Instance != "p1" || !strings.Contains(p1.Error, "no sidecar address") {
		t.Errorf("p1 (no sidecar address): %+v", p1)
	}

	r = do(t, srv, "GET", "/api/breakers/checkout/payments/enforcement", "", "")
	if r.code != 200 {
		t.Fatalf("status %d: %s", r.code, r.body)
	}
	var enf struct {
		Sidecars []pairEnforcement `json:"sidecars"`
		Note     string            `json:"note"`
	}
	if err := json.Unmarshal([]byte(r.body), &enf); err != nil {
		t.Fatal(err)
	}
	if len(enf.Sidecars) != 2 || enf.Note == "" {
		t.Fatalf("enforcement %s", r.body)
	}
	e := enf.Sidecars[0]
	if e.Instance != "c1" || e.LearnedAfterMs == nil || *e.LearnedAfterMs < 79 || *e.LearnedAfterMs > 81 || !e.Degraded || len(e.Pair) == 0 {
		t.Errorf("c1 enforcement %+v", e)
	}
	// Each data-plane client's newest enforcement of this pair, not of others.
	wantClients := []clientEnforcement{
		{Client: "checkout/c1", Generation: 4, State: "OPEN", TripToEnforceMs: 12.5, FromSeenMs: 2.5},
		{Client: "checkout/c1-envoy", Generation: 3, State: "CLOSED", TripToEnforceMs: 8, Initial: true},
	}
	if !reflect.DeepEqual(e.Clients, wantClients) {
		t.Errorf("c1 clients %+v, want %+v", e.Clients, wantClients)
	}
	if enf.Sidecars[1].Error == "" || enf.Sidecars[1].Clients == nil {
		t.Errorf("c2 enforcement %+v: want an error and an empty client list", enf.Sidecars[1])
	}
}

type fakeSidecar struct {
	colonyv1.UnimplementedSidecarServer
	st *colonyv1.SidecarStatusResponse
}

func (s *fakeSidecar) Status(context.Context, *colonyv1.SidecarStatusRequest) (*colonyv1.SidecarStatusResponse, error) {
	return s.st, nil
}

// TestEventsBounded checks the live feed: a snapshot first, a status that
// says the watch is down (the fake cannot watch), and 503 past MaxClients.
func TestEventsBounded(t *testing.T) {
	f := &fakeCoordinator{summaries: []*colonyv1.BreakerSummary{{Caller: "checkout", Callee: "payments", State: "OPEN", Generation: 2, FailureRate: 0.5, WindowCalls: 40}}}
	srv := newTestDashboard(t, f, func(c *Config) { c.MaxClients = 2 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bodies []io.ReadCloser
	defer func() {
		cancel()
		for _, b := range bodies {
			b.Close()
		}
	}()
	for range 2 {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, res.Body)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("status %d, %s", res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	if r := do(t, srv, "GET", "/api/events", "", ""); r.code != http.StatusServiceUnavailable || r.err.Error == "" {
		t.Fatalf("third client: status %d, want 503 with a message: %s", r.code, r.body)
	}
	events := readEvents(bodies[0])
	deadline := time.After(5 * time.Second)
	var gotSnapshot, gotStatus bool
	for !gotSnapshot || !gotStatus {
		select {
		case ev := <-events:
			switch ev.name {
			case eventSnapshot:
				var l breakerList
				if err := json.Unmarshal([]byte(ev.data), &l); err != nil || len(l.Breakers) != 1 || l.Breakers[0].State != "OPEN" || l.Breakers[0].Window.WindowCalls != 40 {
					t.Fatalf("snapshot %s (%v)", ev.data, err)
				}
				gotSnapshot = true
			case eventStatus:
				var st feedStatus
				json.Unmarshal([]byte(ev.data), &st)
				if !st.Watching && st.Error != "" {
					gotStatus = true
				}
			}
		case <-deadline:
			t.Fatalf("no snapshot and watch-down status within 5s (snapshot %v, status %v)", gotSnapshot, gotStatus)
		}
	}
}

type sse struct{ name, data string }

// readEvents parses a server-sent event stream until it ends.
func readEvents(r io.Reader) <-chan sse {
	ch := make(chan sse, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ch <- ev
				}
				ev = sse{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

func TestStaticAssets(t *testing.T) {
	srv := newTestDashboard(t, &fakeCoordinator{}, nil)
	for path, want := range map[string]string{"/": "text/html", "/static/app.js": "javascript", "/static/style.css": "text/css"} {
		r, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 200 || !strings.Contains(r.Header.Get("Content-Type"), want) || r.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: status %d, type %q, CSP %q", path, r.StatusCode, r.Header.Get("Content-Type"), r.Header.Get("Content-Security-Policy"))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Coordinator") {
		t.Fatalf("New without a coordinator: %v", err)
	}
	if _, err := New(Config{Coordinator: &fakeCoordinator{}, HistoryLimit: 500}); err == nil || !strings.Contains(err.Error(), "HistoryLimit") {
		t.Fatalf("HistoryLimit 500: %v", err)
	}
}
