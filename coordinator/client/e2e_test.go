package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// These tests run the client against one in-process coordinator node. The
// cluster and fault tests live with the coordinator's system tests.

func startCoordinator(t *testing.T) *client.Client {
	t.Helper()
	srv := coordinatortest.StartNode(t)
	c, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestE2ETree(t *testing.T) {
	c := startCoordinator(t)
	ctx := testContext(t)

	if _, _, err := c.Create(ctx, "/app", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Create(ctx, "/app", nil); !errors.Is(err, client.ErrNodeExists) {
		t.Errorf("second create = %v, want ErrNodeExists", err)
	}
	if _, _, err := c.Get(ctx, "/nope"); !errors.Is(err, client.ErrNoNode) {
		t.Errorf("get of a missing node = %v, want ErrNoNode", err)
	}
	p1, _, err := c.Create(ctx, "/app/job-", nil, client.Sequential())
	if err != nil {
		t.Fatal(err)
	}
	p2, _, err := c.Create(ctx, "/app/job-", nil, client.Sequential())
	if err != nil {
		t.Fatal(err)
	}
	if p1 != "/app/job-0000000000" || p2 != "/app/job-0000000001" {
		t.Errorf("sequential paths %q, %q", p1, p2)
	}

	stat, err := c.Set(ctx, "/app", []byte("b"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "/app", []byte("c"), 0); !errors.Is(err, client.ErrBadVersion) {
		t.Errorf("stale compare-and-set = %v, want ErrBadVersion", err)
	}
	data, got, err := c.Get(ctx, "/app", client.WithSessionConsistency())
	if err != nil || string(data) != "b" || got.GetVersion() != stat.GetVersion() {
		t.Errorf("get = %q, %v, %v", data, got, err)
	}
	names, _, err := c.Children(ctx, "/app")
	if err != nil || !slices.Equal(names, []string{"job-0000000000", "job-0000000001"}) {
		t.Errorf("children = %v, %v", names, err)
	}
	if err := c.Delete(ctx, "/app", client.AnyVersion); !errors.Is(err, client.ErrNotEmpty) {
		t.Errorf("delete of a parent = %v, want ErrNotEmpty", err)
	}

	_, err = c.Multi(ctx,
		client.DeleteOp(p1, client.AnyVersion),
		client.CheckOp("/app", 0), // stale
	)
	if !errors.Is(err, client.ErrBadVersion) {
		t.Errorf("multi with a stale check = %v, want ErrBadVersion", err)
	}
	if ok, _, err := c.Exists(ctx, p1); err != nil || !ok {
		t.Errorf("a failed multi applied its delete: exists = %v, %v", ok, err)
	}
	if _, err := c.Multi(ctx, client.DeleteOp(p1, client.AnyVersion), client.DeleteOp(p2, client.AnyVersion), client.DeleteOp("/app", client.AnyVersion)); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := c.Exists(ctx, "/app"); err != nil || ok {
		t.Errorf("exists after delete = %v, %v", ok, err)
	}
	if c.LastZxid() == 0 {
		t.Error("LastZxid not tracked")
	}
}

func TestE2ESessionOwnsEphemerals(t *testing.T) {
	c := startCoordinator(t)
	ctx := testContext(t)

	s, err := c.OpenSession(ctx, time.Second, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Create(ctx, "/e", nil, client.Ephemeral(s.ID())); err != nil {
		t.Fatal(err)
	}
	// Alive across several TTLs thanks to the keep-alives.
	time.Sleep(3 * s.TTL())
	if err := s.Err(); err != nil {
		t.Fatalf("session lost: %v", err)
	}
	if ok, _, err := c.Exists(ctx, "/e"); err != nil || !ok {
		t.Fatalf("ephemeral gone while its session lives: %v, %v", ok, err)
	}
	sessions, err := c.ListSessions(ctx)
	if err != nil || len(sessions) != 1 || sessions[0].GetName() != "e2e" {
		t.Errorf("sessions = %v, %v", sessions, err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := c.Exists(ctx, "/e"); err != nil || ok {
		t.Errorf("ephemeral survived its session: %v, %v", ok, err)
	}
	if _, _, err := c.Create(ctx, "/e2", nil, client.Ephemeral(s.ID())); !errors.Is(err, client.ErrSessionExpired) {
		t.Errorf("create with a closed session = %v, want ErrSessionExpired", err)
	}
}

func TestE2EWatch(t *testing.T) {
	c := startCoordinator(t)
	ctx := testContext(t)

	if _, _, err := c.Create(ctx, "/w", nil); err != nil {
		t.Fatal(err)
	}
	var h *colonyv1.ResponseHeader
	if _, _, err := c.Get(ctx, "/w", client.WithHeader(&h)); err != nil {
		t.Fatal(err)
	}
	pw, err := c.Watch(ctx, "/w", colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive(), client.AfterZxid(h.GetZxid()))
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	dw, err := c.Watch(ctx, "/w", colonyv1.WatchKind_WATCH_KIND_DATA)
	if err != nil {
		t.Fatal(err)
	}
	defer dw.Close()

	if _, _, err := c.Create(ctx, "/w/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "/w", []byte("2"), client.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "/w/x", client.AnyVersion); err != nil {
		t.Fatal(err)
	}

	type seen struct {
		typ  colonyv1.EventType
		path string
	}
	var got []seen
	for range 3 {
		ev, err := pw.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, seen{ev.GetType(), ev.GetPath()})
	}
	want := []seen{
		{colonyv1.EventType_EVENT_TYPE_CREATED, "/w/x"},
		{colonyv1.EventType_EVENT_TYPE_DATA_CHANGED, "/w"},
		{colonyv1.EventType_EVENT_TYPE_DELETED, "/w/x"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("persistent watch saw %v, want %v", got, want)
	}

	ev, err := dw.Next(ctx)
	if err != nil || ev.GetType() != colonyv1.EventType_EVENT_TYPE_DATA_CHANGED || string(ev.GetData()) != "2" {
		t.Errorf("data watch = %v, %v", ev, err)
	}
	if _, err := dw.Next(ctx); err != io.EOF {
		t.Errorf("data watch after its event = %v, want io.EOF", err)
	}
}

func TestE2ECluster(t *testing.T) {
	c := startCoordinator(t)
	ctx := testContext(t)
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetLeaderId() != "n1" || len(st.GetMembers()) != 1 {
		t.Errorf("status = %v", st)
	}
}

// TestE2EWatchResumesOverLargeEvents: a watch resumed over five creates of
// the largest data a znode may hold, and a multi of two more, gets every
// event (issue 13 item 3: the five went into one 5 MiB message, over gRPC's
// 4 MiB limit, and the watch failed and re-subscribed in a loop).
func TestE2EWatchResumesOverLargeEvents(t *testing.T) {
	c := startCoordinator(t)
	ctx := testContext(t)
	if _, _, err := c.Create(ctx, "/big", nil); err != nil {
		t.Fatal(err)
	}
	var h *colonyv1.ResponseHeader
	if _, _, err := c.Get(ctx, "/big", client.WithHeader(&h)); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20) // coordinator.DefaultConfig().MaxDataBytes
	var want []string
	for i := range 5 {
		p := fmt.Sprintf("/big/%d", i)
		if _, _, err := c.Create(ctx, p, data); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	var ops []*colonyv1.Op
	for i := 5; i < 7; i++ { // a multi may carry 2 MiB of data
		p := fmt.Sprintf("/big/%d", i)
		ops = append(ops, client.CreateOp(p, data))
		want = append(want, p)
	}
	if _, err := c.Multi(ctx, ops...); err != nil {
		t.Fatal(err)
	}

	w, err := c.Watch(ctx, "/big", colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive(), client.AfterZxid(h.GetZxid()))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var got []string
	for range want {
		ev, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %v: %v (resumed %d times)", got, err, w.Resumes())
		}
		if len(ev.GetData()) != len(data) {
			t.Errorf("%s: %d bytes of data, want %d", ev.GetPath(), len(ev.GetData()), len(data))
		}
		got = append(got, ev.GetPath())
	}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if n := w.Resumes(); n != 0 {
		t.Errorf("the watch was resumed %d times, want 0", n)
	}
}

// TestE2EWatchProgress: a watch that asked for progress notifications and
// has nothing to deliver hears, every interval, how far it has read: past a
// write that does not match it.
func TestE2EWatchProgress(t *testing.T) {
	srv := coordinatortest.StartNode(t, func(cfg *coordinator.Config) { cfg.WatchProgressInterval = 50 * time.Millisecond })
	c, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := colonyv1.NewWatchClient(conn).Watch(ctx, &colonyv1.WatchRequest{
		Path: "/quiet", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, ProgressNotify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil || !first.GetCreated() || first.GetProgressIntervalMs() != 50 {
		t.Fatalf("first message %v, %v; want created with progress_interval_ms 50", first, err)
	}
	var h *colonyv1.ResponseHeader
	if _, _, err := c.Create(ctx, "/other", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctx, "/other", client.WithHeader(&h)); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := st.Recv()
		if err != nil {
			t.Fatalf("no progress message past zxid %d: %v", h.GetZxid(), err)
		}
		if len(msg.GetEvents()) > 0 || !msg.GetProgress() {
			t.Fatalf("message %v, want only progress", msg)
		}
		if msg.GetHeader().GetZxid() >= h.GetZxid() {
			return
		}
	}
}

// TestE2ESlowWatchersAreCut: watches that stop reading hold at most their
// connection's byte budget (MaxWatchBytesPerConn); once it is full, a watch
// of that connection that has more to send is cut with ResourceExhausted
// naming the limit and its resume point, and resuming there loses nothing.
func TestE2ESlowWatchersAreCut(t *testing.T) {
	srv := coordinatortest.StartNode(t, func(cfg *coordinator.Config) {
		cfg.MaxDataBytes = 1 << 10
		cfg.WatchBatchBytes = 1 << 10
		cfg.MaxWatchBytesPerConn = 1 // raised to two of the largest messages
	})
	c, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	if _, _, err := c.Create(ctx, "/s", nil); err != nil {
		t.Fatal(err)
	}
	// A fixed 64 KiB stream window (no BDP growth), so that a stream whose
	// client does not read fills and blocks its handler's Send.
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<24))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := &colonyv1.WatchRequest{Path: "/s", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, Recursive: true}
	var streams []colonyv1.Watch_WatchClient
	var starts []uint64
	for range 40 {
		st, err := colonyv1.NewWatchClient(conn).Watch(ctx, req)
		var created *colonyv1.WatchResponse
		if err == nil {
			created, err = st.Recv() // then nothing is read until the writes are done
		}
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
		starts = append(starts, created.GetStartZxid())
	}
	const writes = 500
	data := make([]byte, 512)
	var last uint64
	for i := range writes {
		if _, _, err := c.Create(ctx, fmt.Sprintf("/s/%03d", i), data); err != nil {
			t.Fatal(err)
		}
	}
	var h *colonyv1.ResponseHeader
	if _, _, err := c.Get(ctx, "/s", client.WithHeader(&h)); err != nil {
		t.Fatal(err)
	}
	last = h.GetZxid()

	// Read every stream now: each either got every event or was cut, and a
	// cut one resumed where the cut says gets the rest.
	cut := 0
	for i, st := range streams {
		seen, n := starts[i], 0 // the last zxid received, and how many events
		for seen < last {
			msg, err := st.Recv()
			if err != nil {
				if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "MaxWatchBytesPerConn") {
					t.Fatalf("stream %d after zxid %d: %v, want every event or a cut naming MaxWatchBytesPerConn", i, seen, err)
				}
				cut++
				w, err := c.Watch(ctx, "/s", colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive(), client.AfterZxid(seen))
				if err != nil {
					t.Fatalf("resuming stream %d after zxid %d: %v", i, seen, err)
				}
				for seen < last {
					ev, err := w.Next(ctx)
					if err != nil {
						t.Fatalf("resumed stream %d after zxid %d: %v", i, seen, err)
					}
					if ev.GetZxid() <= seen {
						t.Fatalf("resumed stream %d: zxid %d after %d", i, ev.GetZxid(), seen)
					}
					seen, n = ev.GetZxid(), n+1
				}
				w.Close()
				break
			}
			for _, ev := range msg.GetEvents() {
				if ev.GetZxid() <= seen {
					t.Fatalf("stream %d: zxid %d after %d", i, ev.GetZxid(), seen)
				}
				seen, n = ev.GetZxid(), n+1
			}
		}
		if n != writes {
			t.Errorf("stream %d got %d events, want %d", i, n, writes)
		}
	}
	if cut == 0 {
		t.Errorf("no watch was cut: 40 never-reading watches each held %d events", writes)
	}
	t.Logf("%d of %d watches cut", cut, len(streams))
}
