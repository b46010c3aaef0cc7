package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// casClients is how many concurrent clients the CAS benchmarks run; each
// owns one key and one connection.
const casClients = 16

// casOpTimeout bounds one write: a stuck cluster fails the benchmark
// instead of hanging it.
const casOpTimeout = 10 * time.Second

// payload is every write's value: 64 bytes, a small config value.
var payload = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")

// casTarget is one client's compare-and-set loop on its own key.
type casTarget interface {
	// version reads the key's current version (linearizably).
	version(ctx context.Context) (int64, error)
	// cas writes payload if the key's version is expect and returns the
	// new version.
	cas(ctx context.Context, expect int64) (int64, error)
}

// runCAS runs b.N compare-and-set writes in total, spread evenly over the
// targets (one goroutine each, each its own key), and reports writes/s and
// the p50/p99 of the write latency.
func runCAS(b *testing.B, procs []*proc, targets []casTarget) {
	ctx := context.Background()
	n := len(targets)
	vers := make([]int64, n)
	for i, t := range targets {
		v, err := t.version(ctx)
		if err != nil {
			b.Fatalf("client %d: reading its key: %v", i, err)
		}
		vers[i] = v
	}
	lat := make([][]time.Duration, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, t := range targets {
		share := b.N / n
		if i < b.N%n {
			share++
		}
		lat[i] = make([]time.Duration, 0, share)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v := vers[i]
			for range share {
				cctx, cancel := context.WithTimeout(ctx, casOpTimeout)
				t0 := time.Now()
				nv, err := t.cas(cctx, v)
				d := time.Since(t0)
				cancel()
				if err != nil {
					errs[i] = fmt.Errorf("client %d: cas at version %d: %w", i, v, err)
					return
				}
				if nv != v+1 {
					errs[i] = fmt.Errorf("client %d: cas at version %d gave version %d, want %d", i, v, nv, v+1)
					return
				}
				v = nv
				lat[i] = append(lat[i], d)
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
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "writes/s")
	b.ReportMetric(ms(s.p50), "p50-ms")
	b.ReportMetric(ms(s.p99), "p99-ms")
	meter.report(b, len(all))
}

// viaModes are the sub-benchmarks: all clients on the leader, or spread
// round-robin over every member.
var viaModes = []struct {
	name       string
	leaderOnly bool
}{{"via=leader", true}, {"via=all", false}}

// viaModesFor is viaModes for a cluster of members: one member has only
// the leader to go through.
func viaModesFor(members int) []struct {
	name       string
	leaderOnly bool
} {
	if members == 1 {
		return viaModes[:1]
	}
	return viaModes
}

func randomID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ---- Colony ----

type colonyCAS struct {
	tree colonyv1.TreeClient
	path string
	rid  string // request id prefix, unique per client
	seq  int
}

func (c *colonyCAS) version(ctx context.Context) (int64, error) {
	r, err := c.tree.Get(ctx, &colonyv1.GetRequest{Path: c.path})
	if err != nil {
		return 0, err
	}
	return r.Stat.Version, nil
}

func (c *colonyCAS) cas(ctx context.Context, expect int64) (int64, error) {
	c.seq++
	r, err := c.tree.Set(ctx, &colonyv1.SetRequest{
		Path:            c.path,
		Data:            payload,
		ExpectedVersion: proto.Int64(expect),
		// A real client sends a request id so its retries apply once.
		RequestId: fmt.Sprintf("%s-%d", c.rid, c.seq),
	})
	if err != nil {
		return 0, err
	}
	return r.Stat.Version, nil
}

// BenchmarkCASWrite3Node: 16 clients, each compare-and-set on its own key
// through its own gRPC connection, against a 3-node Colony cluster (fsync
// on, plaintext like the etcd and ZooKeeper clusters). b.N is the total
// number of writes.
func BenchmarkCASWrite3Node(b *testing.B) { benchCAS(b, 3, false) }

// BenchmarkCASWrite3NodeTLS is BenchmarkCASWrite3Node with mutual TLS on
// every connection, clients' and raft's: the cost of running secure.
func BenchmarkCASWrite3NodeTLS(b *testing.B) { benchCAS(b, 3, true) }

// BenchmarkCASWrite1Node is BenchmarkCASWrite3Node against one member: the
// write path with no replication, where CPU per write shows most.
func BenchmarkCASWrite1Node(b *testing.B) { benchCAS(b, 1, false) }

func benchCAS(b *testing.B, members int, secure bool) {
	c := startColonyWith(b, members, secure)
	run := randomID()
	ctx := context.Background()
	tree := colonyv1.NewTreeClient(c.dial(b, c.leader))
	root := "/bench-cas-" + run
	if _, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: root}); err != nil {
		b.Fatalf("create %s: %v", root, err)
	}
	for i := range casClients {
		p := fmt.Sprintf("%s/k%02d", root, i)
		if _, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: p, Data: payload}); err != nil {
			b.Fatalf("create %s: %v", p, err)
		}
	}
	for _, mode := range viaModesFor(members) {
		b.Run(mode.name, func(b *testing.B) {
			if err := c.refreshLeader(b, ctx); err != nil {
				b.Fatal(err)
			}
			addrs := c.addrs(mode.leaderOnly)
			targets := make([]casTarget, casClients)
			runID := randomID() // request ids must not repeat across runs
			for i := range targets {
				targets[i] = &colonyCAS{
					tree: colonyv1.NewTreeClient(c.dial(b, addrs[i%len(addrs)])),
					path: fmt.Sprintf("%s/k%02d", root, i),
					rid:  fmt.Sprintf("bench-%s-%d", runID, i),
				}
			}
			runCAS(b, c.procs, targets)
		})
	}
}

// refreshLeader re-reads the leader's address (an election may have moved it).
func (c *colonyCluster) refreshLeader(tb testing.TB, ctx context.Context) error {
	cc := c.dial(tb, c.grpc[0])
	defer cc.Close()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := colonyv1.NewClusterClient(cc).Status(sctx, &colonyv1.StatusRequest{})
	if err != nil {
		return fmt.Errorf("colony status: %w", err)
	}
	if st.LeaderGrpcAddress == "" {
		return errors.New("colony: no leader")
	}
	c.leader = st.LeaderGrpcAddress
	return nil
}

// ---- etcd ----

type etcdCAS struct {
	cli *clientv3.Client
	key string
}

func (e *etcdCAS) version(ctx context.Context) (int64, error) {
	r, err := e.cli.Get(ctx, e.key)
	if err != nil {
		return 0, err
	}
	if len(r.Kvs) != 1 {
		return 0, fmt.Errorf("%s: not found", e.key)
	}
	return r.Kvs[0].Version, nil
}

func (e *etcdCAS) cas(ctx context.Context, expect int64) (int64, error) {
	r, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(e.key), "=", expect)).
		Then(clientv3.OpPut(e.key, string(payload))).
		Commit()
	if err != nil {
		return 0, err
	}
	if !r.Succeeded {
		return 0, fmt.Errorf("%s: version is not %d", e.key, expect)
	}
	// The key's version counts its puts since creation: ours made it expect+1.
	return expect + 1, nil
}

// BenchmarkCASWriteEtcd3Node: the same workload as BenchmarkCASWrite3Node
// against a real 3-member etcd 3.4 (fsync on), with
// Txn(If(Version(key) == v)).Then(Put).
func BenchmarkCASWriteEtcd3Node(b *testing.B) { benchCASEtcd(b, 3) }

// BenchmarkCASWriteEtcd1Node: the same against one etcd member.
func BenchmarkCASWriteEtcd1Node(b *testing.B) { benchCASEtcd(b, 1) }

func benchCASEtcd(b *testing.B, members int) {
	c := startEtcd(b, members)
	ctx := context.Background()
	cli := newEtcdClient(b, c.leader)
	root := "/bench-cas-" + randomID()
	for i := range casClients {
		if _, err := cli.Put(ctx, fmt.Sprintf("%s/k%02d", root, i), string(payload)); err != nil {
			b.Fatal(err)
		}
	}
	for _, mode := range viaModesFor(members) {
		b.Run(mode.name, func(b *testing.B) {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			leader, err := c.findLeader(lctx)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			c.leader = leader
			addrs := c.addrs(mode.leaderOnly)
			targets := make([]casTarget, casClients)
			for i := range targets {
				targets[i] = &etcdCAS{
					cli: newEtcdClient(b, addrs[i%len(addrs)]),
					key: fmt.Sprintf("%s/k%02d", root, i),
				}
			}
			runCAS(b, c.procs, targets)
		})
	}
}

// ---- ZooKeeper ----

type zkCAS struct {
	conn *zk.Conn
	path string
}

func (z *zkCAS) version(ctx context.Context) (int64, error) {
	// sync first: a ZooKeeper read is served from the member's own state.
	if _, err := z.conn.Sync(z.path); err != nil {
		return 0, err
	}
	_, st, err := z.conn.Get(z.path)
	if err != nil {
		return 0, err
	}
	return int64(st.Version), nil
}

func (z *zkCAS) cas(ctx context.Context, expect int64) (int64, error) {
	st, err := z.conn.Set(z.path, payload, int32(expect))
	if err != nil {
		return 0, err
	}
	return int64(st.Version), nil
}

// BenchmarkCASWriteZooKeeper3Node: the same workload against a real
// 3-member ZooKeeper 3.8 ensemble (forceSync on), with Set(path, data,
// version).
func BenchmarkCASWriteZooKeeper3Node(b *testing.B) { benchCASZK(b, 3) }

// BenchmarkCASWriteZooKeeper1Node: the same against one ZooKeeper server
// (standalone mode).
func BenchmarkCASWriteZooKeeper1Node(b *testing.B) { benchCASZK(b, 1) }

func benchCASZK(b *testing.B, members int) {
	c := startZK(b, members)
	conn := newZKConn(b, c.leader)
	root := "/bench-cas-" + randomID()
	if _, err := conn.Create(root, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		b.Fatalf("create %s: %v", root, err)
	}
	for i := range casClients {
		p := fmt.Sprintf("%s/k%02d", root, i)
		if _, err := conn.Create(p, payload, 0, zk.WorldACL(zk.PermAll)); err != nil {
			b.Fatalf("create %s: %v", p, err)
		}
	}
	for _, mode := range viaModesFor(members) {
		b.Run(mode.name, func(b *testing.B) {
			addrs := c.addrs(mode.leaderOnly)
			targets := make([]casTarget, casClients)
			for i := range targets {
				targets[i] = &zkCAS{conn: newZKConn(b, addrs[i%len(addrs)]), path: fmt.Sprintf("%s/k%02d", root, i)}
			}
			runCAS(b, c.procs, targets)
		})
	}
}
