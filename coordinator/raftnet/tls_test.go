package raftnet

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/internal/trust"
)

// pki is a CA in a temp dir that issues materials for tests.
type pki struct {
	t   testing.TB
	ca  *trust.CA
	dir string
}

func newPKI(t testing.TB) *pki {
	dir := t.TempDir()
	ca, err := trust.NewCA(dir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{t: t, ca: ca, dir: dir}
}

func (p *pki) material(role trust.Role, name string) *trust.Material {
	p.t.Helper()
	files, err := p.ca.Issue(p.dir, trust.Leaf{Role: role, Name: name, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		p.t.Fatal(err)
	}
	m, err := trust.Load(files, p.ca.TrustDomain, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

// serve answers every RPC tr receives with success and counts them,
// until the test ends.
func serve(t *testing.T, tr *raft.NetworkTransport) *atomicCount {
	n := &atomicCount{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case rpc := <-tr.Consumer():
				n.add()
				rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait() })
	return n
}

type atomicCount struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCount) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *atomicCount) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func newTLSTransport(t *testing.T, m *trust.Material) *raft.NetworkTransport {
	t.Helper()
	tr, err := NewTransport(Config{Bind: "127.0.0.1:0", Self: "x", TLS: m, Logger: nil})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.CloseStreams(); tr.Close() })
	return tr
}

func heartbeat(from *raft.NetworkTransport, to raft.ServerAddress) error {
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("x"), Addr: []byte(from.LocalAddr())},
		Term:      1,
	}
	return from.AppendEntries("target", to, req, &raft.AppendEntriesResponse{})
}

// Over TLS, a node reaches a node; a client certificate of the same CA and
// a plaintext raft transport get an error and no RPC reaches raft.
func TestTLSTransportOnlyNodes(t *testing.T) {
	p := newPKI(t)
	target := newTLSTransport(t, p.material(trust.RoleNode, "n1"))
	got := serve(t, target)

	if err := heartbeat(newTLSTransport(t, p.material(trust.RoleNode, "n2")), target.LocalAddr()); err != nil {
		t.Fatalf("node to node over TLS: %v", err)
	}
	if got.get() != 1 {
		t.Fatalf("target received %d RPCs from a node, want 1", got.get())
	}

	for _, role := range []trust.Role{trust.RoleClient, trust.RoleOperator, trust.RoleAdmin, trust.RoleSidecar} {
		t.Run(string(role), func(t *testing.T) {
			err := heartbeat(newTLSTransport(t, p.material(role, "evil")), target.LocalAddr())
			if err == nil {
				t.Fatalf("a %s certificate sent raft an RPC", role)
			}
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 5*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { plain.CloseStreams(); plain.Close() }()
		if err := heartbeat(plain, target.LocalAddr()); err == nil {
			t.Fatal("a plaintext raft transport sent an RPC to a TLS one")
		}
	})
	t.Run("other CA", func(t *testing.T) {
		if err := heartbeat(newTLSTransport(t, newPKI(t).material(trust.RoleNode, "n2")), target.LocalAddr()); err == nil {
			t.Fatal("a node certificate of another CA sent raft an RPC")
		}
	})
	if got.get() != 1 {
		t.Errorf("target received %d RPCs, want only the node's 1", got.get())
	}
}

// A node dialling something that is not a node of the cluster (a client
// certificate's listener) refuses it: raft never talks to an impostor.
func TestTLSTransportRefusesNonNodeServer(t *testing.T) {
	p := newPKI(t)
	impostor := newTLSTransport(t, p.material(trust.RoleClient, "evil"))
	got := serve(t, impostor)
	err := heartbeat(newTLSTransport(t, p.material(trust.RoleNode, "n1")), impostor.LocalAddr())
	if err == nil || !strings.Contains(err.Error(), "node certificate") {
		t.Errorf("dialling a client certificate's listener: %v, want an error naming the node certificate", err)
	}
	if got.get() != 0 {
		t.Errorf("the impostor received %d RPCs", got.get())
	}
}

// A client that connects and never sends a handshake does not hold up
// raft's accept loop: a node's RPC still gets through meanwhile.
func TestTLSTransportSilentClientDoesNotBlockOthers(t *testing.T) {
	p := newPKI(t)
	target := newTLSTransport(t, p.material(trust.RoleNode, "n1"))
	serve(t, target)
	for range 3 {
		c, err := net.Dial("tcp", string(target.LocalAddr()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if err := heartbeat(newTLSTransport(t, p.material(trust.RoleNode, "n2")), target.LocalAddr()); err != nil {
		t.Fatalf("node RPC while silent clients are connected: %v", err)
	}
}

// A connection that never completes its handshake is closed after the
// handshake timeout instead of holding a goroutine for good.
func TestTLSTransportHandshakeTimeout(t *testing.T) {
	p := newPKI(t)
	s, err := listenTLS("127.0.0.1:0", nil, p.material(trust.RoleNode, "n1"), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "handshake") {
		t.Errorf("read on a connection whose client never handshakes: %v, want a handshake error", err)
	}
}

func TestTLSTransportEncodesOwnAddress(t *testing.T) {
	p := newPKI(t)
	tr, err := NewTransport(Config{Bind: "127.0.0.1:0", Self: "n1", PeerAddrs: map[string]string{"n2": "127.0.0.1:1"}, TLS: p.material(trust.RoleNode, "n1")})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got := string(tr.EncodePeer("n1", "ignored")); got != string(tr.LocalAddr()) {
		t.Errorf("EncodePeer(self) = %q, want the transport's own %q", got, tr.LocalAddr())
	}
}

func TestTLSTransportUnadvertisable(t *testing.T) {
	p := newPKI(t)
	if _, err := NewTransport(Config{Bind: "0.0.0.0:0", TLS: p.material(trust.RoleNode, "n1")}); err == nil {
		t.Error("listening on an unspecified address without an advertise address succeeded")
	}
}

// tcpProxy forwards every connection to target, until the test ends.
func tcpProxy(t *testing.T, target string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) { mu.Lock(); conns = append(conns, c); mu.Unlock() }
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			track(in)
			track(out)
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String()
}

// A node whose PeerAddrs send a peer's raft traffic through a proxy
// reaches it over TLS there: peers check the node certificate, not the
// address dialled.
func TestTLSTransportThroughPeerAddrOverride(t *testing.T) {
	p := newPKI(t)
	target := newTLSTransport(t, p.material(trust.RoleNode, "n2"))
	got := serve(t, target)
	proxy := tcpProxy(t, string(target.LocalAddr()))
	from, err := NewTransport(Config{Bind: "127.0.0.1:0", Self: "n1", PeerAddrs: map[string]string{"n2": proxy}, TLS: p.material(trust.RoleNode, "n1")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { from.CloseStreams(); from.Close() }()
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("n1"), Addr: []byte(from.LocalAddr())}, Term: 1}
	// The configured address is unreachable: only the override works.
	if err := from.AppendEntries("n2", "127.0.0.1:1", req, &raft.AppendEntriesResponse{}); err != nil {
		t.Fatalf("AppendEntries through the proxy: %v", err)
	}
	if got.get() != 1 {
		t.Errorf("target received %d RPCs, want 1", got.get())
	}
}

// A raft dial that reaches another TLS listener of a node (the gRPC port,
// which speaks h2) fails at the handshake: the protocols do not match.
func TestTLSTransportRefusesOtherProtocol(t *testing.T) {
	p := newPKI(t)
	node := p.material(trust.RoleNode, "n2")
	lis, err := tls.Listen("tcp", "127.0.0.1:0", node.PeerServerConfig("h2"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	defer func() { lis.Close(); wg.Wait() }()
	err = heartbeat(newTLSTransport(t, p.material(trust.RoleNode, "n1")), raft.ServerAddress(lis.Addr().String()))
	if err == nil || !strings.Contains(err.Error(), "protocol") {
		t.Errorf("raft dial to an h2 listener: %v, want an application protocol error", err)
	}
}
