package cli

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/cmd/colony/internal/certcmd"
	"github.com/colonymesh/colony/internal/trust"
)

// CertsDirEnv names the environment variable that stands in for
// --certs-dir.
const CertsDirEnv = "COLONY_CERTS_DIR"

// DevUser is the name of the admin certificate `colony dev` makes for the
// CLI (admin-dev.crt in DevTLSDir).
const DevUser = "dev"

// DevDataDir is where `colony dev` keeps its data unless told otherwise:
// $TMPDIR/colony-dev.
func DevDataDir() string { return filepath.Join(os.TempDir(), "colony-dev") }

// DevTLSDir is where `colony dev` keeps its CA and certificates in its
// default data directory; client commands given no certificate use its
// admin certificate.
func DevTLSDir() string { return filepath.Join(DevDataDir(), "tls") }

// clientRoles are the roles of the certificates --certs-dir picks from.
var clientRoles = []trust.Role{trust.RoleAdmin, trust.RoleOperator, trust.RoleClient}

// TLSSource is the certificate a client command presents, and where the
// choice came from (for errors: "--certs-dir certs").
type TLSSource struct {
	Files trust.Files
	From  string
}

// TLSOf returns the certificate cmd's flags name: --cacert, --cert and
// --key; else --certs-dir or $COLONY_CERTS_DIR (the one admin-*,
// operator-* or client-* pair in it); else, unless --insecure, the admin
// certificate of `colony dev` when DevTLSDir exists. Nil: plaintext.
func TLSOf(cmd *cobra.Command) (*TLSSource, error) {
	get := func(name string) (string, bool) {
		fl := cmd.Flags().Lookup(name)
		if fl == nil {
			return "", false
		}
		return fl.Value.String(), fl.Changed
	}
	caFile, _ := get("cacert")
	certFile, _ := get("cert")
	keyFile, _ := get("key")
	dir, _ := get("certs-dir")
	insecure, _ := get("insecure")
	explicit := caFile != "" || certFile != "" || keyFile != ""
	from := "--certs-dir " + dir
	if dir == "" && !explicit && insecure != "true" { // --insecure beats the environment
		if dir = os.Getenv(CertsDirEnv); dir != "" {
			from = "$" + CertsDirEnv + "=" + dir
		}
	}
	switch {
	case insecure == "true" && (explicit || dir != ""):
		return nil, errors.New("--insecure with certificate flags: give one or the other")
	case insecure == "true":
		return nil, nil
	case explicit && dir != "":
		return nil, fmt.Errorf("--cacert/--cert/--key and %s: give one or the other", from)
	case explicit:
		if caFile == "" || certFile == "" || keyFile == "" {
			return nil, errors.New("--cacert, --cert and --key: give all three (or --certs-dir)")
		}
		return &TLSSource{Files: trust.Files{CA: caFile, Cert: certFile, Key: keyFile}, From: "--cert " + certFile}, nil
	case dir != "":
		files, err := userPair(dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", from, err)
		}
		return &TLSSource{Files: files, From: from}, nil
	}
	dev := trust.LeafFiles(DevTLSDir(), trust.RoleAdmin, DevUser)
	if _, err := os.Stat(dev.Cert); err == nil {
		return &TLSSource{Files: dev, From: "colony dev's admin certificate in " + DevTLSDir()}, nil
	}
	return nil, nil
}

// userPair finds the one admin-, operator- or client- certificate and key
// in dir.
func userPair(dir string) (trust.Files, error) {
	var found []trust.Files
	var names []string
	for _, role := range clientRoles {
		certs, _ := filepath.Glob(filepath.Join(dir, string(role)+"-*.crt"))
		for _, c := range certs {
			name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(c), string(role)+"-"), ".crt")
			files := trust.LeafFiles(dir, role, name)
			if _, err := os.Stat(files.Key); err != nil {
				continue
			}
			found = append(found, files)
			names = append(names, filepath.Base(c))
		}
	}
	switch len(found) {
	case 1:
		if _, err := os.Stat(found[0].CA); err != nil {
			return trust.Files{}, fmt.Errorf("no %s beside %s", trust.CACertFile, found[0].Cert)
		}
		return found[0], nil
	case 0:
		return trust.Files{}, fmt.Errorf("no admin-*, operator-* or client-* certificate with its key in %s (make one with `colony cert client --certs-dir %s --name NAME --role operator`)", dir, dir)
	}
	sort.Strings(names)
	return trust.Files{}, fmt.Errorf("%d user certificates in %s (%s): use --cacert, --cert and --key to pick one", len(found), dir, strings.Join(names, ", "))
}

// ClientTLS is the tls.Config of a client command, verifying the
// coordinators' host names, and where its certificate came from; nil for
// plaintext.
func ClientTLS(cmd *cobra.Command) (*tls.Config, *TLSSource, error) {
	src, err := TLSOf(cmd)
	if err != nil || src == nil {
		return nil, nil, err
	}
	m, err := trust.Load(src.Files, certcmd.TrustDomainOf(src.Files.CA), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", src.From, err)
	}
	return m.ClientConfig(""), src, nil
}
