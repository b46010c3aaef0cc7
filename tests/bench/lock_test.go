package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/recipe"
)

// Lock handoff benchmarks (issue 5): lockContenders contenders, each with
// its own client (connection) and session, loop Lock, a tiny critical
// section, Unlock on one lock. Every Lock but the first waits behind the
// others, so the rate of grants is the rate of handoffs: one holder's
// release reaching the next waiter and that waiter learning it holds.
//
//	go test -run '^$' -bench 'BenchmarkLockHandoff' -benchtime 2000x -count 3 ./tests/bench/

// lockContenders is how many contenders compete for the lock.
const lockContenders = 8

// lockOpTimeout bounds one Lock (which waits behind up to
// lockContenders-1 holders) and one Unlock: a stuck cluster fails the
// benchmark instead of hanging it.
const lockOpTimeout = 30 * time.Second

// lockSessionTTL is every contender's session TTL (Colony session, etcd
// lease); keep-alives go every TTL/3 in both clients.
const lockSessionTTL = 10 * time.Second

// lockContender is one contender of a lock: its own client and session.
type lockContender interface {
	// lock blocks until this contender holds the lock and returns its
	// fencing token (0 if the system has none to offer).
	lock(ctx context.Context) (uint64, error)
	unlock(ctx context.Context) error
}

// runLockHandoff runs b.N acquisitions in total, split evenly over the
// contenders (one goroutine each). Each loop: Lock, a critical section that
// checks mutual exclusion (and that fencing tokens only grow), Unlock.
// Reports handoffs/s (acquisitions over wall time) and the p50/p99 of the
// acquire latency, from the Lock call to its return with the grant.
func runLockHandoff(b *testing.B, procs []*proc, cs []lockContender) {
	n := len(cs)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var (
		holders   atomic.Int32
		lastToken atomic.Uint64
		errs      = make([]error, n)
		lat       = make([][]time.Duration, n)
		start     = make(chan struct{})
		wg        sync.WaitGroup
	)
	fail := func(i int, err error) {
		errs[i] = fmt.Errorf("contender %d: %w", i, err)
		cancel(errs[i]) // the others stop waiting for a lock that may never come
	}
	for i, c := range cs {
		share := b.N / n
		if i < b.N%n {
			share++
		}
		lat[i] = make([]time.Duration, 0, share)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for k := range share {
				lctx, lcancel := context.WithTimeout(ctx, lockOpTimeout)
				t0 := time.Now()
				tok, err := c.lock(lctx)
				d := time.Since(t0)
				lcancel()
				if err != nil {
					if ctx.Err() == nil {
						fail(i, fmt.Errorf("lock %d: %w", k, err))
					}
					return
				}
				lat[i] = append(lat[i], d)

				// Critical section: nobody else may be in it, and a grant's
				// token must exceed every earlier grant's.
				var cerr error
				if h := holders.Add(1); h != 1 {
					cerr = fmt.Errorf("lock %d: %d holders at once: mutual exclusion violated", k, h)
				} else if tok != 0 {
					if prev := lastToken.Load(); tok <= prev {
						cerr = fmt.Errorf("lock %d: fencing token %d after %d: tokens must increase", k, tok, prev)
					}
					lastToken.Store(tok)
				}
				holders.Add(-1)

				uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), lockOpTimeout)
				err = c.unlock(uctx)
				ucancel()
				if cerr != nil || err != nil {
					if err != nil {
						err = fmt.Errorf("unlock %d: %w", k, err)
					}
					fail(i, errors.Join(cerr, err))
					return
				}
			}
		}()
	}
	b.ResetTimer()
	meter := startCPUMeter(procs)
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	s := summarize(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "handoffs/s")
	b.ReportMetric(ms(s.p50), "acquire-p50-ms")
	b.ReportMetric(ms(s.p99), "acquire-p99-ms")
	// The CPU meter's own report says "/write"; here the unit is a handoff.
	var srv time.Duration
	for _, p := range meter.procs {
		srv += p.cpuTime()
	}
	srv -= meter.srv0
	self := selfCPU() - meter.self0
	if len(all) > 0 {
		b.ReportMetric(float64(srv.Microseconds())/float64(len(all)), "srv-cpu-us/handoff")
		b.ReportMetric(float64(self.Microseconds())/float64(len(all)), "cli-cpu-us/handoff")
	}
}

// ---- Colony ----

// colonyLocker is a recipe.Mutex on a client and session of its own.
type colonyLocker struct {
	m *recipe.Mutex
}

func (c *colonyLocker) lock(ctx context.Context) (uint64, error) {
	g, err := c.m.Lock(ctx)
	if err != nil {
		return 0, err
	}
	return uint64(g.Token()), nil
}

func (c *colonyLocker) unlock(ctx context.Context) error { return c.m.Unlock(ctx) }

// newColonyLocker makes a client to addr alone (as the CAS benchmark's
// connections are), a session on it and a Mutex for name; the session and
// the client are closed in b's cleanup.
func newColonyLocker(b *testing.B, addr, name string, i int) *colonyLocker {
	b.Helper()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		b.Fatalf("client for %s: %v", addr, err)
	}
	b.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenSession(ctx, lockSessionTTL, fmt.Sprintf("bench-lock/%d", i))
	if err != nil {
		b.Fatalf("session on %s: %v", addr, err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	m, err := recipe.NewMutex(c, s, name)
	if err != nil {
		b.Fatal(err)
	}
	return &colonyLocker{m: m}
}

// BenchmarkLockHandoff3Node: 8 contenders, each with its own client and
// session, loop Lock/Unlock on one recipe.Mutex against a 3-node Colony
// cluster (fsync on). b.N is the total number of acquisitions.
// via=leader: every client on the leader; via=all: round-robin over the 3
// members.
func BenchmarkLockHandoff3Node(b *testing.B) {
	c := startColony(b, 3)
	ctx := context.Background()
	for _, mode := range viaModes {
		b.Run(mode.name, func(b *testing.B) {
			if err := c.refreshLeader(b, ctx); err != nil {
				b.Fatal(err)
			}
			addrs := c.addrs(mode.leaderOnly)
			name := "bench-" + randomID() // a fresh lock per run
			cs := make([]lockContender, lockContenders)
			for i := range cs {
				cs[i] = newColonyLocker(b, addrs[i%len(addrs)], name, i)
			}
			runLockHandoff(b, c.procs, cs)
		})
	}
}

// ---- etcd ----

// etcdLocker is a concurrency.Mutex on a client and session (lease) of its
// own. etcd's Mutex offers no token of its own to check (its key's create
// revision is unexported), so lock returns 0.
type etcdLocker struct {
	m *concurrency.Mutex
}

func (e *etcdLocker) lock(ctx context.Context) (uint64, error) { return 0, e.m.Lock(ctx) }

func (e *etcdLocker) unlock(ctx context.Context) error { return e.m.Unlock(ctx) }

func newEtcdLocker(b *testing.B, cli *clientv3.Client, pfx string) *etcdLocker {
	b.Helper()
	// No concurrency.WithContext: its context would bound the lease's
	// keep-alives too, not just the grant. The client's own context (the
	// default) lives until the client is closed.
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(lockSessionTTL/time.Second)))
	if err != nil {
		b.Fatalf("etcd session: %v", err)
	}
	b.Cleanup(func() { s.Close() }) // revokes the lease, before the client closes
	return &etcdLocker{m: concurrency.NewMutex(s, pfx)}
}

// BenchmarkLockHandoffEtcd3Node: the same workload as
// BenchmarkLockHandoff3Node against a real 3-member etcd 3.4 (fsync on),
// with go.etcd.io/etcd/client/v3/concurrency's Mutex, one client
// (connection) and session per contender.
func BenchmarkLockHandoffEtcd3Node(b *testing.B) {
	c := startEtcd(b, 3)
	ctx := context.Background()
	for _, mode := range viaModes {
		b.Run(mode.name, func(b *testing.B) {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			leader, err := c.findLeader(lctx)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			c.leader = leader
			addrs := c.addrs(mode.leaderOnly)
			pfx := "/bench-lock-" + randomID() // a fresh lock per run
			cs := make([]lockContender, lockContenders)
			for i := range cs {
				cs[i] = newEtcdLocker(b, newEtcdClient(b, addrs[i%len(addrs)]), pfx)
			}
			runLockHandoff(b, c.procs, cs)
		})
	}
}
