package certcmd

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/colonymesh/colony/internal/trust"
)

// ServerFlags are the TLS flags of a server command: where its certificate
// is (--certs-dir, or --cacert --cert --key), the trust domain, and
// --insecure, the explicit choice of no TLS at all.
type ServerFlags struct {
	CertsDir          string // --certs-dir
	CACert, Cert, Key string // --cacert, --cert, --key
	TrustDomain       string // --trust-domain; "": the CA's, else trust.DefaultTrustDomain
	Insecure          bool   // --insecure
}

// Register adds the flags to fs. what names the certificate the server
// looks for in --certs-dir (e.g. "node-<id>").
func (f *ServerFlags) Register(fs *pflag.FlagSet, what string) {
	fs.StringVar(&f.CertsDir, "certs-dir", "", "directory with ca.crt and this server's "+what+".crt/.key, as colony cert makes them")
	fs.StringVar(&f.CACert, "cacert", "", "CA bundle that clients' and peers' certificates must chain to (instead of --certs-dir)")
	fs.StringVar(&f.Cert, "cert", "", "this server's certificate (instead of --certs-dir)")
	fs.StringVar(&f.Key, "key", "", "this server's private key (instead of --certs-dir)")
	fs.StringVar(&f.TrustDomain, "trust-domain", "", "SPIFFE trust domain of the cluster's identities (default: the CA's, else "+trust.DefaultTrustDomain+")")
	fs.BoolVar(&f.Insecure, "insecure", false, "run without TLS: anyone who reaches the ports may do anything (development only)")
}

// Given reports whether any certificate flag was given.
func (f *ServerFlags) Given() bool {
	return f.CertsDir != "" || f.CACert != "" || f.Cert != "" || f.Key != ""
}

// ErrNoCredentials is returned by Material when neither certificates nor
// --insecure were given.
var ErrNoCredentials = errors.New("no TLS certificate given")

// Files returns the PEM files the flags name: role-name's pair in
// --certs-dir, or --cacert, --cert and --key. It fails when both ways, or
// only part of the explicit one, are given, and with ErrNoCredentials when
// neither is.
func (f *ServerFlags) Files(role trust.Role, name string) (trust.Files, error) {
	explicit := f.CACert != "" || f.Cert != "" || f.Key != ""
	switch {
	case f.CertsDir != "" && explicit:
		return trust.Files{}, errors.New("--certs-dir and --cacert/--cert/--key: give one or the other")
	case f.CertsDir != "":
		if err := trust.CheckName(string(role)+" name", name); err != nil {
			return trust.Files{}, err
		}
		return trust.LeafFiles(f.CertsDir, role, name), nil
	case explicit:
		files := trust.Files{CA: f.CACert, Cert: f.Cert, Key: f.Key}
		if files.CA == "" || files.Cert == "" || files.Key == "" {
			return trust.Files{}, errors.New("--cacert, --cert and --key: give all three (or --certs-dir)")
		}
		return files, nil
	}
	return trust.Files{}, ErrNoCredentials
}

// Material loads the server's TLS material for role and name (the node id,
// the service) and logs its reloads to log. With --insecure it returns nil
// and no error. Neither certificates nor --insecure is an error that says
// both ways to start: a server is never insecure by accident.
func (f *ServerFlags) Material(role trust.Role, name, command string, log *slog.Logger) (*trust.Material, error) {
	if f.Insecure {
		if f.Given() {
			return nil, errors.New("--insecure with certificate flags: give one or the other")
		}
		return nil, nil
	}
	files, err := f.Files(role, name)
	if errors.Is(err, ErrNoCredentials) {
		return nil, NoCredentialsError(role, name, command)
	}
	if err != nil {
		return nil, err
	}
	m, err := f.Load(files, log)
	if errors.Is(err, os.ErrNotExist) && f.CertsDir != "" {
		return nil, fmt.Errorf("--certs-dir %s: want %s, %s and %s (`colony cert %s --certs-dir %s --name %s` makes them): %w",
			f.CertsDir, filepath.Base(files.CA), filepath.Base(files.Cert), filepath.Base(files.Key), role, f.CertsDir, name, err)
	}
	return m, err
}

// Load loads files in the flags' trust domain (--trust-domain, else the
// CA's).
func (f *ServerFlags) Load(files trust.Files, log *slog.Logger) (*trust.Material, error) {
	td := f.TrustDomain
	if td == "" {
		td = TrustDomainOf(files.CA)
	}
	m, err := trust.Load(files, td, log)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS certificate: %w", err)
	}
	return m, nil
}

// NoCredentialsError is the refusal of a server started with neither
// certificates nor --insecure: it names both ways out.
func NoCredentialsError(role trust.Role, name, command string) error {
	if name == "" {
		name = "NAME"
	}
	return fmt.Errorf(`%w: colony %s needs a certificate, or --insecure to run without TLS.
  Make certificates with:
    colony cert ca --certs-dir certs
    colony cert %s --certs-dir certs --name %s --host ADDRESS
  and start with --certs-dir certs (or --cacert, --cert and --key).
  Or, for development only, run it with --insecure (anyone who reaches its ports may do anything)`,
		ErrNoCredentials, command, role, name)
}

// parseCerts returns the certificates in PEM data.
func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
