package coordinator

// Admission of client connections: optionally, a bounded number of TLS
// handshakes at once (Config.MaxConcurrentHandshakes). A fleet that comes
// up (or reconnects after a member restarts) opens hundreds of connections
// in the same second; run all at once, their handshakes share the CPU and
// may all finish late. Run a few at a time, in arrival order, most finish
// quickly and the rest wait their turn. But a slot is held through the
// client's part of the handshake as well, so when the clients are the slow
// side the bound caps the rate instead: measured with a simulated fleet
// coming up on a starved machine, a bound of 64 made registrations time out
// that went through without it. It is off by default.

import (
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc/credentials"
)

// handshakeQueueWait is the longest a connection waits for a handshake
// slot; then it is closed, and its client's gRPC channel reconnects after
// its jittered backoff.
const handshakeQueueWait = 10 * time.Second

// admittedCredentials runs at most cap(slots) server handshakes of creds at
// once; the others wait, at most handshakeQueueWait.
type admittedCredentials struct {
	credentials.TransportCredentials
	slots chan struct{}
	wait  time.Duration // the longest wait for a slot
}

var _ credentials.TransportCredentials = (*admittedCredentials)(nil)

// admitHandshakes bounds the concurrent server handshakes of creds to max.
func admitHandshakes(creds credentials.TransportCredentials, max int) credentials.TransportCredentials {
	return &admittedCredentials{TransportCredentials: creds, slots: make(chan struct{}, max), wait: handshakeQueueWait}
}

// ServerHandshake waits for a slot, then runs the handshake in it.
func (a *admittedCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	select {
	case a.slots <- struct{}{}:
	default:
		t := time.NewTimer(a.wait)
		defer t.Stop()
		select {
		case a.slots <- struct{}{}:
		case <-t.C:
			return nil, nil, fmt.Errorf("coordinator: %d TLS handshakes (MaxConcurrentHandshakes) kept %s waiting %v; closing it", cap(a.slots), conn.RemoteAddr(), a.wait)
		}
	}
	defer func() { <-a.slots }()
	return a.TransportCredentials.ServerHandshake(conn)
}

// Clone keeps the shared slots: a clone admits against the same bound.
func (a *admittedCredentials) Clone() credentials.TransportCredentials {
	return &admittedCredentials{TransportCredentials: a.TransportCredentials.Clone(), slots: a.slots, wait: a.wait}
}
