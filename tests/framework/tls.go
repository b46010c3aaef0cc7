package framework

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/colonymesh/colony/internal/trust"
)

// certValidity is how long a test cluster's certificates are valid: far
// longer than any test.
const certValidity = 24 * time.Hour

// AdminName is the name of the admin client certificate a PKI issues for
// the harness's own connections and CLI commands.
const AdminName = "harness"

// PKI is a test cluster's certificate authority and the certificates it
// issued, all in one directory in the colony layout (ca.crt, ca.key,
// node-<id>.crt/.key, sidecar-<service>.crt/.key, admin-harness.crt/.key),
// so that `--certs-dir Dir` serves every colony process of the cluster: a
// node finds node-<id>, a sidecar sidecar-<service>, and the CLI the one
// admin certificate.
//
// A nil *PKI is an insecure cluster: its methods return plaintext
// credentials and the --insecure flag.
type PKI struct {
	// Dir holds the CA and every certificate issued.
	Dir string
	// CA issues the certificates; tests issue more with it (into other
	// directories, so that Dir keeps exactly one client certificate).
	CA *trust.CA

	admin *trust.Material
}

// NewPKI creates a CA of the default trust domain in dir, and an admin
// client certificate for the harness.
func NewPKI(dir string) (*PKI, error) {
	ca, err := trust.NewCA(dir, "", certValidity)
	if err != nil {
		return nil, fmt.Errorf("test PKI: %w", err)
	}
	p := &PKI{Dir: dir, CA: ca}
	files, err := ca.Issue(dir, trust.Leaf{Role: trust.RoleAdmin, Name: AdminName, Validity: certValidity})
	if err != nil {
		return nil, fmt.Errorf("test PKI: %w", err)
	}
	if p.admin, err = trust.Load(files, ca.TrustDomain, nil); err != nil {
		return nil, fmt.Errorf("test PKI: %w", err)
	}
	return p, nil
}

// Issue issues a certificate for role and name into p.Dir, valid for
// hosts (127.0.0.1 when none are given), and returns its files.
func (p *PKI) Issue(role trust.Role, name string, hosts ...string) (trust.Files, error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	files, err := p.CA.Issue(p.Dir, trust.Leaf{Role: role, Name: name, Hosts: hosts, Validity: certValidity})
	if err != nil {
		return trust.Files{}, fmt.Errorf("test PKI: %w", err)
	}
	return files, nil
}

// IssueIn issues a certificate like Issue, into dir instead of p.Dir, and
// loads it: a client of the cluster's CA that the CLI's --certs-dir
// convention must not find in p.Dir.
func (p *PKI) IssueIn(dir string, role trust.Role, name string) (*trust.Material, error) {
	files, err := p.CA.Issue(dir, trust.Leaf{Role: role, Name: name, Hosts: []string{"127.0.0.1"}, Validity: certValidity})
	if err != nil {
		return nil, fmt.Errorf("test PKI: %w", err)
	}
	// ca.crt is not copied into dir: read it from p.Dir.
	files.CA = filepath.Join(p.Dir, trust.CACertFile)
	m, err := trust.Load(files, p.CA.TrustDomain, nil)
	if err != nil {
		return nil, fmt.Errorf("test PKI: %w", err)
	}
	return m, nil
}

// ServerArgs are the security flags of a colony server process
// (coordinator, sidecar): --certs-dir, or --insecure for a nil p.
func (p *PKI) ServerArgs() []string {
	if p == nil {
		return []string{"--insecure"}
	}
	return []string{"--certs-dir", p.Dir}
}

// ClientArgs are the security flags of a colony CLI command: --certs-dir
// (the CLI uses the one admin certificate in it), or --insecure for a nil
// p (so that the CLI does not take `colony dev`'s certificates instead).
func (p *PKI) ClientArgs() []string {
	if p == nil {
		return []string{"--insecure"}
	}
	return []string{"--certs-dir", p.Dir}
}

// AdminTLS is the client TLS configuration of the harness: the admin
// certificate, verifying the server's certificate for the address dialled.
// Nil for a nil p (plaintext).
func (p *PKI) AdminTLS() *tls.Config {
	if p == nil {
		return nil
	}
	return p.admin.ClientConfig("", "h2")
}

// Creds are the gRPC transport credentials of the harness's connections:
// TLS with the admin certificate, or plaintext for a nil p.
func (p *PKI) Creds() credentials.TransportCredentials {
	return Creds(p.AdminTLS())
}

// Creds are TLS credentials with cfg, or plaintext for a nil cfg.
func Creds(cfg *tls.Config) credentials.TransportCredentials {
	if cfg == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(cfg)
}
