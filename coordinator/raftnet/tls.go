package raftnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/internal/trust"
)

// alpn is the TLS application protocol raft connections negotiate, so
// that a raft dial that reaches another TLS listener of the node (its
// gRPC port, which speaks "h2") fails at the handshake instead of
// exchanging bytes neither side understands.
const alpn = "colony-raft"

var (
	errNotAdvertisable = errors.New("raftnet: local bind address is not advertisable")
	errNotTCP          = errors.New("raftnet: local address is not a TCP address")
)

// tlsStream is raft's stream layer over mutual TLS. Both ends require a
// node certificate of the cluster: the listener with PeerServerConfig, the
// dialler with PeerClientConfig, which also works through proxies since it
// checks the role in the certificate, not a host name.
//
// raft accepts connections in one loop and serves each in a goroutine of
// its own, so Accept must not handshake: one client that connects and
// sends nothing would stop every other connection. Accept wraps the
// connection instead, and the handshake happens on its first read or
// write, in raft's goroutine for that connection, bounded by
// handshakeTimeout.
type tlsStream struct {
	net.Listener // plain TCP
	advertise    net.Addr
	server       *tls.Config
	client       *tls.Config
	// handshakeTimeout bounds an accepted connection's handshake.
	handshakeTimeout time.Duration
}

var _ raft.StreamLayer = (*tlsStream)(nil)

// listenTLS listens on bind for raft over mutual TLS with m's material.
func listenTLS(bind string, advertise net.Addr, m *trust.Material, handshakeTimeout time.Duration) (*tlsStream, error) {
	lis, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &tlsStream{
		Listener:         lis,
		advertise:        advertise,
		server:           m.PeerServerConfig(alpn),
		client:           m.PeerClientConfig(alpn),
		handshakeTimeout: handshakeTimeout,
	}
	// The same check as raft's TCP transport: peers must be able to dial
	// the address this node puts in its requests.
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		lis.Close()
		return nil, errNotTCP
	}
	if addr.IP == nil || addr.IP.IsUnspecified() {
		lis.Close()
		return nil, errNotAdvertisable
	}
	return s, nil
}

// Accept returns the next connection, its TLS handshake not yet done.
func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &serverConn{Conn: tls.Server(c, s.server), timeout: s.handshakeTimeout}, nil
}

// Addr is the advertised address, else the bound one.
func (s *tlsStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.Listener.Addr()
}

// Dial connects to a peer and completes the TLS handshake within timeout
// (zero: no limit), so a peer without a node certificate fails here.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raftnet: dialling %s over TLS: %w", address, err)
	}
	return c, nil
}

// serverConn is an accepted TLS connection that handshakes, with a
// deadline, on its first read or write.
type serverConn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		if c.timeout > 0 {
			if err := c.Conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
				c.err = err
				return
			}
		}
		if err := c.Conn.Handshake(); err != nil {
			c.err = fmt.Errorf("raftnet: TLS handshake with %s: %w", c.Conn.RemoteAddr(), err)
			return
		}
		if c.timeout > 0 {
			c.err = c.Conn.SetDeadline(time.Time{})
		}
	})
	return c.err
}

// Read handshakes first, then reads.
func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// Write handshakes first, then writes.
func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
