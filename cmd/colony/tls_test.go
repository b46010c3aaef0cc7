package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/cmd/colony/internal/certcmd"
	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/cmd/colony/internal/clitest"
)

func TestMain(m *testing.M) { os.Exit(clitest.Main(m)) }

// runServer runs a server command line (coordinator, dev) until the test
// ends, and waits for it to stop then.
func runServer(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := runColony(ctx, &out, &errw, "", args...)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("colony %s ended with %v", strings.Join(args, " "), err)
		}
	})
}

// TestServersRefuseToStartWithoutCertificates: a server is never insecure
// by accident; the refusal names both ways to start.
func TestServersRefuseToStartWithoutCertificates(t *testing.T) {
	ctx := t.Context()
	for _, args := range [][]string{
		{"coordinator", "--id", "n1", "--data-dir", t.TempDir(), "--bootstrap", "--raft-addr", freeAddr(t), "--grpc-addr", freeAddr(t)},
		{"sidecar", "--service", "checkout", "--address", "127.0.0.1:1", "--listen", freeAddr(t), "--coordinators", freeAddr(t)},
	} {
		_, err := colony(ctx, t, "", args...)
		if !errors.Is(err, certcmd.ErrNoCredentials) {
			t.Fatalf("colony %s: %v, want ErrNoCredentials", args[0], err)
		}
		mustContain(t, "colony "+args[0]+" without certificates", err.Error(),
			"colony cert ca --certs-dir", "colony cert", "--certs-dir", "--insecure")
	}
	_, err := colony(ctx, t, "", "coordinator", "--id", "n1", "--data-dir", t.TempDir(), "--insecure", "--certs-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("--insecure with --certs-dir: %v, want a refusal", err)
	}
}

// TestCertsForASecureCoordinator makes a CA, a node and a user certificate
// with colony cert, starts a coordinator on them and uses it from the CLI
// with --certs-dir; without a certificate the CLI is refused, and says so.
func TestCertsForASecureCoordinator(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "certs")
	run := func(args ...string) string {
		t.Helper()
		out, err := colony(ctx, t, "", args...)
		if err != nil {
			t.Fatalf("colony %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	mustContain(t, "cert ca", run("cert", "ca", "--certs-dir", dir), "ca.crt", "ca.key", "colony.local")
	grpcAddr, raftAddr := freeAddr(t), freeAddr(t)
	mustContain(t, "cert node", run("cert", "node", "--certs-dir", dir, "--name", "n1", "--host", "127.0.0.1,localhost"),
		"spiffe://colony.local/node/n1", "node-n1.crt", "colony coordinator --id n1 --certs-dir "+dir)
	mustContain(t, "cert client", run("cert", "client", "--certs-dir", dir, "--name", "alice", "--role", "operator"),
		"spiffe://colony.local/operator/alice", "operator-alice.crt", "--certs-dir "+dir)
	if _, err := colony(ctx, t, "", "cert", "ca", "--certs-dir", dir); err == nil {
		t.Error("cert ca replaced an existing CA")
	}

	runServer(t, "coordinator", "--id", "n1", "--data-dir", t.TempDir(), "--bootstrap",
		"--grpc-addr", grpcAddr, "--raft-addr", raftAddr, "--certs-dir", dir)
	eventually(t, "a write through the secure node", func() (bool, string) {
		_, err := colony(ctx, t, "", "kv", "create", "/secure", "yes", "--certs-dir", dir, "--endpoints", grpcAddr, "--timeout", "2s")
		return err == nil, errString(err)
	})
	t.Setenv(cli.CertsDirEnv, dir)
	if out := run("kv", "get", "/secure", "--endpoints", grpcAddr); out != "yes" {
		t.Errorf("kv get with $%s = %q, want yes", cli.CertsDirEnv, out)
	}
	t.Setenv(cli.CertsDirEnv, "")

	_, err := colony(ctx, t, "", "kv", "get", "/secure", "--endpoints", grpcAddr, "--timeout", "1s")
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("no certificate: %v (code %v), want Unauthenticated", err, status.Code(err))
	}
	if err != nil {
		mustContain(t, "no certificate", err.Error(), "requires TLS and a client certificate", "--certs-dir", "colony cert client")
	}

	// A user certificate of another CA is refused by name.
	other := filepath.Join(t.TempDir(), "other")
	run("cert", "ca", "--certs-dir", other)
	run("cert", "client", "--certs-dir", other, "--name", "mallory", "--role", "admin")
	_, err = colony(ctx, t, "", "kv", "get", "/secure", "--endpoints", grpcAddr, "--timeout", "1s", "--cacert", filepath.Join(dir, "ca.crt"),
		"--cert", filepath.Join(other, "admin-mallory.crt"), "--key", filepath.Join(other, "admin-mallory.key"))
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("certificate of another CA: %v, want Unauthenticated", err)
	}
	if err != nil {
		mustContain(t, "certificate of another CA", err.Error(), "refused", "admin-mallory.crt", "spiffe://colony.local/admin/mallory")
	}

	// Two user certificates: --certs-dir cannot choose, and lists them.
	run("cert", "client", "--certs-dir", dir, "--name", "bob", "--role", "admin")
	_, err = colony(ctx, t, "", "kv", "get", "/secure", "--certs-dir", dir, "--endpoints", grpcAddr)
	if err == nil {
		t.Fatal("--certs-dir with two user certificates: no error")
	}
	mustContain(t, "two user certificates", err.Error(), "admin-bob.crt", "operator-alice.crt", "--cert")
}

// TestDevNeedsNoConfiguration: colony dev runs secure with certificates it
// makes itself in its data dir and keeps across restarts, and client
// commands find them with no flags.
func TestDevNeedsNoConfiguration(t *testing.T) {
	ctx := t.Context()
	t.Setenv("TMPDIR", t.TempDir()) // dev's data and the CLI's look-up
	grpcAddr, raftAddr := freeAddr(t), freeAddr(t)
	t.Setenv(cli.EndpointsEnv, grpcAddr)
	caFile := filepath.Join(cli.DevTLSDir(), "ca.crt")

	var ca []byte
	for restart := range 2 {
		t.Run([]string{"first start", "restart"}[restart], func(t *testing.T) {
			runServer(t, "dev", "--grpc-addr", grpcAddr, "--raft-addr", raftAddr, "--ui-addr", "off")
			if restart == 0 {
				eventually(t, "a write with no flags", func() (bool, string) {
					_, err := colony(ctx, t, "", "kv", "create", "/hello", "world", "--timeout", "2s")
					return err == nil, errString(err)
				})
				var err error
				if ca, err = os.ReadFile(caFile); err != nil {
					t.Fatal(err)
				}
				return
			}
			if now, err := os.ReadFile(caFile); err != nil || !bytes.Equal(now, ca) {
				t.Errorf("dev's CA changed across a restart (err %v)", err)
			}
			eventually(t, "a read with no flags", func() (bool, string) {
				out, err := colony(ctx, t, "", "kv", "get", "/hello", "--timeout", "2s")
				return err == nil && out == "world", out + errString(err)
			})
			if _, err := colony(ctx, t, "", "breaker", "ls"); err != nil {
				t.Errorf("breaker ls with no flags: %v", err)
			}
			_, err := colony(ctx, t, "", "kv", "get", "/hello", "--insecure", "--timeout", "1s")
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("--insecure against dev: %v, want Unauthenticated", err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
