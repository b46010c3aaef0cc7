//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/framework"
)

// procMemKiB reads VmRSS and VmHWM (kB) of pid from /proc/<pid>/status.
func procMemKiB(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/status %s: %v", pid, k, err)
		}
		if k == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rss, hwm
}

// TestSlowWatchersMemoryBounded: 1,000 recursive watches on one connection
// that never read, during 4,000 writes of 1 KiB, cost the coordinator
// process a bounded amount of memory (issue 13 item 4: +710 MB). The bound
// is derived from the configured limits (internal/watchhub/DESIGN.md):
//
//	budget                        --max-watch-bytes-per-conn (16 MiB): the
//	                              messages watch handlers are sending or
//	                              have just sent
//	+ watches * 2*(64 KiB+batch)  what gRPC may hold per stream outside the
//	                              budget: its 64 KiB write quota plus one
//	                              message (batch: WatchBatchBytes, 16 KiB),
//	                              doubled because gRPC keeps each message
//	                              in a pooled buffer of the next power of two
//	+ history                     the hub's retained events (4,000 * ~1.3 KiB)
//
// times two for the Go heap's growth before a collection (GOGC=100), plus
// 64 MiB for runtime noise. With -race the server is built with the race
// detector, whose shadow memory is several times the heap: the test then
// only reports the figures (run it without -race to check the bound:
// go test -count=1 -run TestSlowWatchersMemoryBounded ./tests/e2e/).
// A reading watch on another connection must still get every event.
func TestSlowWatchersMemoryBounded(t *testing.T) {
	const (
		watchers = 1000
		writes   = 4000
		value    = 1 << 10
		budget   = 16 << 20
		batch    = 16 << 10
	)
	c := NewCluster(t, 1, "--max-watch-bytes-per-conn", strconv.Itoa(budget))
	n := c.Nodes[0]
	ctx := testContext(t, 5*time.Minute)
	mustRetry(t, ctx, "create /slow", func(ctx context.Context) (*colonyv1.CreateResponse, error) {
		return n.Tree().Create(ctx, &colonyv1.CreateRequest{Path: "/slow", RequestId: "slow-create"})
	})
	pid := n.Pid()

	// The never-reading watches, on a connection of their own.
	conn, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(c.PKI.Creds()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wctx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	req := &colonyv1.WatchRequest{Path: "/slow", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, Recursive: true}
	for i := range watchers {
		st, err := colonyv1.NewWatchClient(conn).Watch(wctx, req)
		if err == nil {
			_, err = st.Recv() // created; nothing is read after it
		}
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	// A watch that reads, on the harness's own connection.
	reader, err := n.Watch().Watch(wctx, req)
	if err == nil {
		_, err = reader.Recv()
	}
	if err != nil {
		t.Fatalf("reading watch: %v", err)
	}
	rss0, _ := procMemKiB(t, pid)

	data := make([]byte, value)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < writes; i += 8 {
				p := fmt.Sprintf("/slow/%04d", i)
				if _, _, err := retry(ctx, func(ctx context.Context) (*colonyv1.CreateResponse, error) {
					return n.Tree().Create(ctx, &colonyv1.CreateRequest{Path: p, Data: data, RequestId: "slow-" + p})
				}); err != nil {
					errs <- fmt.Errorf("create %s: %w", p, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The reader gets every event: the slow watches hold up nobody else.
	for got := 0; got < writes; {
		msg, err := reader.Recv()
		if err != nil {
			t.Fatalf("reading watch after %d of %d events: %v", got, writes, err)
		}
		got += len(msg.GetEvents())
	}
	// Every watch handler has now had every event published to it; give
	// them until the peak stops rising to push what they can.
	_, hwm := procMemKiB(t, pid)
	for stable := 0; stable < 10; {
		time.Sleep(200 * time.Millisecond)
		_, h := procMemKiB(t, pid)
		if h == hwm {
			stable++
		} else {
			stable, hwm = 0, h
		}
	}
	rss1, _ := procMemKiB(t, pid)

	const factor = 2
	history := int64(writes * (value + 256))
	boundKiB := (factor*(budget+watchers*2*(64<<10+batch)+history) + 64<<20) >> 10
	growth := hwm - rss0
	t.Logf("coordinator pid %d: VmRSS %d MiB before the writes, peak (VmHWM) %d MiB, VmRSS %d MiB after; growth to peak %d MiB, bound %d MiB",
		pid, rss0>>10, hwm>>10, rss1>>10, growth>>10, boundKiB>>10)
	if framework.RaceEnabled {
		// The race detector's shadow memory (several times the heap) makes
		// the figure meaningless: run without -race to check the bound.
		t.Logf("built with -race: not checking the bound")
		return
	}
	if growth > boundKiB {
		t.Errorf("%d never-reading watches on one connection grew the coordinator by %d MiB, over the bound of %d MiB", watchers, growth>>10, boundKiB>>10)
	}
}
