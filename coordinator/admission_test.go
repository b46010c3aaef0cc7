package coordinator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
)

// selfSigned is a TLS certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestAdmittedHandshakes: with one handshake slot, a client that connects
// and stays silent holds it; the next connection's handshake waits for it
// rather than running beside it, completes once the slot frees, and one
// that waits longer than the limit is refused.
func TestAdmittedHandshakes(t *testing.T) {
	creds := admitHandshakes(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}}), 1).(*admittedCredentials)
	creds.wait = time.Minute
	handshake := func(server net.Conn) chan error {
		done := make(chan error, 1)
		go func() {
			conn, _, err := creds.ServerHandshake(server)
			if conn != nil {
				conn.Close()
			}
			done <- err
		}()
		return done
	}
	silentClient, silentServer := net.Pipe()
	silent := handshake(silentServer)
	// The silent connection holds the slot once its handshake runs.
	for len(creds.slots) == 0 {
		time.Sleep(time.Millisecond)
	}

	client, server := net.Pipe()
	second := handshake(server)
	clientDone := make(chan error, 1)
	go func() {
		tc := tls.Client(client, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		clientDone <- tc.Handshake()
		tc.Close()
	}()
	select {
	case err := <-second:
		t.Fatalf("a second handshake ran while the only slot was held: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	silentClient.Close() // the silent handshake fails and frees the slot
	if err := <-silent; err == nil {
		t.Error("the silent connection's handshake succeeded")
	}
	if err := <-second; err != nil {
		t.Fatalf("the waiting handshake, once admitted: %v", err)
	}
	if err := <-clientDone; err != nil {
		t.Fatalf("client handshake: %v", err)
	}

	// Past the wait, a connection is refused without a handshake.
	creds.wait = 10 * time.Millisecond
	silentClient, silentServer = net.Pipe()
	defer silentClient.Close()
	silent = handshake(silentServer)
	for len(creds.slots) == 0 {
		time.Sleep(time.Millisecond)
	}
	c3, s3 := net.Pipe()
	defer c3.Close()
	if err := <-handshake(s3); err == nil {
		t.Error("a connection that waited past the limit was admitted")
	}
	silentClient.Close()
	<-silent
}
