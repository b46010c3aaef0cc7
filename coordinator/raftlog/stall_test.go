package raftlog

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// blockingStore is a log store whose StoreLogs waits for release.
type blockingStore struct {
	Store
	entered, release chan struct{}
}

func (b *blockingStore) StoreLogs(ls []*raft.Log) error {
	b.entered <- struct{}{}
	<-b.release
	return b.Store.StoreLogs(ls)
}

// A log write that hangs past the limit makes the guard fail AppendEntries
// until the write returns; a write within the limit does not.
func TestDiskStallGuard(t *testing.T) {
	inner, err := Open(t.TempDir(), Bolt, true)
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	b := &blockingStore{Store: inner, entered: make(chan struct{}), release: make(chan struct{})}
	store := &WatchedStore{Store: b}
	g := &StallGuard{store: store, timeout: 200 * time.Millisecond, log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	if err := g.Check(); err != nil {
		t.Fatalf("no write in progress: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- store.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Data: []byte("x")}}) }()
	<-b.entered
	if err := g.Check(); err != nil {
		t.Fatalf("a write just started: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.Check() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("a write hung for %v: the guard never failed", store.StalledFor(time.Now()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := g.Check(); err == nil || !strings.Contains(err.Error(), "DiskStallTimeout") {
		t.Fatalf("guard error %v, want one naming DiskStallTimeout", err)
	}
	close(b.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := g.Check(); err != nil {
		t.Fatalf("after the write returned: %v", err)
	}
	if d := store.StalledFor(time.Now()); d != 0 {
		t.Fatalf("stalled %v with no write in progress", d)
	}
	off := &StallGuard{store: store, timeout: -1}
	store.since.Store(time.Now().Add(-time.Hour).UnixNano())
	if err := off.Check(); err != nil {
		t.Fatalf("a disabled guard failed: %v", err)
	}
}
