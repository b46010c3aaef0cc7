package dashboard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

const overridePath = "/api/breakers/checkout/payments/override"
const overrideBody = `{"mode":"force-open","reason":"INC-7"}`

// TestAuthForgedUserHeader: a user header from a peer that is not a
// trusted proxy neither acts nor reaches the audit trail; from a trusted
// proxy it names the operator, with the proxy's address.
func TestAuthForgedUserHeader(t *testing.T) {
	forged := []string{"X-Forwarded-User", "ceo@company"}
	t.Run("untrusted peer", func(t *testing.T) {
		f := &fakeCoordinator{}
		logs := &lockedBuffer{}
		srv := newTestDashboard(t, f, func(c *Config) {
			c.TrustedProxyHeader = "X-Forwarded-User"
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
			c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		})
		r := do(t, srv, "POST", overridePath, "application/json", overrideBody, forged...)
		if r.code != http.StatusForbidden || r.err.Field != "Authorization" || !strings.Contains(r.err.Error, "needs an operator") {
			t.Fatalf("forged header: status %d, %s; want 403 naming what is needed", r.code, r.body)
		}
		// With a token the request acts, as the token, not as the header's name.
		if r := do(t, srv, "POST", overridePath, "application/json", overrideBody, append(forged, opAuth...)...); r.code != 200 {
			t.Fatalf("token and forged header: status %d, %s", r.code, r.body)
		}
		want := `checkout->payments force-open "INC-7" by "token:ops (asserted by dashboard)" ttl 0s`
		if len(f.setCalls) != 1 || f.setCalls[0] != want {
			t.Fatalf("SetOverride calls %q, want only %q", f.setCalls, want)
		}
		if r := do(t, srv, "GET", "/api/me", "", "", forged...); r.code != 200 || strings.Contains(r.body, "ceo") || !strings.Contains(r.body, `"operator":false`) {
			t.Fatalf("/api/me with a forged header: %d %s", r.code, r.body)
		}
		if l := logs.String(); !strings.Contains(l, "not a trusted proxy") || !strings.Contains(l, "ceo@company") {
			t.Fatalf("the ignored header was not logged: %s", l)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		f := &fakeCoordinator{}
		srv := newTestDashboard(t, f, func(c *Config) {
			c.TrustedProxyHeader = "X-Forwarded-User"
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		})
		if r := do(t, srv, "POST", overridePath, "application/json", overrideBody, forged...); r.code != 200 {
			t.Fatalf("user from a trusted proxy: status %d, %s", r.code, r.body)
		}
		want := `checkout->payments force-open "INC-7" by "proxy:ceo@company via 127.0.0.1 (asserted by dashboard)" ttl 0s`
		if len(f.setCalls) != 1 || f.setCalls[0] != want {
			t.Fatalf("SetOverride calls %q, want %q", f.setCalls, want)
		}
		r := do(t, srv, "POST", overridePath, "application/json", overrideBody, "X-Forwarded-User", strings.Repeat("u", 300))
		if r.code != 400 || r.err.Field != "X-Forwarded-User" || len(f.setCalls) != 1 {
			t.Fatalf("overlong proxy user: status %d %s", r.code, r.body)
		}
	})
}

// lockedBuffer collects log output written from server goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAuthHostAndOrigin: a foreign Host (DNS rebinding) is refused for
// every request; a foreign Origin is refused for what acts and for the
// live stream.
func TestAuthHostAndOrigin(t *testing.T) {
	f := &fakeCoordinator{}
	srv := newTestDashboard(t, f, func(c *Config) { c.AllowedOrigins = []string{"https://ops.example.com"} })
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	own := "http://127.0.0.1:" + strconv.Itoa(port)
	hostTests := []struct {
		host string
		code int
	}{
		{"127.0.0.1:" + strconv.Itoa(port), 200},
		{"localhost:" + strconv.Itoa(port), 200},
		{"[::1]:" + strconv.Itoa(port), 200},
		{"LOCALHOST.", 200},
		{"attacker.example:" + strconv.Itoa(port), http.StatusMisdirectedRequest},
		{"127.0.0.1.attacker.example", http.StatusMisdirectedRequest},
	}
	for _, tc := range hostTests {
		for _, path := range []string{"/", "/api/breakers", "/api/me"} {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			req.Host = tc.host
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.code {
				t.Errorf("GET %s with Host %s: status %d, want %d: %s", path, tc.host, res.StatusCode, tc.code, body)
			}
		}
	}
	// A foreign Host with a valid token does not act either.
	req, _ := http.NewRequest("POST", srv.URL+overridePath, strings.NewReader(overrideBody))
	req.Host = "rebound.attacker.example"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(opAuth[0], opAuth[1])
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMisdirectedRequest || len(f.setCalls) != 0 {
		t.Fatalf("POST with a foreign Host: status %d, calls %v", res.StatusCode, f.setCalls)
	}

	originTests := []struct {
		origin string
		code   int
	}{
		{"http://attacker.example", http.StatusForbidden},
		{"http://localhost:" + strconv.Itoa(port+1), http.StatusForbidden}, // another local service
		{"http://127.0.0.1", http.StatusForbidden},                         // port 80 is not this one
		{"null", http.StatusForbidden},
		{own, 200},
		{"https://ops.example.com", 200}, // listed in AllowedOrigins
	}
	for _, tc := range originTests {
		f.setCalls = nil
		r := do(t, srv, "POST", overridePath, "application/json", overrideBody, "Origin", tc.origin, opAuth[0], opAuth[1])
		if r.code != tc.code {
			t.Errorf("POST with Origin %s: status %d, want %d: %s", tc.origin, r.code, tc.code, r.body)
		}
		if tc.code != 200 && (len(f.setCalls) != 0 || r.err.Field != "Origin") {
			t.Errorf("POST with Origin %s: calls %v, error %+v", tc.origin, f.setCalls, r.err)
		}
	}
	// The live stream too; reads need no Origin check.
	if r := do(t, srv, "GET", "/api/events", "", "", "Origin", "http://attacker.example"); r.code != http.StatusForbidden {
		t.Errorf("events from a foreign origin: status %d, want 403", r.code)
	}
	if r := do(t, srv, "GET", "/api/breakers", "", "", "Origin", "http://attacker.example"); r.code != 200 {
		t.Errorf("GET /api/breakers with an Origin: status %d, want 200", r.code)
	}
}

// TestAuthReadOnlyWithoutCredentials: with no credential a browser reads
// but does not act (403 naming what is needed); with Read authenticated it
// does not even read, yet can still load the page and log in.
func TestAuthReadOnlyWithoutCredentials(t *testing.T) {
	f := &fakeCoordinator{}
	srv := newTestDashboard(t, f, nil)
	if r := do(t, srv, "GET", "/api/breakers", "", ""); r.code != 200 {
		t.Fatalf("anonymous read: %d %s", r.code, r.body)
	}
	for _, p := range []string{overridePath, "/api/breakers/checkout/payments/clear"} {
		r := do(t, srv, "POST", p, "application/json", `{"mode":"force-open","reason":"x"}`)
		if r.code != http.StatusForbidden || r.err.Field != "Authorization" || !strings.Contains(r.err.Error, "operator") || !strings.Contains(r.err.Error, "token") {
			t.Fatalf("anonymous POST %s: %d %s; want 403 naming what is needed", p, r.code, r.body)
		}
	}
	if r := do(t, srv, "POST", overridePath, "application/json", overrideBody, "Authorization", "Bearer wrong-token-wrong-token"); r.code != http.StatusUnauthorized || r.err.Field != "Authorization" {
		t.Fatalf("wrong bearer token: %d %s", r.code, r.body)
	}
	if len(f.setCalls) != 0 {
		t.Fatalf("refused requests reached the coordinator: %v", f.setCalls)
	}

	closed := newTestDashboard(t, f, func(c *Config) { c.Read = ReadAuthenticated })
	for path, want := range map[string]int{"/": 200, "/static/app.js": 200, "/api/me": 200, "/api/breakers": 401, "/api/events": 401, "/api/cluster": 401} {
		if r := do(t, closed, "GET", path, "", ""); r.code != want {
			t.Errorf("Read authenticated, anonymous GET %s: %d, want %d", path, r.code, want)
		}
	}
	if r := do(t, closed, "GET", "/api/breakers", "", "", opAuth...); r.code != 200 {
		t.Errorf("Read authenticated, GET with a token: %d %s", r.code, r.body)
	}
}

// TestAuthTokenLogin: a login sets an HttpOnly, Secure, SameSite=Strict
// cookie that makes the browser the token's operator.
func TestAuthTokenLogin(t *testing.T) {
	f := &fakeCoordinator{}
	srv := newTestDashboard(t, f, nil)
	if r := do(t, srv, "POST", "/api/login", "application/json", `{"token":"not-the-token-at-all"}`); r.code != http.StatusUnauthorized || r.err.Field != "token" {
		t.Fatalf("login with a wrong token: %d %s", r.code, r.body)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/api/login", strings.NewReader(`{"token":"`+testToken+`"}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if res.StatusCode != 200 || cookie == nil || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: status %d, cookie %+v", res.StatusCode, cookie)
	}
	r := do(t, srv, "POST", overridePath, "application/json", overrideBody, "Cookie", sessionCookie+"="+cookie.Value)
	if r.code != 200 || len(f.setCalls) != 1 || !strings.Contains(f.setCalls[0], `by "token:ops (asserted by dashboard)"`) {
		t.Fatalf("POST with the session cookie: %d %s, calls %v", r.code, r.body, f.setCalls)
	}
	// A tampered cookie is anonymous.
	forged := strings.Replace(cookie.Value, cookie.Value[:4], "YWRt", 1)
	if r := do(t, srv, "POST", overridePath, "application/json", overrideBody, "Cookie", sessionCookie+"="+forged); r.code != http.StatusForbidden {
		t.Fatalf("POST with a tampered cookie: %d %s", r.code, r.body)
	}
}

// TestAuthLiveViewersPerIdentity: one identity (one remote IP for
// anonymous readers) cannot take every live stream.
func TestAuthLiveViewersPerIdentity(t *testing.T) {
	f := &fakeCoordinator{}
	srv := newTestDashboard(t, f, func(c *Config) { c.MaxClients = 4; c.MaxClientsPerIdentity = 2 })
	ctx, cancel := context.WithCancel(context.Background())
	var bodies []io.ReadCloser
	defer func() {
		cancel()
		for _, b := range bodies {
			b.Close()
		}
	}()
	open := func(header ...string) int {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode == 200 {
			bodies = append(bodies, res.Body)
		} else {
			res.Body.Close()
		}
		return res.StatusCode
	}
	for i := range 2 {
		if code := open(); code != 200 {
			t.Fatalf("anonymous stream %d: %d", i, code)
		}
	}
	if code := open(); code != http.StatusTooManyRequests {
		t.Fatalf("third anonymous stream from one IP: %d, want 429", code)
	}
	// The operator is not locked out by the anonymous streams.
	if code := open(opAuth...); code != 200 {
		t.Fatalf("operator stream after two anonymous ones: %d", code)
	}
	// Closing a stream frees its slot.
	bodies[0].Close()
	bodies = bodies[1:]
	deadline := time.Now().Add(5 * time.Second)
	for code := open(); code != 200; code = open() {
		if time.Now().After(deadline) {
			t.Fatalf("a closed anonymous stream's slot was never freed: %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testPKI is a CA with the dashboard's server certificate, and
// certificates for an operator and an ordinary client.
type testPKI struct {
	dash, operator, client *trust.Material
	pool                   *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := trust.NewCA(dir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	load := func(leaf trust.Leaf) *trust.Material {
		files, err := ca.Issue(dir, leaf)
		if err != nil {
			t.Fatal(err)
		}
		m, err := trust.Load(files, ca.TrustDomain, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	p := testPKI{
		dash:     load(trust.Leaf{Role: trust.RoleNode, Name: "dash", Hosts: []string{"127.0.0.1", "localhost"}}),
		operator: load(trust.Leaf{Role: trust.RoleOperator, Name: "alice"}),
		client:   load(trust.Leaf{Role: trust.RoleClient, Name: "bob"}),
	}
	p.pool = p.dash.Pool()
	return p
}

// serveTLS serves d over real TLS on 127.0.0.1 and returns its URL.
func serveTLS(t *testing.T, d *Dashboard) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: d, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(tls.NewListener(lis, d.TLSConfig()))
	}()
	t.Cleanup(func() {
		d.Close()
		hs.Close()
		<-done
	})
	return "https://" + lis.Addr().String()
}

func httpsClient(t *testing.T, pool *x509.CertPool, m *trust.Material) *http.Client {
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if m != nil {
		cfg = m.ClientConfig("")
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestAuthClientCertificate serves HTTPS: no certificate reads only, a
// client certificate reads only, an operator certificate acts and is
// recorded by its SPIFFE ID (not by a forged header).
func TestAuthClientCertificate(t *testing.T) {
	pki := newTestPKI(t)
	f := &fakeCoordinator{}
	d, err := New(Config{Coordinator: f, TLS: pki.dash, TrustedProxyHeader: "X-Forwarded-User",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	url := serveTLS(t, d)
	post := func(c *http.Client) (int, string) {
		req, _ := http.NewRequest("POST", url+overridePath, strings.NewReader(overrideBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-User", "ceo@company")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	get := func(c *http.Client) int {
		res, err := c.Get(url + "/api/breakers")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for name, c := range map[string]*http.Client{"no certificate": httpsClient(t, pki.pool, nil), "client certificate": httpsClient(t, pki.pool, pki.client)} {
		if code := get(c); code != 200 {
			t.Errorf("%s: GET %d", name, code)
		}
		if code, body := post(c); code != http.StatusForbidden || !strings.Contains(body, "role operator or admin") {
			t.Errorf("%s: POST %d %s; want 403 naming the certificate role needed", name, code, body)
		}
	}
	if len(f.setCalls) != 0 {
		t.Fatalf("non-operators reached the coordinator: %v", f.setCalls)
	}
	// Browsers negotiate HTTP/2: the listener speaks it.
	h2 := &http.Transport{TLSClientConfig: pki.operator.ClientConfig(""), ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	res, err := (&http.Client{Transport: h2}).Get(url + "/api/me")
	if err != nil {
		t.Fatal(err)
	}
	me, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.ProtoMajor != 2 || !strings.Contains(string(me), `"by":"spiffe://colony.local/operator/alice"`) {
		t.Fatalf("GET /api/me over HTTP/2: %s %s", res.Proto, me)
	}
	op := httpsClient(t, pki.pool, pki.operator)
	if code, body := post(op); code != 200 {
		t.Fatalf("operator certificate: POST %d %s", code, body)
	}
	want := `checkout->payments force-open "INC-7" by "spiffe://colony.local/operator/alice (asserted by dashboard)" ttl 0s`
	if len(f.setCalls) != 1 || f.setCalls[0] != want {
		t.Fatalf("SetOverride calls %q, want %q", f.setCalls, want)
	}
}

// TestAuthSidecarTLS: with TLS material the dashboard dials sidecars with
// TLS, verifying the sidecar's host and presenting its own certificate.
func TestAuthSidecarTLS(t *testing.T) {
	pki := newTestPKI(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The sidecar here uses the dashboard's node certificate for 127.0.0.1:
	// what matters is that it is verified for the host dialled.
	seen := make(chan string, 1)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.dash.ServerConfig(tls.RequireAndVerifyClientCert))),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if id, ok := trust.FromContext(ctx, pki.dash.TrustDomain()); ok {
				select {
				case seen <- id.ID:
				default:
				}
			}
			return h(ctx, req)
		}))
	colonyv1.RegisterSidecarServer(gs, &fakeSidecar{st: &colonyv1.SidecarStatusResponse{Service: "checkout", Instance: "c1"}})
	go gs.Serve(lis)
	defer gs.Stop()
	st, err := sidecarStatus(context.Background(), lis.Addr().String(), pki.operator, 5*time.Second)
	if err != nil || st.GetInstance() != "c1" {
		t.Fatalf("Status over TLS: %v, %v", st, err)
	}
	if id := <-seen; id != "spiffe://colony.local/operator/alice" {
		t.Fatalf("the sidecar saw %q", id)
	}
	// Dialled by a name the certificate does not hold, the call fails.
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	if _, err := sidecarStatus(context.Background(), net.JoinHostPort("127.0.0.2", port), pki.operator, 2*time.Second); err == nil {
		t.Fatal("a sidecar whose certificate does not name the host dialled was trusted")
	}
}

// TestSidecarPlaintextOnLoopback: a dashboard with certificates still
// reads a sidecar whose API serves plaintext on loopback (colony
// sidecar's default, and the dev demo's), and never a plaintext one
// elsewhere.
func TestSidecarPlaintextOnLoopback(t *testing.T) {
	pki := newTestPKI(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	colonyv1.RegisterSidecarServer(gs, &fakeSidecar{st: &colonyv1.SidecarStatusResponse{Service: "checkout", Instance: "c1"}})
	go gs.Serve(lis)
	defer gs.Stop()
	st, err := sidecarStatus(context.Background(), lis.Addr().String(), pki.operator, 2*time.Second)
	if err != nil || st.GetInstance() != "c1" {
		t.Fatalf("Status of a plaintext sidecar on loopback: %v, %v", st, err)
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		if !isLoopback(host) {
			t.Errorf("%s is loopback", host)
		}
	}
	for _, host := range []string{"10.0.0.5", "sidecar.example", "0.0.0.0"} {
		if isLoopback(host) {
			t.Errorf("%s is not loopback: a plaintext answer from it must not be believed", host)
		}
	}
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tokens")
	os.WriteFile(p, []byte("# operators\nalice:"+testToken+"\n\n"+testToken+"X\n"), 0o600)
	toks, err := LoadTokens(p)
	if err != nil || len(toks) != 2 || toks[0] != (Token{"alice", testToken}) || toks[1] != (Token{"operator", testToken + "X"}) {
		t.Fatalf("LoadTokens = %v, %v", toks, err)
	}
	os.WriteFile(p, []byte("alice:short\n"), 0o600)
	if _, err := LoadTokens(p); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("short token: %v", err)
	}
	if _, err := LoadTokens(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := New(Config{Coordinator: &fakeCoordinator{}, TrustedProxyHeader: "X-Forwarded-User"}); err == nil || !strings.Contains(err.Error(), "TrustedProxies") {
		t.Fatalf("a proxy header without proxies: %v", err)
	}
}
