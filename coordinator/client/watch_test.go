package client

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

const persistent = colonyv1.WatchKind_WATCH_KIND_PERSISTENT

func nextZxids(t *testing.T, w *Watcher, n int) []uint64 {
	t.Helper()
	var got []uint64
	for range n {
		ev, err := w.Next(context.Background())
		if err != nil {
			t.Fatalf("Next after %v: %v", got, err)
		}
		got = append(got, ev.GetZxid())
	}
	return got
}

func TestPersistentWatchResumesElsewhere(t *testing.T) {
	a, b := startNode(t), startNode(t)
	// a serves events 11 and 12 and then breaks the stream.
	a.watch.setHandler(func(req *colonyv1.WatchRequest, s colonyv1.Watch_WatchServer) error {
		s.Send(created(10))
		s.Send(events("/a", 11))
		s.Send(events("/a", 12))
		return status.Error(codes.Unavailable, "node is shutting down")
	})
	// b resumes where asked; it repeats 12 to check the client drops it.
	b.watch.setHandler(func(req *colonyv1.WatchRequest, s colonyv1.Watch_WatchServer) error {
		after := req.GetAfterZxid()
		s.Send(created(after))
		s.Send(events("/a", 12, 13))
		s.Send(events("/a", 14))
		<-s.Context().Done()
		return nil
	})
	c := newTestClient(t, Config{}, a.addr, b.addr)

	w, err := c.Watch(context.Background(), "/a", persistent, Recursive())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.StartZxid() != 10 {
		t.Errorf("StartZxid = %d, want 10", w.StartZxid())
	}
	got := nextZxids(t, w, 4)
	if want := []uint64{11, 12, 13, 14}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v (no gap, no duplicate)", got, want)
	}
	reqs := b.watch.requests()
	if len(reqs) != 1 || reqs[0].AfterZxid == nil || *reqs[0].AfterZxid != 12 || !reqs[0].GetRecursive() {
		t.Errorf("resume request %v, want recursive after_zxid 12", reqs)
	}
	if w.LastZxid() != 14 || c.LastZxid() < 14 {
		t.Errorf("LastZxid: watcher %d, client %d; want 14", w.LastZxid(), c.LastZxid())
	}
}

func TestWatchResync(t *testing.T) {
	a := startNode(t)
	a.watch.setHandler(func(req *colonyv1.WatchRequest, s colonyv1.Watch_WatchServer) error {
		s.Send(created(req.GetAfterZxid()))
		s.Send(events("/a", 6))
		return s.Send(&colonyv1.WatchResponse{Header: header(9), Resync: true, ResyncReason: "watcher fell behind"})
	})
	c := newTestClient(t, Config{}, a.addr)
	w, err := c.Watch(context.Background(), "/a", persistent, AfterZxid(5))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := nextZxids(t, w, 1); got[0] != 6 {
		t.Errorf("first event %v", got)
	}
	for range 2 { // the error sticks
		if _, err := w.Next(context.Background()); !errors.Is(err, ErrResync) {
			t.Fatalf("Next = %v, want ErrResync", err)
		}
	}
	if reqs := a.watch.requests(); *reqs[0].AfterZxid != 5 {
		t.Errorf("after_zxid sent %d, want 5", *reqs[0].AfterZxid)
	}
}

func TestWatchResyncAtStart(t *testing.T) {
	a := startNode(t)
	a.watch.setHandler(func(req *colonyv1.WatchRequest, s colonyv1.Watch_WatchServer) error {
		return s.Send(&colonyv1.WatchResponse{Header: header(90), Resync: true, ResyncReason: "after_zxid 1 is older than the retained history"})
	})
	c := newTestClient(t, Config{}, a.addr)
	if _, err := c.Watch(context.Background(), "/a", persistent, AfterZxid(1)); !errors.Is(err, ErrResync) {
		t.Fatalf("Watch = %v, want ErrResync", err)
	}
}

func TestOneShotWatch(t *testing.T) {
	a := startNode(t)
	a.watch.setHandler(func(req *colonyv1.WatchRequest, s colonyv1.Watch_WatchServer) error {
		s.Send(created(3))
		s.Send(events("/a", 4))
		return nil
	})
	c := newTestClient(t, Config{}, a.addr)
	w, err := c.Watch(context.Background(), "/a", colonyv1.WatchKind_WATCH_KIND_DATA)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ev, err := w.Next(context.Background())
	if err != nil || ev.GetZxid() != 4 {
		t.Fatalf("Next = %v, %v", ev, err)
	}
	if _, err := w.Next(context.Background()); err != io.EOF {
		t.Errorf("Next after the event = %v, want io.EOF", err)
	}
}

func TestWatchCloseAndContext(t *testing.T) {
	a := startNode(t)
	a.watch.setHandler(func(req *colonyv1.WatchRequest, s colonyv1.Watch_WatchServer) error {
		s.Send(created(1))
		<-s.Context().Done()
		return nil
	})
	c := newTestClient(t, Config{}, a.addr)

	w, err := c.Watch(context.Background(), "/a", persistent)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	w.Close()
	if _, err := w.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	w, err = c.Watch(ctx, "/a", persistent)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cancel()
	if _, err := w.Next(context.Background()); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after the watch's context ended = %v, want context.Canceled", err)
	}
}

func TestWatchInvalid(t *testing.T) {
	a := startNode(t)
	a.watch.setHandler(func(req *colonyv1.WatchRequest, s colonyv1.Watch_WatchServer) error {
		return status.Error(codes.InvalidArgument, "path: must start with /")
	})
	c := newTestClient(t, Config{}, a.addr)
	if _, err := c.Watch(context.Background(), "a", persistent); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Watch = %v, want ErrInvalidArgument", err)
	}
	if n := len(a.watch.requests()); n != 1 {
		t.Errorf("invalid watch sent %d times, want 1", n)
	}
}
