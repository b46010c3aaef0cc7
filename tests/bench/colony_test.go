package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/framework"
)

// colonyCluster is a cluster of `colony coordinator` processes on
// 127.0.0.1, each with its own data dir, started with --bootstrap --peers
// and the server's defaults (fsync on).
type colonyCluster struct {
	// pki issued the nodes' certificates and the benchmark's admin
	// certificate; nil for a plaintext cluster (--insecure).
	pki    *framework.PKI
	ids    []string
	grpc   []string // gRPC address per member
	procs  []*proc
	leader string // gRPC address of the leader when the cluster became ready
}

// startColony starts an n-member cluster in plaintext (--insecure, like
// the etcd and ZooKeeper clusters the benchmarks compare it with) and
// waits until every member knows the leader and its gRPC address.
// Everything stops and the data is removed in tb's cleanup.
func startColony(tb testing.TB, n int) *colonyCluster {
	tb.Helper()
	return startColonyWith(tb, n, false)
}

// startColonyWith is startColony, with mutual TLS everywhere when secure:
// a CA and node certificates in the cluster's temporary directory
// (--certs-dir), and an admin certificate on every benchmark connection.
func startColonyWith(tb testing.TB, n int, secure bool) *colonyCluster {
	tb.Helper()
	bin := colonyBinary(tb)
	base := tb.TempDir()
	var pki *framework.PKI
	if secure {
		var err error
		if pki, err = framework.NewPKI(filepath.Join(base, "tls")); err != nil {
			tb.Fatal(err)
		}
		for i := range n {
			if _, err := pki.Issue(trust.RoleNode, fmt.Sprintf("n%d", i+1)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return retryStart(tb, "colony cluster", func(attempt int) (*colonyCluster, error) {
		c, err := launchColony(tb, bin, filepath.Join(base, fmt.Sprintf("try%d", attempt)), n, pki)
		if err != nil && c != nil {
			stopAll(c.procs, 5*time.Second)
		}
		return c, err
	})
}

func launchColony(tb testing.TB, bin, dir string, n int, pki *framework.PKI) (*colonyCluster, error) {
	ports, err := freePorts(3 * n)
	if err != nil {
		return nil, err
	}
	c := &colonyCluster{pki: pki}
	var peers []string
	raft := make([]string, n)
	for i := range n {
		c.ids = append(c.ids, fmt.Sprintf("n%d", i+1))
		c.grpc = append(c.grpc, fmt.Sprintf("127.0.0.1:%d", ports[2*i]))
		raft[i] = fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])
		peers = append(peers, c.ids[i]+"="+raft[i])
	}
	for i := range n {
		d := filepath.Join(dir, c.ids[i])
		if err := os.MkdirAll(d, 0o755); err != nil {
			return c, err
		}
		args := []string{
			"coordinator",
			"--id", c.ids[i],
			"--data-dir", filepath.Join(d, "data"),
			"--grpc-addr", c.grpc[i],
			"--raft-addr", raft[i],
			"--bootstrap", "--peers", strings.Join(peers, ","),
			"--log-level", "warn",
		}
		args = append(args, pki.ServerArgs()...)
		// COLONY_BENCH_FLAGS adds server flags, e.g. "--log-store boltdb".
		args = append(args, strings.Fields(os.Getenv("COLONY_BENCH_FLAGS"))...)
		// COLONY_BENCH_PPROF=1 serves each member's profiles (the address
		// is in the benchmark's log), to profile it under the load.
		if os.Getenv("COLONY_BENCH_PPROF") != "" {
			addr := fmt.Sprintf("127.0.0.1:%d", ports[2*n+i])
			args = append(args, "--metrics-addr", addr, "--pprof")
			fmt.Fprintf(os.Stderr, "colony %s: profiles at http://%s/debug/pprof/\n", c.ids[i], addr)
		}
		p, err := startProc(tb, "colony "+c.ids[i], filepath.Join(dir, c.ids[i]+".log"), bin, args...)
		if err != nil {
			return c, err
		}
		c.procs = append(c.procs, p)
	}
	tb.Cleanup(func() { stopAll(c.procs, 5*time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.waitReady(tb, ctx); err != nil {
		return c, err
	}
	return c, nil
}

// waitReady polls Status on every member until each names the same leader
// with a gRPC address and reports every member without error.
func (c *colonyCluster) waitReady(tb testing.TB, ctx context.Context) error {
	conns := make([]*grpc.ClientConn, len(c.grpc))
	for i, a := range c.grpc {
		conns[i] = c.dial(tb, a)
	}
	var last error
	for {
		if err := describeExit(c.procs); err != nil {
			return err
		}
		leader, err := c.readyOnce(ctx, conns)
		if err == nil {
			c.leader = leader
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *colonyCluster) readyOnce(ctx context.Context, conns []*grpc.ClientConn) (string, error) {
	leader := ""
	for i, cc := range conns {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := colonyv1.NewClusterClient(cc).Status(sctx, &colonyv1.StatusRequest{})
		cancel()
		if err != nil {
			return "", fmt.Errorf("%s: %w", c.ids[i], err)
		}
		if st.LeaderGrpcAddress == "" {
			return "", fmt.Errorf("%s: no leader address yet", c.ids[i])
		}
		if leader != "" && leader != st.LeaderGrpcAddress {
			return "", errors.New("members disagree on the leader")
		}
		leader = st.LeaderGrpcAddress
		if len(st.Members) != len(c.ids) {
			return "", fmt.Errorf("%s: %d members", c.ids[i], len(st.Members))
		}
		for _, m := range st.Members {
			if m.Error != "" || m.State == "" {
				return "", fmt.Errorf("%s: member %s: %q", c.ids[i], m.Id, m.Error)
			}
		}
	}
	return leader, nil
}

// dial opens a gRPC connection of its own to addr (with the admin
// certificate on a TLS cluster), closed in tb's cleanup.
func (c *colonyCluster) dial(tb testing.TB, addr string) *grpc.ClientConn {
	tb.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(c.pki.Creds()))
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc
}

// addrs returns the gRPC addresses clients use: every member, or only the
// leader when leaderOnly.
func (c *colonyCluster) addrs(leaderOnly bool) []string {
	if leaderOnly {
		return []string{c.leader}
	}
	return c.grpc
}
