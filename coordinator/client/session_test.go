package client

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSessionKeepsAliveAndCloses(t *testing.T) {
	a := startNode(t)
	c := newTestClient(t, Config{}, a.addr)

	s, err := c.OpenSession(context.Background(), time.Second, "test")
	if err != nil {
		t.Fatal(err)
	}
	if s.ID() != testSessionID || s.TTL() != 300*time.Millisecond {
		t.Errorf("session %d ttl %v, want %d and the granted 300ms", s.ID(), s.TTL(), testSessionID)
	}
	// Keep-alives every TTL/3: several within a few TTLs, and still alive.
	eventually(t, "keep-alives", func() bool { return a.sessions.keepAlives.Load() >= 5 })
	if err := s.Err(); err != nil {
		t.Fatalf("session lost while the server acknowledges: %v", err)
	}

	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if a.sessions.closes.Load() != 1 {
		t.Errorf("server saw %d closes, want 1", a.sessions.closes.Load())
	}
	select {
	case <-s.Done():
	default:
		t.Error("Done not closed after Close")
	}
	if !errors.Is(s.Err(), ErrClosed) {
		t.Errorf("Err after Close = %v, want ErrClosed", s.Err())
	}
	// No keep-alive goes out once Close has returned.
	n := a.sessions.keepAlives.Load()
	time.Sleep(250 * time.Millisecond)
	if got := a.sessions.keepAlives.Load(); got != n {
		t.Errorf("%d keep-alives after Close", got-n)
	}
}

func TestSessionFailsOver(t *testing.T) {
	a, b := startNode(t), startNode(t)
	a.sessions.failStream.Store(true)
	c := newTestClient(t, Config{}, a.addr, b.addr)

	s, err := c.OpenSession(context.Background(), time.Second, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	eventually(t, "keep-alives on the second endpoint", func() bool { return b.sessions.keepAlives.Load() >= 5 })
	if err := s.Err(); err != nil {
		t.Fatalf("session lost: %v", err)
	}
}

func TestSessionExpiredByServer(t *testing.T) {
	a := startNode(t)
	c := newTestClient(t, Config{}, a.addr)
	s, err := c.OpenSession(context.Background(), time.Second, "test")
	if err != nil {
		t.Fatal(err)
	}
	a.sessions.expired.Store(true)
	<-s.Done()
	if !errors.Is(s.Err(), ErrSessionExpired) {
		t.Errorf("Err = %v, want ErrSessionExpired", s.Err())
	}
	// Closing a session the server no longer has is not an error.
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("Close of an expired session: %v", err)
	}
}

func TestSessionLostWithoutAcks(t *testing.T) {
	a := startNode(t)
	c := newTestClient(t, Config{}, a.addr)
	s, err := c.OpenSession(context.Background(), time.Second, "test")
	if err != nil {
		t.Fatal(err)
	}
	a.sessions.silent.Store(true)
	<-s.Done()
	if !errors.Is(s.Err(), ErrSessionExpired) {
		t.Errorf("Err = %v, want ErrSessionExpired", s.Err())
	}
}

func TestClientCloseEndsSessions(t *testing.T) {
	a := startNode(t)
	c := newTestClient(t, Config{}, a.addr)
	s, err := c.OpenSession(context.Background(), time.Second, "test")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-s.Done()
	if !errors.Is(s.Err(), ErrClosed) {
		t.Errorf("Err = %v, want ErrClosed", s.Err())
	}
}
