package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/internal/trust"
)

// TestTLSOf: which certificate a client command presents, for each way of
// giving one, and the errors for ways that cannot choose.
func TestTLSOf(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv(CertsDirEnv, "")
	issue := func(dir string, role trust.Role, names ...string) {
		t.Helper()
		ca, err := trust.LoadCA(dir)
		if err != nil {
			if ca, err = trust.NewCA(dir, "", time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range names {
			if _, err := ca.Issue(dir, trust.Leaf{Role: role, Name: n}); err != nil {
				t.Fatal(err)
			}
		}
	}
	one := filepath.Join(tmp, "one")
	issue(one, trust.RoleOperator, "alice")
	issue(one, trust.RoleNode, "n1") // not a user certificate: ignored
	two := filepath.Join(tmp, "two")
	issue(two, trust.RoleAdmin, "root")
	issue(two, trust.RoleClient, "app")
	none := filepath.Join(tmp, "none")
	issue(none, trust.RoleNode, "n1")

	tests := []struct {
		name     string
		env      string // $COLONY_CERTS_DIR
		dev      bool   // colony dev's certificates exist
		args     []string
		wantCert string // base name; "" for plaintext
		wantErr  []string
	}{
		{name: "nothing: plaintext", args: nil},
		{name: "nothing with dev: dev's admin", dev: true, wantCert: "admin-dev.crt"},
		{name: "--insecure beats dev", dev: true, args: []string{"--insecure"}},
		{name: "--insecure beats env", env: one, args: []string{"--insecure"}},
		{name: "--certs-dir picks the one user pair", args: []string{"--certs-dir", one}, wantCert: "operator-alice.crt"},
		{name: "env stands in for --certs-dir", env: one, wantCert: "operator-alice.crt"},
		{name: "--certs-dir beats dev", dev: true, args: []string{"--certs-dir", one}, wantCert: "operator-alice.crt"},
		{name: "explicit files", args: []string{"--cacert", filepath.Join(two, "ca.crt"), "--cert", filepath.Join(two, "admin-root.crt"), "--key", filepath.Join(two, "admin-root.key")}, wantCert: "admin-root.crt"},
		{name: "explicit files beat env", env: one, args: []string{"--cacert", filepath.Join(two, "ca.crt"), "--cert", filepath.Join(two, "admin-root.crt"), "--key", filepath.Join(two, "admin-root.key")}, wantCert: "admin-root.crt"},
		{name: "two user pairs", args: []string{"--certs-dir", two}, wantErr: []string{"admin-root.crt", "client-app.crt", "--cert"}},
		{name: "no user pair", args: []string{"--certs-dir", none}, wantErr: []string{"no admin-*, operator-* or client-*", "colony cert client"}},
		{name: "part of the explicit files", args: []string{"--cert", "x.crt"}, wantErr: []string{"give all three"}},
		{name: "both ways", args: []string{"--certs-dir", one, "--cert", "x.crt"}, wantErr: []string{"one or the other"}},
		{name: "--insecure with a certificate", args: []string{"--insecure", "--certs-dir", one}, wantErr: []string{"--insecure"}},
	}
	devDir := DevTLSDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(CertsDirEnv, tt.env)
			if tt.dev {
				issue(devDir, trust.RoleAdmin, DevUser)
				t.Cleanup(func() {
					if err := os.RemoveAll(devDir); err != nil {
						t.Fatal(err)
					}
				})
			}
			cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
			f := &Flags{}
			f.Register(cmd, cmd.Flags())
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			src, err := TLSOf(cmd)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("got %+v, want an error", src)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if src != nil {
				got = filepath.Base(src.Files.Cert)
			}
			if got != tt.wantCert {
				t.Errorf("certificate = %q, want %q", got, tt.wantCert)
			}
		})
	}
}
