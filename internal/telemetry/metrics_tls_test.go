package telemetry

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/internal/trust"
)

// A secure process serves /metrics over TLS to scrapers with a certificate
// of its CA: plaintext, no certificate, another CA's certificate and an
// expired one get nothing.
func TestMetricsServerTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := trust.NewCA(dir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	load := func(ca *trust.CA, dir string, leaf trust.Leaf) *trust.Material {
		t.Helper()
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
	node := load(ca, dir, trust.Leaf{Role: trust.RoleNode, Name: "n1", Hosts: []string{"127.0.0.1"}})
	scraper := load(ca, dir, trust.Leaf{Role: trust.RoleClient, Name: "prometheus"})
	expired := load(ca, dir, trust.Leaf{Role: trust.RoleClient, Name: "old", Validity: time.Nanosecond})
	otherDir := t.TempDir()
	other, err := trust.NewCA(otherDir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign := load(other, otherDir, trust.Leaf{Role: trust.RoleClient, Name: "prometheus"})

	ms, err := ListenMetricsTLS("127.0.0.1:0", Handler(NewRegistry(), HandlerOptions{}), node.ServerConfig(tls.RequireAndVerifyClientCert, "http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close(context.Background())

	// scrape fetches /metrics as a client holding m's certificate (none for
	// nil m), trusting the node's CA.
	scrape := func(scheme string, m *trust.Material) error {
		cfg := &tls.Config{RootCAs: node.Pool(), MinVersion: tls.VersionTLS12}
		if m != nil {
			cfg = m.ClientConfig("")
			cfg.RootCAs = node.Pool()
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(scheme + "://" + ms.Addr() + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "go_goroutines") {
			// A TLS server answers a plaintext request 400, with no metrics.
			return fmt.Errorf("answered %d without the metrics", resp.StatusCode)
		}
		return nil
	}
	if err := scrape("https", scraper); err != nil {
		t.Fatalf("a scraper with a certificate of the CA: %v", err)
	}
	for _, tc := range []struct {
		name   string
		scheme string
		m      *trust.Material
	}{
		{"plaintext", "http", nil},
		{"no certificate", "https", nil},
		{"another CA's certificate", "https", foreign},
		{"an expired certificate", "https", expired},
	} {
		if err := scrape(tc.scheme, tc.m); err == nil {
			t.Errorf("%s: scraped /metrics, want refused", tc.name)
		}
	}
}
