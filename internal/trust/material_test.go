package trust

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a Material's now, moved by the test.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// testCA is a CA in a temp dir.
func testCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := NewCA(dir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func issue(t *testing.T, ca *CA, dir string, role Role, name string) Files {
	t.Helper()
	f, err := ca.Issue(dir, Leaf{Role: role, Name: name, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func load(t *testing.T, f Files) *Material {
	t.Helper()
	m, err := Load(f, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// copyFile puts src's content at dst through a rename, as a careful
// rotation does.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, b)
}

func writeFile(t *testing.T, dst string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(dst), ".tmp-test")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// serverIdentity is the identity of the certificate server presents in a
// handshake with a client holding client's material.
func serverIdentity(t *testing.T, server, client *Material) Identity {
	t.Helper()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	srv := tls.Server(sc, server.ServerConfig(tls.RequireAndVerifyClientCert))
	cli := tls.Client(cc, client.ClientConfig("127.0.0.1"))
	var wg sync.WaitGroup
	var serr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		serr = srv.Handshake()
		if serr != nil {
			cc.Close()
		}
	}()
	cerr := cli.Handshake()
	if cerr != nil {
		sc.Close()
	}
	wg.Wait()
	if err := errors.Join(cerr, serr); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return FromCertificate(cli.ConnectionState().PeerCertificates[0], server.TrustDomain())
}

// Replaced certificate files take effect on the first handshake a second
// or more after the last look at the files, without a restart.
func TestMaterialReloadsChangedFiles(t *testing.T) {
	ca, dir := testCA(t)
	files := issue(t, ca, dir, RoleNode, "old")
	server := load(t, files)
	clock := newFakeClock()
	server.now = clock.now
	server.checked = clock.now()
	client := load(t, issue(t, ca, dir, RoleAdmin, "test"))

	if got := serverIdentity(t, server, client); got.Name != "old" {
		t.Fatalf("before the rotation the server is %v, want old", got)
	}

	fresh := issue(t, ca, t.TempDir(), RoleNode, "new")
	copyFile(t, fresh.Key, files.Key)
	copyFile(t, fresh.Cert, files.Cert)

	clock.advance(reloadCheckInterval / 2)
	if got := serverIdentity(t, server, client); got.Name != "old" {
		t.Errorf("within the check interval the server is %v, want the loaded old one", got)
	}
	clock.advance(reloadCheckInterval)
	if got := serverIdentity(t, server, client); got.Name != "new" {
		t.Errorf("after the check interval the server is %v, want the new certificate", got)
	}
	if got := server.Identity(); got.Name != "new" || got.Role != RoleNode {
		t.Errorf("Identity() = %v, want node new", got)
	}
}

// A reload that fails (a file half written, a key that does not match the
// certificate yet, a CA file that is not PEM) keeps the loaded material;
// once the files are whole again the next check loads them.
func TestMaterialKeepsLoadedOnBadFiles(t *testing.T) {
	ca, dir := testCA(t)
	client := load(t, issue(t, ca, dir, RoleAdmin, "test"))
	tests := []struct {
		name       string
		breakFiles func(t *testing.T, files, fresh Files)
	}{
		{"half-written certificate", func(t *testing.T, files, fresh Files) {
			b, err := os.ReadFile(fresh.Cert)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, files.Cert, b[:len(b)/2])
		}},
		{"certificate replaced before its key", func(t *testing.T, files, fresh Files) {
			copyFile(t, fresh.Cert, files.Cert)
		}},
		{"CA not PEM", func(t *testing.T, files, fresh Files) {
			writeFile(t, files.CA, []byte("-----BEGIN CERT"))
		}},
		{"certificate removed", func(t *testing.T, files, fresh Files) {
			if err := os.Remove(files.Cert); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case has its own copy of the server's files.
			own := t.TempDir()
			orig := issue(t, ca, own, RoleNode, "old")
			files := Files{CA: filepath.Join(own, CACertFile), Cert: orig.Cert, Key: orig.Key}
			copyFile(t, filepath.Join(dir, CACertFile), files.CA)
			server := load(t, files)
			clock := newFakeClock()
			server.now = clock.now
			server.checked = clock.now()

			fresh := issue(t, ca, t.TempDir(), RoleNode, "new")
			tt.breakFiles(t, files, fresh)
			clock.advance(2 * reloadCheckInterval)
			if got := serverIdentity(t, server, client); got.Name != "old" {
				t.Fatalf("with broken files the server is %v, want the loaded old one", got)
			}

			// The rotation completes.
			copyFile(t, filepath.Join(dir, CACertFile), files.CA)
			copyFile(t, fresh.Key, files.Key)
			copyFile(t, fresh.Cert, files.Cert)
			clock.advance(2 * reloadCheckInterval)
			if got := serverIdentity(t, server, client); got.Name != "new" {
				t.Errorf("after the files are whole again the server is %v, want new", got)
			}
		})
	}
}

// Load itself refuses missing or broken files, naming what is missing.
func TestLoadRefusesBadFiles(t *testing.T) {
	ca, dir := testCA(t)
	good := issue(t, ca, dir, RoleNode, "n1")
	if _, err := Load(Files{}, "", nil); err == nil || !strings.Contains(err.Error(), "CA file is required") {
		t.Errorf("Load with no files: %v", err)
	}
	other := issue(t, ca, dir, RoleNode, "n2")
	if _, err := Load(Files{CA: good.CA, Cert: good.Cert, Key: other.Key}, "", nil); err == nil {
		t.Error("Load accepted a key that does not match the certificate")
	}
	if _, err := Load(Files{CA: good.Cert + ".missing", Cert: good.Cert, Key: good.Key}, "", nil); err == nil {
		t.Error("Load accepted a missing CA file")
	}
}

// Peer configurations admit nodes only, in both directions.
func TestPeerConfigsRequireNodes(t *testing.T) {
	ca, dir := testCA(t)
	node := load(t, issue(t, ca, dir, RoleNode, "n1"))
	admin := load(t, issue(t, ca, dir, RoleAdmin, "root"))
	handshake := func(server, client *tls.Config) error {
		sc, cc := net.Pipe()
		defer sc.Close()
		defer cc.Close()
		srv, cli := tls.Server(sc, server), tls.Client(cc, client)
		errc := make(chan error, 1)
		go func() {
			err := srv.Handshake()
			if err == nil {
				// TLS 1.3: the client learns of a refused certificate on
				// its first read.
				_, err = srv.Write([]byte{1})
			}
			cc.Close()
			errc <- err
		}()
		err := cli.Handshake()
		if err == nil {
			_, err = cli.Read(make([]byte, 1))
		}
		return errors.Join(err, <-errc)
	}
	if err := handshake(node.PeerServerConfig(), node.PeerClientConfig()); err != nil {
		t.Errorf("node to node: %v", err)
	}
	if err := handshake(node.PeerServerConfig(), admin.PeerClientConfig()); err == nil {
		t.Error("the peer listener accepted an admin certificate")
	}
	if err := handshake(admin.PeerServerConfig(), node.PeerClientConfig()); err == nil {
		t.Error("a peer dial accepted an admin certificate's listener")
	}
}

// A client that dials an IP address accepts only a server certificate
// valid for that address: a sidecar's certificate (a server certificate
// of the same CA, for another address) cannot stand in for a coordinator.
func TestClientConfigChecksTheDialledAddress(t *testing.T) {
	ca, dir := testCA(t)
	client := load(t, issue(t, ca, dir, RoleAdmin, "ops"))
	for _, tc := range []struct {
		name  string
		hosts []string
		ok    bool
	}{
		{"valid for the address dialled", []string{"127.0.0.1"}, true},
		{"valid for another address", []string{"10.9.9.9"}, false},
		{"valid for a name only", []string{"payments.internal"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ca.Issue(t.TempDir(), Leaf{Role: RoleSidecar, Name: "payments", Hosts: tc.hosts})
			if err != nil {
				t.Fatal(err)
			}
			f.CA = filepath.Join(dir, CACertFile)
			server := load(t, f)
			lis, err := tls.Listen("tcp", "127.0.0.1:0", server.ServerConfig(tls.RequireAndVerifyClientCert))
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c, err := lis.Accept(); err == nil {
					_ = c.(*tls.Conn).Handshake()
					c.Close()
				}
			}()
			defer wg.Wait()
			conn, err := tls.Dial("tcp", lis.Addr().String(), client.ClientConfig(""))
			if err == nil {
				conn.Close()
			}
			if ok := err == nil; ok != tc.ok {
				t.Fatalf("dial a server certified for %v at %s: err = %v, want ok = %v", tc.hosts, lis.Addr(), err, tc.ok)
			}
		})
	}
}
