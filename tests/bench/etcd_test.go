package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdCluster is a cluster of real etcd processes (Debian etcd-server 3.4),
// started as /work/shared/peers/etcd-cluster.sh does: fsync on (the
// default), on 127.0.0.1, each member with its own data dir.
type etcdCluster struct {
	endpoints []string // client endpoint per member
	procs     []*proc
	leader    string // client endpoint of the leader
}

// etcdBinary returns the etcd binary, or skips tb when it is not installed.
func etcdBinary(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		tb.Skip("etcd is not installed (apt-get install -y etcd-server etcd-client); skipping the etcd comparison")
	}
	return p
}

// startEtcd starts an n-member etcd cluster: on the peers script's ports
// (client 23791.., peer 23801..) when they are all free, else on free ports.
func startEtcd(tb testing.TB, n int) *etcdCluster {
	tb.Helper()
	bin := etcdBinary(tb)
	base := tb.TempDir()
	return retryStart(tb, "etcd cluster", func(attempt int) (*etcdCluster, error) {
		var client, peer []int
		for i := 1; i <= n; i++ {
			client = append(client, 23790+i)
			peer = append(peer, 23800+i)
		}
		if attempt > 0 || !portsFree(append(append([]int{}, client...), peer...)...) {
			ps, err := freePorts(2 * n)
			if err != nil {
				return nil, err
			}
			client, peer = ps[:n], ps[n:]
		}
		c, err := launchEtcd(tb, bin, filepath.Join(base, fmt.Sprintf("try%d", attempt)), client, peer)
		if err != nil && c != nil {
			stopAll(c.procs, 5*time.Second)
		}
		return c, err
	})
}

func launchEtcd(tb testing.TB, bin, dir string, client, peer []int) (*etcdCluster, error) {
	n := len(client)
	var ic []string
	for i := range n {
		ic = append(ic, fmt.Sprintf("m%d=http://127.0.0.1:%d", i+1, peer[i]))
	}
	c := &etcdCluster{}
	for i := range n {
		name := fmt.Sprintf("m%d", i+1)
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return c, err
		}
		cu := fmt.Sprintf("http://127.0.0.1:%d", client[i])
		pu := fmt.Sprintf("http://127.0.0.1:%d", peer[i])
		p, err := startProc(tb, "etcd "+name, filepath.Join(dir, name+".log"), bin,
			"--name", name, "--data-dir", filepath.Join(d, "data"),
			"--listen-client-urls", cu, "--advertise-client-urls", cu,
			"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
			"--initial-cluster", strings.Join(ic, ","), "--initial-cluster-token", "bench",
			"--initial-cluster-state", "new",
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
		)
		if err != nil {
			return c, err
		}
		c.procs = append(c.procs, p)
		c.endpoints = append(c.endpoints, fmt.Sprintf("127.0.0.1:%d", client[i]))
	}
	tb.Cleanup(func() { stopAll(c.procs, 5*time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last error
	for {
		if err := describeExit(c.procs); err != nil {
			return c, err
		}
		leader, err := c.findLeader(ctx)
		if err == nil {
			c.leader = leader
			return c, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return c, fmt.Errorf("etcd not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// newEtcdClient returns a client of its own (its own gRPC connection) to the
// given endpoints, closed in tb's cleanup.
func newEtcdClient(tb testing.TB, endpoints ...string) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		tb.Fatalf("etcd client for %v: %v", endpoints, err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// findLeader asks every member for its status; all must be up and agree.
func (c *etcdCluster) findLeader(ctx context.Context) (string, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return "", err
	}
	defer cli.Close()
	var leaderID uint64
	leader := ""
	for _, ep := range c.endpoints {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			return "", fmt.Errorf("%s: %w", ep, err)
		}
		if st.Leader == 0 {
			return "", fmt.Errorf("%s: no leader", ep)
		}
		if leaderID != 0 && st.Leader != leaderID {
			return "", errors.New("members disagree on the leader")
		}
		leaderID = st.Leader
		if st.Header.MemberId == st.Leader {
			leader = ep
		}
	}
	if leader == "" {
		return "", errors.New("leader is not among the endpoints")
	}
	return leader, nil
}

func (c *etcdCluster) addrs(leaderOnly bool) []string {
	if leaderOnly {
		return []string{c.leader}
	}
	return c.endpoints
}
