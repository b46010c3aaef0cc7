package sidecar_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/internal/xdsdial"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/sidecar/guard"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
	"github.com/colonymesh/colony/xds"
)

// issue makes a certificate of ca in its directory dir and loads it.
func issue(t *testing.T, ca *trust.CA, dir string, leaf trust.Leaf) *trust.Material {
	t.Helper()
	m, _ := issueFiles(t, ca, dir, leaf)
	return m
}

func issueFiles(t *testing.T, ca *trust.CA, dir string, leaf trust.Leaf) (*trust.Material, trust.Files) {
	t.Helper()
	files, err := ca.Issue(dir, leaf)
	if err != nil {
		t.Fatal(err)
	}
	m, err := trust.Load(files, ca.TrustDomain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, files
}

// TestSidecarTLS: a sidecar with a sidecar certificate registers its
// instance with, and reports to, a secure coordinator; with ListenTLS its own
// API serves apps holding a certificate of the same CA and refuses
// plaintext.
func TestSidecarTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := trust.NewCA(dir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node := issue(t, ca, dir, trust.Leaf{Role: trust.RoleNode, Name: "n1", Hosts: []string{"127.0.0.1"}})
	srv := coordinatortest.StartNode(t, func(c *coordinator.Config) { c.TLS = node })
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}, Logger: quietLog(),
		TLS: issue(t, ca, dir, trust.Leaf{Role: trust.RoleAdmin, Name: "root"}).ClientConfig("")})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments", Policy: []byte(
		`{"window":"2s","buckets":4,"minimumCalls":10,"failureRateThreshold":0.5,"openDuration":"30s","minFailingInstances":1}`)}}, "test", false); err != nil {
		t.Fatal(err)
	}

	sc := startSidecar(t, srv.Addr(), "checkout", "c1", 9100, func(c *sidecar.Config) {
		c.TLS = issue(t, ca, dir, trust.Leaf{Role: trust.RoleSidecar, Name: "checkout", Hosts: []string{"127.0.0.1"}})
		c.ListenTLS = true
	})

	// Registered over TLS.
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _, err := admin.Get(ctx, contract.RegistrationPath("checkout", "c1"))
		if err == nil && len(data) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no registration at %s: %v", contract.RegistrationPath("checkout", "c1"), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Reports over TLS: this instance's failures trip the pair.
	if err := sc.Report("payments", breaker.Counts{Failures: 30, TrailingFailures: 30}); err != nil {
		t.Fatal(err)
	}
	waitCallee(t, sc, 10*time.Second, "OPEN from the sidecar's reports", func(c sidecar.Callee, _ sidecar.View) bool { return state(c) == breaker.Open })

	// An app with a certificate of the CA follows the sidecar's breakers.
	app := issue(t, ca, dir, trust.Leaf{Role: trust.RoleClient, Name: "checkout-app"})
	g, err := guard.New(guard.Config{Sidecar: sc.Addr(), TLS: app.ClientConfig(""), Instance: "c1", Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	select {
	case <-g.Ready():
	case <-ctx.Done():
		t.Fatal("the guard got no snapshot over TLS")
	}
	if _, err := g.Allow("payments"); err == nil {
		t.Fatal("the guard over TLS allowed a call to an OPEN pair")
	}

	// Plaintext, TLS without a client certificate, with another CA's and
	// with an expired one are refused.
	otherDir := t.TempDir()
	other, err := trust.NewCA(otherDir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign := issue(t, other, otherDir, trust.Leaf{Role: trust.RoleClient, Name: "checkout-app"}).ClientConfig("")
	foreign.RootCAs = app.Pool() // it trusts the sidecar; the sidecar does not trust it
	expired := issue(t, ca, dir, trust.Leaf{Role: trust.RoleClient, Name: "old-app", Validity: time.Nanosecond})
	for name, creds := range map[string]credentials.TransportCredentials{
		"plaintext":           insecure.NewCredentials(),
		"no client cert":      credentials.NewTLS(&tls.Config{RootCAs: app.Pool(), ServerName: "127.0.0.1"}),
		"another CA's cert":   credentials.NewTLS(foreign),
		"expired client cert": credentials.NewTLS(expired.ClientConfig("")),
	} {
		conn, err := grpc.NewClient(sc.Addr(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = colonyv1.NewSidecarClient(conn).Status(cctx, &colonyv1.SidecarStatusRequest{})
		ccancel()
		conn.Close()
		if err == nil {
			t.Errorf("%s: Status answered, want the connection refused", name)
		}
	}
}

// TestProxylessClientOverTLS: a proxyless gRPC client whose xDS bootstrap
// carries TLS credentials (xdsdial.WithTLS) gets its configuration from a
// sidecar that serves xDS with ListenTLS, and calls the callee through it; a
// plaintext bootstrap gets nothing.
func TestProxylessClientOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := trust.NewCA(dir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node := issue(t, ca, dir, trust.Leaf{Role: trust.RoleNode, Name: "n1", Hosts: []string{"127.0.0.1"}})
	srv := coordinatortest.StartNode(t, func(c *coordinator.Config) { c.TLS = node })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := grpc.NewServer()
	healthpb.RegisterHealthServer(backend, health.NewServer())
	go backend.Serve(lis)
	defer backend.Stop()
	port := lis.Addr().(*net.TCPAddr).Port
	startSidecar(t, srv.Addr(), "payments", "p1", port, func(c *sidecar.Config) {
		c.TLS = issue(t, ca, dir, trust.Leaf{Role: trust.RoleSidecar, Name: "payments"})
	})

	x, err := sidecar.NewXDS(xds.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	sc, err := sidecar.New(sidecar.Config{
		Service: "checkout", Instance: "c1", Coordinators: []string{srv.Addr()}, Address: "127.0.0.1:9100",
		APIAddr: "127.0.0.1:0", Logger: quietLog(), ListenTLS: true,
		TLS: issue(t, ca, dir, trust.Leaf{Role: trust.RoleSidecar, Name: "checkout", Hosts: []string{"127.0.0.1"}}),
	}, x)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	_, app := issueFiles(t, ca, dir, trust.Leaf{Role: trust.RoleClient, Name: "checkout-app"})

	call := func(conn *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	secure, err := xdsdial.DialWith(sc.Addr(), "checkout/c1", "checkout", "payments", []xdsdial.Option{xdsdial.WithTLS(app)})
	if err != nil {
		t.Fatal(err)
	}
	defer secure.Close()
	deadline := time.Now().Add(10 * time.Second)
	for err := call(secure); err != nil; err = call(secure) {
		if time.Now().After(deadline) {
			t.Fatalf("no call through the sidecar's xDS over TLS: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	plain, err := xdsdial.Dial(sc.Addr(), "checkout/c2", "checkout", "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := call(plain); err == nil {
		t.Fatal("a plaintext xDS client got its configuration from a TLS sidecar")
	}
}
