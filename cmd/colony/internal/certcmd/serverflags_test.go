package certcmd

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/internal/trust"
)

// TestServerFlagsMaterial: a server gets its material from --certs-dir by
// the <role>-<name> convention or from explicit files, nothing with
// --insecure, and a refusal naming both ways with neither.
func TestServerFlagsMaterial(t *testing.T) {
	dir := t.TempDir()
	ca, err := trust.NewCA(dir, "prod.example", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.Issue(dir, trust.Leaf{Role: trust.RoleNode, Name: "n1", Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		flags   ServerFlags
		wantID  string // "" for nil material
		wantErr []string
	}{
		{name: "certs dir", flags: ServerFlags{CertsDir: dir}, wantID: "spiffe://prod.example/node/n1"},
		{name: "explicit files", flags: ServerFlags{CACert: files.CA, Cert: files.Cert, Key: files.Key}, wantID: "spiffe://prod.example/node/n1"},
		{name: "insecure", flags: ServerFlags{Insecure: true}},
		{name: "neither", flags: ServerFlags{}, wantErr: []string{"colony cert ca", "colony cert node --certs-dir certs --name n1", "--insecure"}},
		{name: "insecure and certs", flags: ServerFlags{Insecure: true, CertsDir: dir}, wantErr: []string{"--insecure"}},
		{name: "both ways", flags: ServerFlags{CertsDir: dir, Cert: files.Cert}, wantErr: []string{"one or the other"}},
		{name: "part of the files", flags: ServerFlags{Cert: files.Cert}, wantErr: []string{"all three"}},
		{name: "no such node certificate", flags: ServerFlags{CertsDir: filepath.Join(dir, "nope")}, wantErr: []string{"node-n1.crt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.flags.Material(trust.RoleNode, "n1", "coordinator", nil)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if tt.name == "neither" && !errors.Is(err, ErrNoCredentials) {
					t.Errorf("error %v is not ErrNoCredentials", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if m != nil {
				got = m.Identity().ID
			}
			if got != tt.wantID {
				t.Errorf("identity = %q, want %q", got, tt.wantID)
			}
		})
	}
}
