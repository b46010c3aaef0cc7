package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// CA is a certificate authority that issues Colony's certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// TrustDomain is the SPIFFE trust domain of what it issues, read from
	// the CA's own URI SAN (spiffe://<trust-domain>).
	TrustDomain string
}

// File names in a certificate directory: ca.crt and ca.key, and
// <role>-<name>.crt and .key for each leaf.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// LeafFiles names a leaf's certificate and key files in dir.
func LeafFiles(dir string, role Role, name string) Files {
	base := filepath.Join(dir, string(role)+"-"+name)
	return Files{CA: filepath.Join(dir, CACertFile), Cert: base + ".crt", Key: base + ".key"}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckName checks a name that goes into a SPIFFE ID and a file name.
func CheckName(what, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("trust: %s %q must be 1 to 63 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit", what, name)
	}
	return nil
}

// NewCA creates a CA for trustDomain valid for validity, and writes
// ca.crt and ca.key (mode 0600) into dir. It refuses to overwrite an
// existing CA.
func NewCA(dir, trustDomain string, validity time.Duration) (*CA, error) {
	if trustDomain == "" {
		trustDomain = DefaultTrustDomain
	}
	if err := CheckName("trust domain", trustDomain); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return nil, fmt.Errorf("trust: %s already holds a CA (%s); remove it to make a new one", dir, CAKeyFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Colony CA " + trustDomain, Organization: []string{"Colony"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("trust: creating CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, CAKeyFile), "EC PRIVATE KEY", mustMarshalKey(key), 0o600); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, CACertFile), "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, TrustDomain: trustDomain}, nil
}

// LoadCA reads ca.crt and ca.key from dir.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("trust: reading the CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("trust: reading the CA key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("trust: %s or %s in %s is not PEM", CACertFile, CAKeyFile, dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("trust: parsing the CA: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("trust: parsing the CA key: %w", err)
	}
	td := DefaultTrustDomain
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			td = u.Host
		}
	}
	return &CA{Cert: cert, Key: key, TrustDomain: td}, nil
}

// Leaf describes a certificate to issue.
type Leaf struct {
	Role Role
	// Name is the node id, the service (sidecar) or the user name.
	Name string
	// Hosts are the DNS names and IP addresses a server certificate is
	// valid for (nodes, sidecars, the dashboard); clients need none.
	Hosts []string
	// Validity is how long it is valid. Zero: one year.
	Validity time.Duration
}

// Issue creates the certificate described by leaf, signed by ca, and
// writes it and its key into dir (LeafFiles), replacing earlier ones: a
// running process picks the new files up by itself.
func (ca *CA) Issue(dir string, leaf Leaf) (Files, error) {
	if _, err := ParseRole(string(leaf.Role)); err != nil {
		return Files{}, err
	}
	if err := CheckName("name", leaf.Name); err != nil {
		return Files{}, err
	}
	if leaf.Validity == 0 {
		leaf.Validity = 365 * 24 * time.Hour
	}
	if leaf.Validity < 0 {
		return Files{}, errors.New("trust: validity must be positive")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: leaf.Name, Organization: []string{"Colony " + string(leaf.Role)}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(leaf.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{SPIFFEID(ca.TrustDomain, leaf.Role, leaf.Name)},
	}
	if len(leaf.Hosts) > 0 || leaf.Role == RoleNode || leaf.Role == RoleSidecar {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	for _, h := range leaf.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Files{}, fmt.Errorf("trust: issuing %s %s: %w", leaf.Role, leaf.Name, err)
	}
	files := LeafFiles(dir, leaf.Role, leaf.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, err
	}
	if err := writePEM(files.Key, "EC PRIVATE KEY", mustMarshalKey(key), 0o600); err != nil {
		return Files{}, err
	}
	if err := writePEM(files.Cert, "CERTIFICATE", der, 0o644); err != nil {
		return Files{}, err
	}
	return files, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

func mustMarshalKey(k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return b
}

// writePEM writes the file through a temporary file and a rename, so a
// process reloading it never reads half of it.
func writePEM(name, typ string, der []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := pem.Encode(tmp, &pem.Block{Type: typ, Bytes: der}); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
