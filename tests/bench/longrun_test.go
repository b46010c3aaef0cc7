package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Long-run settings, from the environment so that a long run needs no code
// change: COLONY_LONGRUN_SEGMENT is the writes per reported segment
// (default 100,000), COLONY_LONGRUN_MAX the wall-time bound of the whole run
// (default 20m; the run stops early, failing, if it is reached).
const (
	defaultLongRunSegment = 100_000
	defaultLongRunMax     = 20 * time.Minute
)

// BenchmarkCASLongRun1Node: the CAS workload of BenchmarkCASWrite3Node (16
// clients, each compare-and-set on its own key with a request id per write)
// against one fresh Colony member for b.N writes in total, reporting the
// throughput of every segment of COLONY_LONGRUN_SEGMENT writes in order, so
// that a decline over the run shows as falling segments. b.N is the total
// number of writes, e.g.
//
//	go test -run XXX -bench CASLongRun1Node -benchtime 1000000x -timeout 30m ./tests/bench/
//
// Metrics: writes/s over the whole run, first-seg and last-seg writes/s
// (the first and last full segments) and last/first, their ratio; the log
// has every segment with its p50/p99 and the data dir's raft.db and
// snapshot sizes at the end.
func BenchmarkCASLongRun1Node(b *testing.B) {
	segment := envInt(b, "COLONY_LONGRUN_SEGMENT", defaultLongRunSegment)
	maxWall := defaultLongRunMax
	if v := os.Getenv("COLONY_LONGRUN_MAX"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("COLONY_LONGRUN_MAX: %v", err)
		}
		maxWall = d
	}

	c := startColony(b, 1)
	ctx := context.Background()
	root := "/bench-longrun-" + randomID()
	targets := createCASKeys(b, c, root)

	rec := newSegmentRecorder(b.N, segment, func() time.Duration {
		var t time.Duration
		for _, p := range c.procs {
			t += p.cpuTime()
		}
		return t
	})
	runCtx, cancel := context.WithTimeout(ctx, maxWall)
	defer cancel()
	vers := make([]int64, len(targets))
	for i, t := range targets {
		v, err := t.version(ctx)
		if err != nil {
			b.Fatalf("client %d: reading its key: %v", i, err)
		}
		vers[i] = v
	}
	var next atomic.Int64 // writes handed out so far
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	b.ResetTimer()
	meter := startCPUMeter(c.procs)
	rec.start()
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := vers[i]
			for next.Add(1) <= int64(b.N) {
				if runCtx.Err() != nil {
					errs[i] = fmt.Errorf("client %d: run exceeded COLONY_LONGRUN_MAX=%v after %d writes", i, maxWall, rec.done())
					return
				}
				cctx, cancel := context.WithTimeout(runCtx, casOpTimeout)
				t0 := time.Now()
				nv, err := t.cas(cctx, v)
				d := time.Since(t0)
				cancel()
				if err != nil && runCtx.Err() != nil {
					errs[i] = fmt.Errorf("client %d: run exceeded COLONY_LONGRUN_MAX=%v after %d writes", i, maxWall, rec.done())
					return
				}
				if err != nil {
					errs[i] = fmt.Errorf("client %d: cas at version %d: %w", i, v, err)
					return
				}
				if nv != v+1 {
					errs[i] = fmt.Errorf("client %d: cas at version %d gave version %d, want %d", i, v, nv, v+1)
					return
				}
				v = nv
				rec.add(d)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	segs := rec.finish()
	// One log call: a benchmark's log is cut after a few lines without -v.
	var out strings.Builder
	dataDir := strings.TrimSuffix(c.procs[0].logPath, ".log") + "/data"
	fmt.Fprintf(&out, "data dir %s: raft.db %s, snapshots %s", dataDir, sizeOf(filepath.Join(dataDir, "raft.db")), sizeOf(filepath.Join(dataDir, "snapshots")))
	for _, s := range segs {
		fmt.Fprintf(&out, "\nwrites %8d-%8d: %7.0f writes/s  p50 %6.2f ms  p99 %6.2f ms  server %4.0f us CPU/write",
			s.from, s.to, s.rate, ms(s.lat.p50), ms(s.lat.p99), float64(s.srvCPU.Microseconds())/float64(s.to-s.from))
	}
	b.Log(out.String())
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rec.done())/rec.elapsed().Seconds(), "writes/s")
	if full := fullSegments(segs, segment); len(full) > 0 {
		first, last := full[0].rate, full[len(full)-1].rate
		b.ReportMetric(first, "first-seg-writes/s")
		b.ReportMetric(last, "last-seg-writes/s")
		b.ReportMetric(last/first, "last/first")
	}
	meter.report(b, rec.done())
}

// createCASKeys creates root and one key per CAS client under it, and
// returns the clients, each on its own connection to the leader.
func createCASKeys(b *testing.B, c *colonyCluster, root string) []casTarget {
	ctx := context.Background()
	tree := colonyv1.NewTreeClient(c.dial(b, c.leader))
	if _, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: root}); err != nil {
		b.Fatalf("create %s: %v", root, err)
	}
	runID := randomID()
	targets := make([]casTarget, casClients)
	for i := range targets {
		p := fmt.Sprintf("%s/k%02d", root, i)
		if _, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: p, Data: payload}); err != nil {
			b.Fatalf("create %s: %v", p, err)
		}
		targets[i] = &colonyCAS{
			tree: colonyv1.NewTreeClient(c.dial(b, c.leader)),
			path: p,
			rid:  fmt.Sprintf("bench-%s-%d", runID, i),
		}
	}
	return targets
}

// segment is one stretch of consecutive completed writes.
type segment struct {
	from, to int // completed-write counts at its start and end
	rate     float64
	lat      latencySummary
	srvCPU   time.Duration // the servers' CPU time over the segment
}

// segmentRecorder cuts a run's completed writes into segments of a fixed
// count and keeps each one's rate, latencies and server CPU. Its memory is
// bounded by one segment's latencies. Server CPU per write does not depend
// on what else the machine runs, as the rate does: a decline that is the
// server's own shows in both.
type segmentRecorder struct {
	size int
	cpu  func() time.Duration // the servers' CPU time so far

	mu    sync.Mutex
	t0    time.Time
	segT0 time.Time
	cpu0  time.Duration
	n     int
	lat   []time.Duration
	segs  []segment
	end   time.Time
}

func newSegmentRecorder(total, size int, cpu func() time.Duration) *segmentRecorder {
	return &segmentRecorder{size: size, cpu: cpu, lat: make([]time.Duration, 0, min(total, size))}
}

func (r *segmentRecorder) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t0 = time.Now()
	r.segT0 = r.t0
	r.cpu0 = r.cpu()
}

// add records one completed write and closes the segment it fills.
func (r *segmentRecorder) add(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	r.lat = append(r.lat, d)
	if len(r.lat) == r.size {
		r.cut(time.Now())
	}
}

func (r *segmentRecorder) cut(now time.Time) {
	n := len(r.lat)
	cpu := r.cpu()
	r.segs = append(r.segs, segment{
		from: r.n - n, to: r.n,
		rate:   float64(n) / now.Sub(r.segT0).Seconds(),
		lat:    summarize(r.lat),
		srvCPU: cpu - r.cpu0,
	})
	r.lat = r.lat[:0]
	r.segT0 = now
	r.cpu0 = cpu
}

func (r *segmentRecorder) done() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// finish closes the last, partial segment and returns all of them.
func (r *segmentRecorder) finish() []segment {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.end = time.Now()
	if len(r.lat) > 0 {
		r.cut(r.end)
	}
	return r.segs
}

func (r *segmentRecorder) elapsed() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.end.Sub(r.t0)
}

// fullSegments drops a trailing partial segment.
func fullSegments(segs []segment, size int) []segment {
	if n := len(segs); n > 0 && segs[n-1].to-segs[n-1].from < size {
		return segs[:n-1]
	}
	return segs
}

func envInt(b testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// sizeOf is the total size of the file or directory tree at path.
func sizeOf(path string) string {
	var total int64
	err := filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%.1f MB", float64(total)/1e6)
}
