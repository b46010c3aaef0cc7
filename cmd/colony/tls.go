package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/colonymesh/colony/cmd/colony/internal/certcmd"
	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/cmd/colony/internal/demo"
	"github.com/colonymesh/colony/internal/trust"
)

// insecureBanner is what a server started with --insecure prints first.
const insecureBanner = `
WARNING: --insecure: TLS is off. Anyone who can reach this process's ports can
read and change every breaker, lock and registration. Use it for development
only; ` + "`colony cert`" + ` makes the certificates a real deployment runs on.

`

// coordinatorTLS is the node's TLS material from its flags: the --dev
// certificates (made under <data-dir>/tls on first start) when dev has no
// certificate flags and no --insecure, else what --certs-dir or
// --cacert/--cert/--key name. Nil with --insecure. The dev certificates
// are returned too, for the demo's sidecars and clients.
func coordinatorTLS(f *coordinatorFlags, nodeID, dataDir string, log *slog.Logger) (*trust.Material, *devCerts, error) {
	if f.dev && !f.tls.Given() && !f.tls.Insecure {
		dc, err := openDevCerts(filepath.Join(dataDir, "tls"), log)
		if err != nil {
			return nil, nil, err
		}
		m, err := dc.material(trust.RoleNode, nodeID, certcmd.LoopbackHosts)
		if err != nil {
			return nil, nil, err
		}
		// The CLI's own certificate, so that client commands work with no flags.
		if _, err := dc.material(trust.RoleAdmin, cli.DevUser, nil); err != nil {
			return nil, nil, err
		}
		return m, dc, nil
	}
	if f.tls.CertsDir != "" && nodeID == "" {
		return nil, nil, errors.New("--id: required (with --certs-dir it also names the certificate, node-<id>.crt)")
	}
	m, err := f.tls.Material(trust.RoleNode, nodeID, "coordinator", log)
	if err != nil {
		return nil, nil, err
	}
	if m == nil {
		fmt.Fprint(os.Stderr, insecureBanner)
	}
	return m, nil, nil
}

// devCerts is `colony dev`'s own CA and certificates in one directory
// (<data-dir>/tls): made on first start, used again on restarts.
type devCerts struct {
	dir string
	ca  *trust.CA
	log *slog.Logger
	mu  sync.Mutex
}

// devValidity is how long dev's CA and certificates are valid; a
// certificate that expires within devRenewBefore is made again.
const (
	devCAValidity   = 10 * 365 * 24 * time.Hour
	devLeafValidity = 365 * 24 * time.Hour
	devRenewBefore  = 24 * time.Hour
)

// openDevCerts loads the CA in dir, making one if there is none.
func openDevCerts(dir string, log *slog.Logger) (*devCerts, error) {
	ca, err := trust.LoadCA(dir)
	if errors.Is(err, os.ErrNotExist) {
		if ca, err = trust.NewCA(dir, "", devCAValidity); err == nil {
			log.Info("made a development CA", "dir", dir)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dev certificates in %s: %w", dir, err)
	}
	return &devCerts{dir: dir, ca: ca, log: log}, nil
}

// material loads role-name's certificate, issuing it first when it is
// missing, does not load or is about to expire.
func (d *devCerts) material(role trust.Role, name string, hosts []string) (*trust.Material, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	files := trust.LeafFiles(d.dir, role, name)
	if m, err := trust.Load(files, d.ca.TrustDomain, d.log); err == nil && time.Until(m.NotAfter()) > devRenewBefore {
		return m, nil
	}
	if _, err := d.ca.Issue(d.dir, trust.Leaf{Role: role, Name: name, Hosts: hosts, Validity: devLeafValidity}); err != nil {
		return nil, fmt.Errorf("dev certificates: %w", err)
	}
	return trust.Load(files, d.ca.TrustDomain, d.log)
}

var _ demo.Certs = (*devCerts)(nil)

// Sidecar is the certificate of service's sidecars (the demo's).
func (d *devCerts) Sidecar(service string) (*trust.Material, error) {
	return d.material(trust.RoleSidecar, service, certcmd.LoopbackHosts)
}

// Admin is the demo's own client certificate: the CLI's.
func (d *devCerts) Admin() (*trust.Material, error) {
	return d.material(trust.RoleAdmin, cli.DevUser, nil)
}
