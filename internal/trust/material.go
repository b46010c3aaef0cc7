package trust

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Files names the PEM files of a Material.
type Files struct {
	// CA is the bundle of CA certificates the other side's certificate
	// must chain to.
	CA string
	// Cert and Key are this side's certificate (chain) and private key.
	Cert, Key string
}

// Validate reports a missing file name, naming the flag-like field.
func (f Files) Validate() error {
	var errs []error
	if f.CA == "" {
		errs = append(errs, errors.New("CA file is required"))
	}
	if f.Cert == "" {
		errs = append(errs, errors.New("certificate file is required"))
	}
	if f.Key == "" {
		errs = append(errs, errors.New("key file is required"))
	}
	return errors.Join(errs...)
}

// reloadCheckInterval is how often, at most, a Material looks at its files.
const reloadCheckInterval = time.Second

// Material is a CA pool and a key pair that follow their files: a
// handshake at least a second after the last check looks at the files'
// size and modification time, and reads them again when one changed. A
// reload that fails (a half-written file) keeps the previous material and
// is logged; the next check tries again. Safe for concurrent use.
type Material struct {
	files       Files
	trustDomain string
	log         *slog.Logger
	now         func() time.Time

	mu      sync.Mutex
	checked time.Time
	stamps  [3]stamp
	cert    *tls.Certificate
	pool    *x509.CertPool
	leaf    *x509.Certificate
}

type stamp struct {
	size int64
	mod  time.Time
}

// Load reads files. trustDomain is the cluster's SPIFFE trust domain
// (empty: DefaultTrustDomain); log receives reloads (nil: discard).
func Load(files Files, trustDomain string, log *slog.Logger) (*Material, error) {
	if err := files.Validate(); err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	if trustDomain == "" {
		trustDomain = DefaultTrustDomain
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Material{files: files, trustDomain: trustDomain, log: log, now: time.Now}
	stamps, err := m.stat()
	if err != nil {
		return nil, err
	}
	if err := m.read(stamps); err != nil {
		return nil, err
	}
	m.checked = m.now()
	return m, nil
}

// TrustDomain is the SPIFFE trust domain identities are read in.
func (m *Material) TrustDomain() string { return m.trustDomain }

// Identity is the identity of this side's own certificate.
func (m *Material) Identity() Identity {
	_, _, leaf := m.current()
	return FromCertificate(leaf, m.trustDomain)
}

// NotAfter is when this side's certificate expires.
func (m *Material) NotAfter() time.Time {
	_, _, leaf := m.current()
	return leaf.NotAfter
}

func (m *Material) stat() ([3]stamp, error) {
	var s [3]stamp
	for i, name := range []string{m.files.CA, m.files.Cert, m.files.Key} {
		fi, err := os.Stat(name)
		if err != nil {
			return s, fmt.Errorf("trust: %w", err)
		}
		s[i] = stamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return s, nil
}

func (m *Material) read(stamps [3]stamp) error {
	caPEM, err := os.ReadFile(m.files.CA)
	if err != nil {
		return fmt.Errorf("trust: reading CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("trust: %s holds no PEM certificate", m.files.CA)
	}
	cert, err := tls.LoadX509KeyPair(m.files.Cert, m.files.Key)
	if err != nil {
		return fmt.Errorf("trust: loading %s and %s: %w", m.files.Cert, m.files.Key, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("trust: parsing %s: %w", m.files.Cert, err)
	}
	cert.Leaf = leaf
	m.cert, m.pool, m.leaf, m.stamps = &cert, pool, leaf, stamps
	return nil
}

// current returns the material, reading the files again if they changed.
func (m *Material) current() (*tls.Certificate, *x509.CertPool, *x509.Certificate) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now := m.now(); now.Sub(m.checked) >= reloadCheckInterval {
		m.checked = now
		stamps, err := m.stat()
		switch {
		case err != nil:
			m.log.Warn("TLS files unreadable, keeping the loaded ones", "err", err)
		case stamps != m.stamps:
			if err := m.read(stamps); err != nil {
				m.log.Warn("TLS files changed but do not load, keeping the loaded ones", "err", err)
			} else {
				m.log.Info("reloaded TLS certificate", "cert", m.files.Cert, "identity", FromCertificate(m.leaf, m.trustDomain).ID, "not_after", m.leaf.NotAfter)
			}
		}
	}
	return m.cert, m.pool, m.leaf
}

// Pool is the current CA pool.
func (m *Material) Pool() *x509.CertPool {
	_, pool, _ := m.current()
	return pool
}

// ServerConfig is the tls.Config of a listener. clientAuth is
// tls.RequireAndVerifyClientCert where the caller's identity matters (every
// Colony API), tls.VerifyClientCertIfGiven where another credential may
// stand in (the dashboard's token). nextProtos are the ALPN protocols the
// listener speaks ("h2" for gRPC and HTTP/2).
func (m *Material) ServerConfig(clientAuth tls.ClientAuthType, nextProtos ...string) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: nextProtos}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool, _ := m.current()
		return &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*cert},
			ClientCAs:    pool,
			ClientAuth:   clientAuth,
			NextProtos:   nextProtos,
		}, nil
	}
	return base
}

// PeerServerConfig is the listener side of node-to-node connections: the
// client must present a node certificate of this cluster.
func (m *Material) PeerServerConfig(nextProtos ...string) *tls.Config {
	cfg := m.ServerConfig(tls.RequireAndVerifyClientCert, nextProtos...)
	get := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := get(hello)
		if err != nil {
			return nil, err
		}
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			return m.requireRole(&cs, RoleNode)
		}
		return c, nil
	}
	return cfg
}

// ClientConfig is the tls.Config of a dial that verifies the server's
// certificate for serverName (empty: the host dialled, which gRPC fills in
// from the target; an IP address is checked against the certificate's IP
// SANs) and presents this side's certificate, reloaded as its files change.
//
// The CA pool is the one loaded when ClientConfig is called: crypto/tls
// verifies the host name only against a static RootCAs (the name is not
// visible to a custom verifier when an IP address was dialled), so a
// process follows a rotated CA bundle when it builds its configuration
// again (every CLI run; a sidecar or dashboard at restart). The leaf
// certificate follows its files at once.
func (m *Material) ClientConfig(serverName string, nextProtos ...string) *tls.Config {
	_, pool, _ := m.current()
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		NextProtos: nextProtos,
		RootCAs:    pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _, _ := m.current()
			return cert, nil
		},
	}
}

// PeerClientConfig is the dial side of node-to-node connections: the
// server must present a node certificate of this cluster, whatever address
// was dialled (a proxy, a NAT address).
func (m *Material) PeerClientConfig(nextProtos ...string) *tls.Config {
	cfg := m.ClientConfig("", nextProtos...)
	// The chain is verified in VerifyConnection against the current pool,
	// and the peer's role instead of a host name.
	cfg.RootCAs = nil
	cfg.InsecureSkipVerify = true //nolint:gosec // verified in VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		chains, err := m.verifyServer(&cs, "")
		if err != nil {
			return err
		}
		cs.VerifiedChains = chains
		return m.requireRole(&cs, RoleNode)
	}
	return cfg
}

// verifyServer verifies the server's chain against the current pool, and
// its host name when name is not empty.
func (m *Material) verifyServer(cs *tls.ConnectionState, name string) ([][]*x509.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("trust: the server presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName:       name,
		Roots:         m.Pool(),
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("trust: server certificate: %w", err)
	}
	return chains, nil
}

// requireRole fails unless the verified peer holds role.
func (m *Material) requireRole(cs *tls.ConnectionState, role Role) error {
	id, ok := FromConnectionState(cs, m.trustDomain)
	if !ok {
		return errors.New("trust: no verified certificate")
	}
	if id.Role != role {
		return fmt.Errorf("trust: %s is a %s certificate; this connection needs a %s certificate of trust domain %s", id.ID, id.Role, role, m.trustDomain)
	}
	return nil
}
