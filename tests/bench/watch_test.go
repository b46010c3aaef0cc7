package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// fanoutWatchers is how many watchers the fan-out benchmarks open on one
// key, spread round-robin over the members (followers included), each on
// its own connection and stream.
const fanoutWatchers = 200

// fanoutWait bounds how long one write may take to reach every watcher.
const fanoutWait = 10 * time.Second

// fanout measures, for each write and each watcher, the time from just
// before the write call to the watcher receiving that version.
//
// Writes are sequential: the writer sends version v+1 only once every
// watcher has received v. Each sample is thus one change travelling to
// every watcher on an otherwise idle cluster (a config push), not queueing
// behind earlier writes; throughput under pipelined writes is what the CAS
// benchmarks measure.
//
// Watchers live across the benchmark's runs (b.N=1, then larger), so every
// watcher must see every version of the key exactly once and in order,
// from its creation to the end: any gap, duplicate, reordering, unexpected
// event or stream error fails the benchmark.
type fanout struct {
	watchers int
	member   []int // member index each watcher is served by
	epoch    time.Time
	last     []int64 // per watcher: last version received (its goroutine only)
	cur      atomic.Pointer[fanRun]
	closing  atomic.Bool

	errOnce sync.Once
	err     error
	failed  chan struct{}
}

// fanRun is one run of the benchmark: writes base+1 .. base+n.
type fanRun struct {
	base int64
	n    int
	sent []time.Duration   // per write: epoch offset just before the write call
	recv [][]time.Duration // per watcher, per write: epoch offset of receipt
	seen []atomic.Int32    // per write: watchers that received it
	done chan int          // write index, once every watcher received it
}

func newFanout(watchers int, created int64) *fanout {
	f := &fanout{
		watchers: watchers,
		member:   make([]int, watchers),
		epoch:    time.Now(),
		last:     make([]int64, watchers),
		failed:   make(chan struct{}),
	}
	for i := range f.last {
		f.last[i] = created
	}
	return f
}

func (f *fanout) now() time.Duration { return time.Since(f.epoch) }

func (f *fanout) fail(err error) {
	if f.closing.Load() {
		return
	}
	f.errOnce.Do(func() {
		f.err = err
		close(f.failed)
	})
}

// deliver records that watcher w received version v at epoch offset at.
// Only w's goroutine calls it for w.
func (f *fanout) deliver(w int, v int64, at time.Duration) {
	if v != f.last[w]+1 {
		f.fail(fmt.Errorf("watcher %d (member %d): received version %d after %d: want every version exactly once, in order",
			w, f.member[w]+1, v, f.last[w]))
		return
	}
	f.last[w] = v
	r := f.cur.Load()
	if r == nil || v <= r.base || v > r.base+int64(r.n) {
		f.fail(fmt.Errorf("watcher %d: received version %d, which no write of this run made", w, v))
		return
	}
	k := int(v - r.base - 1)
	r.recv[w][k] = at
	if r.seen[k].Add(1) == int32(f.watchers) {
		r.done <- k
	}
}

// run performs b.N sequential writes (write returns the key's new
// version) and reports the latency distribution.
func (f *fanout) run(b *testing.B, ctx context.Context, procs []*proc, base int64, write func(context.Context) (int64, error)) {
	select {
	case <-f.failed:
		b.Fatal(f.err)
	default:
	}
	n := b.N
	r := &fanRun{
		base: base,
		n:    n,
		sent: make([]time.Duration, n),
		recv: make([][]time.Duration, f.watchers),
		seen: make([]atomic.Int32, n),
		done: make(chan int, n),
	}
	for w := range r.recv {
		r.recv[w] = make([]time.Duration, n)
	}
	f.cur.Store(r)
	b.ResetTimer()
	meter := startCPUMeter(procs)
	for k := range n {
		wctx, cancel := context.WithTimeout(ctx, casOpTimeout)
		r.sent[k] = f.now()
		v, err := write(wctx)
		cancel()
		if err != nil {
			b.Fatalf("write %d: %v", k+1, err)
		}
		if want := base + int64(k) + 1; v != want {
			b.Fatalf("write %d made version %d, want %d", k+1, v, want)
		}
		select {
		case got := <-r.done:
			if got != k {
				b.Fatalf("write %d completed while waiting for %d", got, k)
			}
		case <-f.failed:
			b.Fatal(f.err)
		case <-time.After(fanoutWait):
			b.Fatalf("version %d: only %d of %d watchers received it within %v (missing: %s)",
				v, r.seen[k].Load(), f.watchers, fanoutWait, f.missing(k))
		}
	}
	b.StopTimer()
	meter.report(b, n)
	// Nothing more may arrive: no duplicates, no stray events.
	time.Sleep(100 * time.Millisecond)
	select {
	case <-f.failed:
		b.Fatal(f.err)
	default:
	}
	for w := range f.watchers {
		if want := base + int64(n); f.last[w] != want {
			b.Fatalf("watcher %d ended at version %d, want %d", w, f.last[w], want)
		}
	}

	var all []time.Duration
	var byMember = map[int][]time.Duration{}
	for w := range f.watchers {
		for k := range n {
			d := r.recv[w][k] - r.sent[k]
			all = append(all, d)
			byMember[f.member[w]] = append(byMember[f.member[w]], d)
		}
	}
	s := summarize(all)
	b.ReportMetric(ms(s.p50), "p50-ms")
	b.ReportMetric(ms(s.p99), "p99-ms")
	b.ReportMetric(ms(s.max), "max-ms")
	if len(all) >= 1000 {
		var parts []string
		for _, m := range slices.Sorted(maps.Keys(byMember)) {
			sm := summarize(byMember[m])
			parts = append(parts, fmt.Sprintf("member %d (%d watchers): p50 %.2f ms p99 %.2f ms max %.2f ms",
				m+1, len(byMember[m])/n, ms(sm.p50), ms(sm.p99), ms(sm.max)))
		}
		b.Logf("%d writes x %d watchers; by serving member: %s", n, f.watchers, strings.Join(parts, "; "))
	}
}

// missing lists (some of) the watchers that have not received write k.
func (f *fanout) missing(k int) string {
	r := f.cur.Load()
	var ws []string
	for w := range f.watchers {
		if r.recv[w][k] == 0 && len(ws) < 10 {
			ws = append(ws, fmt.Sprintf("%d@member%d", w, f.member[w]+1))
		}
	}
	return strings.Join(ws, ", ")
}

// ---- Colony ----

// BenchmarkWatchFanout200: 200 PERSISTENT watchers on one key over a
// 3-node Colony cluster, each on its own connection and stream; a writer on
// the leader sets the key b.N times, sequentially (see fanout).
func BenchmarkWatchFanout200(b *testing.B) { benchFanout(b, false) }

// BenchmarkWatchFanout200TLS is BenchmarkWatchFanout200 with mutual TLS on
// every connection, the watchers', the writer's and raft's.
func BenchmarkWatchFanout200TLS(b *testing.B) { benchFanout(b, true) }

func benchFanout(b *testing.B, secure bool) {
	c := startColonyWith(b, 3, secure)
	ctx := context.Background()
	tree := colonyv1.NewTreeClient(c.dial(b, c.leader))
	key := "/bench-watch-" + randomID()
	cr, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: key, Data: payload})
	if err != nil {
		b.Fatalf("create %s: %v", key, err)
	}
	f := newFanout(fanoutWatchers, cr.Stat.Version)
	wctx, cancel := context.WithCancel(ctx)
	b.Cleanup(func() { f.closing.Store(true); cancel() })
	var wg sync.WaitGroup
	errs := make([]error, fanoutWatchers)
	for w := range fanoutWatchers {
		f.member[w] = w % len(c.grpc)
		cc := c.dial(b, c.grpc[f.member[w]])
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = startColonyWatcher(wctx, f, w, colonyv1.NewWatchClient(cc), key, cr.Stat.Czxid)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	rid := "bench-watch-" + randomID()
	version, seq := cr.Stat.Version, 0
	b.Run("sequential", func(b *testing.B) {
		f.run(b, ctx, c.procs, version, func(ctx context.Context) (int64, error) {
			seq++
			r, err := tree.Set(ctx, &colonyv1.SetRequest{Path: key, Data: payload, RequestId: fmt.Sprintf("%s-%d", rid, seq)})
			if err != nil {
				return 0, err
			}
			version = r.Stat.Version
			return version, nil
		})
	})
}

// startColonyWatcher opens watcher w's stream, waits for "created" and
// then delivers its events in the background.
func startColonyWatcher(ctx context.Context, f *fanout, w int, wc colonyv1.WatchClient, key string, after uint64) error {
	stream, err := wc.Watch(ctx, &colonyv1.WatchRequest{
		Path: key, Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, AfterZxid: proto.Uint64(after),
	})
	if err != nil {
		return fmt.Errorf("watcher %d: %w", w, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("watcher %d: %w", w, err)
	}
	if !first.Created {
		return fmt.Errorf("watcher %d: first message is not created: %v", w, first)
	}
	go func() {
		for {
			resp, err := stream.Recv()
			at := f.now()
			if err != nil {
				f.fail(fmt.Errorf("watcher %d: stream ended: %w", w, err))
				return
			}
			if resp.Resync {
				f.fail(fmt.Errorf("watcher %d: resync: %s", w, resp.ResyncReason))
				return
			}
			for _, ev := range resp.Events {
				if ev.Type != colonyv1.EventType_EVENT_TYPE_DATA_CHANGED || ev.Path != key {
					f.fail(fmt.Errorf("watcher %d: unexpected event %v", w, ev))
					return
				}
				f.deliver(w, ev.Stat.Version, at)
			}
		}
	}()
	return nil
}

// ---- etcd ----

// BenchmarkWatchFanout200Etcd: the same against a real 3-member etcd 3.4:
// 200 watchers, each its own client (connection) and so its own watch
// stream, spread over the members; the writer Puts through the leader.
func BenchmarkWatchFanout200Etcd(b *testing.B) {
	c := startEtcd(b, 3)
	ctx := context.Background()
	cli := newEtcdClient(b, c.leader)
	key := "/bench-watch-" + randomID()
	pr, err := cli.Put(ctx, key, string(payload))
	if err != nil {
		b.Fatal(err)
	}
	createRev := pr.Header.Revision
	f := newFanout(fanoutWatchers, 1) // a key's version is 1 after its first put
	wctx, cancel := context.WithCancel(ctx)
	b.Cleanup(func() { f.closing.Store(true); cancel() })
	var wg sync.WaitGroup
	errs := make([]error, fanoutWatchers)
	for w := range fanoutWatchers {
		f.member[w] = w % len(c.endpoints)
		wcli := newEtcdClient(b, c.endpoints[f.member[w]])
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = startEtcdWatcher(wctx, f, w, wcli, key, createRev)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	version := int64(1)
	b.Run("sequential", func(b *testing.B) {
		f.run(b, ctx, c.procs, version, func(ctx context.Context) (int64, error) {
			r, err := cli.Put(ctx, key, string(payload), clientv3.WithPrevKV())
			if err != nil {
				return 0, err
			}
			if r.PrevKv == nil {
				return 0, errors.New("put returned no previous value")
			}
			version = r.PrevKv.Version + 1
			return version, nil
		})
	})
}

func startEtcdWatcher(ctx context.Context, f *fanout, w int, cli *clientv3.Client, key string, createRev int64) error {
	wch := cli.Watch(ctx, key, clientv3.WithRev(createRev+1), clientv3.WithCreatedNotify())
	first, ok := <-wch
	if !ok || first.Err() != nil || !first.Created {
		return fmt.Errorf("watcher %d: no created notification (%v)", w, first.Err())
	}
	go func() {
		for wr := range wch {
			at := f.now()
			if err := wr.Err(); err != nil {
				f.fail(fmt.Errorf("watcher %d: %w", w, err))
				return
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypePut || string(ev.Kv.Key) != key {
					f.fail(fmt.Errorf("watcher %d: unexpected event %v", w, ev))
					return
				}
				f.deliver(w, ev.Kv.Version, at)
			}
		}
		f.fail(fmt.Errorf("watcher %d: watch channel closed", w))
	}()
	return nil
}
