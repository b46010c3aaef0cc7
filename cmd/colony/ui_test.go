package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/dashboard"
	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// TestUIServesAndStops serves the dashboard against a real node and checks
// that an open live-update stream does not hold shutdown up.
func TestUIServesAndStops(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	u, err := startUI("127.0.0.1:0", srv.Addr(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	addr := u.addr
	for _, p := range []string{"/", "/api/cluster"} {
		res, err := http.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", p, res.StatusCode, body)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/api/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "event: snapshot") {
	}

	start := time.Now()
	u.close()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("close took %v with a browser connected", d)
	}
	for sc.Scan() { // the stream ends
	}
	u.close() // again: a no-op
	var none *uiServer
	none.close()
}

func TestStartUIOff(t *testing.T) {
	for _, addr := range []string{"", "off"} {
		u, err := startUI(addr, "127.0.0.1:1", slog.New(slog.DiscardHandler))
		if u != nil || err != nil {
			t.Fatalf("startUI(%q) = %v, %v; want nothing", addr, u, err)
		}
	}
	if _, err := startUI("127.0.0.1:notaport", "127.0.0.1:1", slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "--ui-addr") {
		t.Fatalf("bad --ui-addr: %v", err)
	}
}

func TestLoopbackIfUnspecified(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:7400":   "127.0.0.1:7400",
		"[::]:7400":      "127.0.0.1:7400",
		":7400":          "127.0.0.1:7400",
		"10.0.0.5:7400":  "10.0.0.5:7400",
		"127.0.0.1:7403": "127.0.0.1:7403",
		"not-an-addr":    "not-an-addr",
	} {
		if got := loopbackIfUnspecified(in); got != want {
			t.Errorf("loopbackIfUnspecified(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUISecureNode serves the dashboard over HTTPS with the node's
// certificate against a secure node: a browser without a certificate
// reads, an operator certificate acts, and the override carries the
// operator's identity.
func TestUISecureNode(t *testing.T) {
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
	node := load(trust.Leaf{Role: trust.RoleNode, Name: "n1", Hosts: []string{"127.0.0.1", "localhost"}})
	op := load(trust.Leaf{Role: trust.RoleOperator, Name: "alice"})
	srv := coordinatortest.StartNode(t, func(c *coordinator.Config) { c.TLS = node })
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}, TLS: node.ClientConfig("")})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(`{"minimumCalls": 10}`)}}, "test", false); err != nil {
		t.Fatal(err)
	}
	u, err := startUIWith(uiFlags{addr: "127.0.0.1:0"}, uiOptions{grpcAddr: srv.Addr(), tls: node}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	if !strings.HasPrefix(u.url, "https://") {
		t.Fatalf("url %s: want https with TLS material", u.url)
	}
	httpsClient := func(m *trust.Material) *http.Client {
		cfg := &tls.Config{RootCAs: node.Pool(), MinVersion: tls.VersionTLS12}
		if m != nil {
			cfg = m.ClientConfig("")
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	anon, operator := httpsClient(nil), httpsClient(op)
	res, err := anon.Get(u.url + "api/cluster")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /api/cluster (the dashboard dials the node with TLS): %d %s", res.StatusCode, body)
	}
	post := func(c *http.Client) (int, string) {
		req, _ := http.NewRequest("POST", u.url+"api/breakers/checkout/payments/override", strings.NewReader(`{"mode":"force-open","reason":"INC-9"}`))
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
	if code, body := post(anon); code != http.StatusForbidden {
		t.Fatalf("anonymous override: %d %s", code, body)
	}
	code, rec := post(operator)
	if code != 200 {
		t.Fatalf("operator override: %d %s", code, rec)
	}
	if !strings.Contains(rec, "spiffe://colony.local/operator/alice") || strings.Contains(rec, "ceo@company") {
		t.Fatalf("override record %s: want the operator's identity, never the header's", rec)
	}
}

func TestUIFlagsToConfig(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	tok := filepath.Join(dir, "tls", "ui-token")
	f := uiFlags{prefix: "ui-", trustedProxyHeader: "X-Forwarded-User", trustedProxies: []string{"10.1.2.3", "192.0.2.0/24", "::ffff:10.9.9.9"}, read: "authenticated"}
	cfg, err := dashboardConfig(f, uiOptions{devTokenFile: tok}, "192.0.2.10:7403", log)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("10.9.9.9/32")}
	if !reflect.DeepEqual(cfg.TrustedProxies, want) {
		t.Errorf("proxies %v, want %v", cfg.TrustedProxies, want)
	}
	if !slices.Equal(cfg.AllowedHosts, []string{"localhost", "127.0.0.1", "::1", "192.0.2.10"}) {
		t.Errorf("allowed hosts %v: want the defaults and the listen host", cfg.AllowedHosts)
	}
	if cfg.Read != dashboard.ReadAuthenticated || len(cfg.Tokens) != 1 || cfg.Tokens[0].Name != "dev" {
		t.Errorf("read %q, tokens %v", cfg.Read, cfg.Tokens)
	}
	if st, err := os.Stat(tok); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("dev token file: %v %v", st, err)
	}
	again, err := dashboardConfig(f, uiOptions{devTokenFile: tok}, "0.0.0.0:7403", log)
	if err != nil || again.Tokens[0] != cfg.Tokens[0] {
		t.Fatalf("the dev token changed across starts: %v %v", again.Tokens, err)
	}
	if slices.Contains(again.AllowedHosts, "0.0.0.0") {
		t.Errorf("allowed hosts %v: a wildcard listen address is no host name", again.AllowedHosts)
	}
	if _, err := dashboardConfig(uiFlags{prefix: "ui-", trustedProxies: []string{"proxy.example"}}, uiOptions{}, "127.0.0.1:0", log); err == nil || !strings.Contains(err.Error(), "--ui-trusted-proxies") {
		t.Fatalf("bad proxy: %v", err)
	}
}

// TestUICommand runs `colony ui` against a node: it refuses to start
// without certificates or --insecure, picks the one operator pair of
// --certs-dir, and serves until its context ends.
func TestUICommand(t *testing.T) {
	dir := t.TempDir()
	ca, err := trust.NewCA(dir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		args []string
		want string
	}{
		{nil, "--insecure"},
		{[]string{"--insecure", "--certs-dir", dir}, "refused together"},
		{[]string{"--certs-dir", dir}, "exactly one operator-NAME"},
		{[]string{"--cacert", filepath.Join(dir, "ca.crt")}, "--cacert, --cert, --key"},
		{[]string{"--insecure", "--read", "everyone"}, "Read"},
	}
	for _, tc := range refused {
		cmd := newUICmd()
		cmd.SetArgs(append(tc.args, "--addr", "127.0.0.1:0", "--endpoints", "127.0.0.1:1"))
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("colony ui %v: %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
	if _, err := ca.Issue(dir, trust.Leaf{Role: trust.RoleOperator, Name: "dashboard", Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	f := &uiCmdFlags{certsDir: dir}
	files, err := f.files()
	if err != nil || files.Cert != filepath.Join(dir, "operator-dashboard.crt") {
		t.Fatalf("--certs-dir picked %+v, %v", files, err)
	}

	srv := coordinatortest.StartNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	cmd := newUICmd()
	cmd.SetArgs([]string{"--insecure", "--addr", "127.0.0.1:0", "--endpoints", srv.Addr(), "--log-level", "error"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(pw)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx); pw.Close() }()
	sc := bufio.NewScanner(pr)
	var url string
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "Colony dashboard: "); ok {
			url = u
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if url == "" {
		t.Fatalf("colony ui printed no URL: %v", <-done)
	}
	res, err := http.Get(url + "api/cluster")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET api/cluster: %d", res.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("colony ui: %v", err)
	}
}
