package coordinator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/coordinator/raftnet"
	"github.com/colonymesh/colony/internal/trust"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// testPKI is a CA whose certificates the tests of a secure cluster use.
type testPKI struct {
	t   testing.TB
	ca  *trust.CA
	dir string
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := trust.NewCA(dir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{t: t, ca: ca, dir: dir}
}

func (p *testPKI) files(role trust.Role, name string) trust.Files {
	p.t.Helper()
	files, err := p.ca.Issue(p.dir, trust.Leaf{Role: role, Name: name, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		p.t.Fatal(err)
	}
	return files
}

func (p *testPKI) material(role trust.Role, name string) *trust.Material {
	p.t.Helper()
	m, err := trust.Load(p.files(role, name), p.ca.TrustDomain, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

// dialTLS connects to addr presenting cert (none when nil) and trusting
// only the cluster's CA, closed at cleanup.
func (p *testPKI) dialTLS(addr string, cert *tls.Certificate) *grpc.ClientConn {
	p.t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return dialWith(p.t, addr, credentials.NewTLS(cfg))
}

func dialWith(t testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// newSecureCluster starts n nodes with TLS, each with a node certificate
// of p's CA: the first bootstraps alone, the others join through it. The
// test's connections to the nodes hold an admin certificate.
func newSecureCluster(t *testing.T, p *testPKI, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, nodes: map[string]*testNode{}}
	t.Cleanup(c.closeAll)
	admin := p.material(trust.RoleAdmin, "test")
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		cfg := testConfig(t, id, t.TempDir())
		cfg.TLS = p.material(trust.RoleNode, id)
		if i == 1 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{c.node("n1").srv.Addr()}
		}
		srv, err := New(cfg)
		if err != nil {
			t.Fatalf("starting %s: %v", id, err)
		}
		conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(admin.ClientConfig("", "h2"))))
		if err != nil {
			srv.Close()
			t.Fatal(err)
		}
		c.mu.Lock()
		c.nodes[id] = &testNode{
			srv: srv, cfg: cfg, conn: conn,
			tree: colonyv1.NewTreeClient(conn), sess: colonyv1.NewSessionsClient(conn),
			wch: colonyv1.NewWatchClient(conn), clu: colonyv1.NewClusterClient(conn),
		}
		c.mu.Unlock()
	}
	c.waitVoters(n)
	return c
}

// applied reports whether path exists in s's applied state.
func applied(s *Server, path string) bool {
	_, _, err := s.fsm.tree.View().Get(path)
	return err == nil
}

// raftTerm is a node's current raft term.
func raftTerm(t *testing.T, s *Server) uint64 {
	t.Helper()
	term, err := strconv.ParseUint(s.raft.Stats()["term"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return term
}

// forgedAppend is the attack a raft port open to anyone allows: a made-up
// leader, one term ahead, appends a create of /pwned right after the
// target's last entry and declares it committed.
func forgedAppend(t *testing.T, target *Server, from raft.ServerAddress) *raft.AppendEntriesRequest {
	t.Helper()
	st := target.raft.Stats()
	lastTerm, err := strconv.ParseUint(st["last_log_term"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	last := target.raft.LastIndex()
	term := raftTerm(t, target) + 1
	cmd := &peerv1.Command{RequestId: "evil-1", TimeMs: time.Now().UnixMilli(), Op: &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: []*colonyv1.Op{
		{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: "/pwned", Data: []byte("owned")}}},
	}}}}
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.AppendEntriesRequest{
		RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte(from)},
		Term:              term,
		PrevLogEntry:      last,
		PrevLogTerm:       lastTerm,
		Entries:           []*raft.Log{{Index: last + 1, Term: term, Type: raft.LogCommand, Data: data}},
		LeaderCommitIndex: last + 1,
	}
}

func plainRaftTransport(t *testing.T) *raft.NetworkTransport {
	t.Helper()
	tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Close leaves pooled connections open, and the node's end of each
	// with a goroutine reading it.
	t.Cleanup(func() { tr.CloseStreams(); tr.Close() })
	return tr
}

// The control for the attacks below: on an insecure node, a made-up
// leader's AppendEntries is accepted and /pwned is applied. The attack
// harness works; TLS is what stops it.
func TestInsecureRaftAcceptsForgedLeader(t *testing.T) {
	c := newTestCluster(t, 1)
	l := c.leader()
	evil := plainRaftTransport(t)
	// The node may append an entry of its own between the forged request's
	// reading of its log and its arrival; the forged entry then replaces
	// one already applied and is not applied itself. Another try reads the
	// log afresh.
	for try := 1; ; try++ {
		var resp raft.AppendEntriesResponse
		if err := evil.AppendEntries("n1", raft.ServerAddress(l.srv.RaftAddr()), forgedAppend(t, l.srv, evil.LocalAddr()), &resp); err != nil {
			t.Fatalf("forged AppendEntries on an insecure node: %v", err)
		}
		if !resp.Success {
			t.Fatalf("forged AppendEntries on an insecure node was not accepted: %+v", resp)
		}
		deadline := time.Now().Add(2 * time.Second)
		for !applied(l.srv, "/pwned") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if applied(l.srv, "/pwned") {
			return
		}
		if try == 3 {
			t.Fatal("/pwned was not applied on an insecure node after 3 forged AppendEntries")
		}
	}
}

// TestSecureCluster: with TLS, a cluster elects and forwards writes, and
// raft, the Peer service and the client API refuse everything without the
// right certificate. One cluster serves every subtest.
func TestSecureCluster(t *testing.T) {
	p := newTestPKI(t)
	c := newSecureCluster(t, p, 3)
	ctx := ctxT(t)

	t.Run("writes through a follower", func(t *testing.T) {
		fs := c.followers()
		if _, err := fs[0].tree.Create(ctx, &colonyv1.CreateRequest{Path: "/secure", Data: []byte("v")}); err != nil {
			t.Fatalf("create through a follower: %v", err)
		}
		got, err := fs[1].tree.Get(ctx, &colonyv1.GetRequest{Path: "/secure"})
		if err != nil || string(got.Data) != "v" {
			t.Fatalf("read through the other follower: %v, %v", got, err)
		}
	})

	// attack sends the forged AppendEntries from tr to the leader and
	// checks that it fails and changes nothing.
	attack := func(t *testing.T, tr *raft.NetworkTransport) {
		l := c.leader()
		term := raftTerm(t, l.srv)
		var resp raft.AppendEntriesResponse
		err := tr.AppendEntries(raft.ServerID(l.srv.ID()), raft.ServerAddress(l.srv.RaftAddr()), forgedAppend(t, l.srv, tr.LocalAddr()), &resp)
		if err == nil {
			t.Fatalf("forged AppendEntries reached raft: %+v", resp)
		}
		t.Logf("refused: %v", err)
		if !l.srv.IsLeader() || raftTerm(t, l.srv) != term {
			t.Errorf("the leader stepped down or changed term (%d -> %d)", term, raftTerm(t, l.srv))
		}
		for _, n := range c.nodes {
			if applied(n.srv, "/pwned") {
				t.Errorf("/pwned was applied on %s", n.srv.ID())
			}
		}
	}
	t.Run("raft refuses plaintext", func(t *testing.T) {
		attack(t, plainRaftTransport(t))
	})
	t.Run("raft refuses a client certificate", func(t *testing.T) {
		for _, role := range []trust.Role{trust.RoleClient, trust.RoleSidecar, trust.RoleOperator, trust.RoleAdmin} {
			t.Run(string(role), func(t *testing.T) {
				tr, err := raftnet.NewTransport(raftnet.Config{Bind: "127.0.0.1:0", Self: "evil", TLS: p.material(role, "evil")})
				if err != nil {
					t.Fatal(err)
				}
				defer func() { tr.CloseStreams(); tr.Close() }()
				attack(t, tr)
			})
		}
	})

	// The Peer service appends to the log on the leader: only nodes may
	// call it.
	propose := func(conn *grpc.ClientConn) error {
		cmd := &peerv1.Command{RequestId: "evil-2", Op: &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: []*colonyv1.Op{
			{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: "/pwned"}}},
		}}}}
		_, err := peerv1.NewPeerClient(conn).ProposeBatch(ctx, &peerv1.ProposeBatchRequest{Commands: []*peerv1.Command{cmd}})
		return err
	}
	t.Run("peer service refuses non-nodes", func(t *testing.T) {
		l := c.leader()
		for _, role := range []trust.Role{trust.RoleClient, trust.RoleSidecar, trust.RoleOperator, trust.RoleAdmin} {
			t.Run(string(role), func(t *testing.T) {
				m := p.material(role, "evil")
				conn := dialWith(t, l.srv.Addr(), credentials.NewTLS(m.ClientConfig("", "h2")))
				wantCode(t, "ProposeBatch as "+string(role), propose(conn), codes.PermissionDenied, "spiffe://")
			})
		}
		t.Run("plaintext", func(t *testing.T) {
			conn := dialWith(t, l.srv.Addr(), insecure.NewCredentials())
			wantCode(t, "plaintext ProposeBatch", propose(conn), codes.Unavailable)
		})
		for _, n := range c.nodes {
			if applied(n.srv, "/pwned") {
				t.Errorf("/pwned was applied on %s", n.srv.ID())
			}
		}
	})

	// The client API needs a certificate of the cluster's CA that is valid
	// now.
	t.Run("client API refuses bad certificates", func(t *testing.T) {
		n := c.followers()[0]
		get := func(conn *grpc.ClientConn) error {
			_, err := colonyv1.NewTreeClient(conn).Get(ctx, &colonyv1.GetRequest{Path: "/secure"})
			return err
		}
		loadPair := func(f trust.Files) *tls.Certificate {
			cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
			if err != nil {
				t.Fatal(err)
			}
			return &cert
		}
		// The control: the same dial with a good certificate works.
		if err := get(p.dialTLS(n.srv.Addr(), loadPair(p.files(trust.RoleAdmin, "good")))); err != nil {
			t.Fatalf("a valid admin certificate: %v", err)
		}
		cases := []struct {
			name string
			cert *tls.Certificate
		}{
			{"no certificate", nil},
			{"unknown CA", loadPair(newTestPKI(t).files(trust.RoleAdmin, "stranger"))},
			{"expired", expiredCert(t, p.ca, trust.RoleAdmin, "late")},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				err := get(p.dialTLS(n.srv.Addr(), tc.cert))
				wantCode(t, "Get with "+tc.name, err, codes.Unavailable)
			})
		}
		t.Run("plaintext", func(t *testing.T) {
			wantCode(t, "plaintext Get", get(dialWith(t, n.srv.Addr(), insecure.NewCredentials())), codes.Unavailable)
		})
	})
}

// expiredCert is a certificate of ca for role and name that expired an
// hour ago.
func expiredCert(t *testing.T, ca *trust.CA, role trust.Role, name string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-2 * time.Hour),
		NotAfter:     now.Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{trust.SPIFFEID(ca.TrustDomain, role, name)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
