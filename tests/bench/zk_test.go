package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// zkCluster is a ZooKeeper ensemble (Debian zookeeper 3.8 on the machine's
// Java), started as /work/shared/peers/zk-cluster.sh does: forceSync on (the
// default), on 127.0.0.1, each member with its own data dir.
type zkCluster struct {
	endpoints []string
	procs     []*proc
	leader    string
}

const zkClasspath = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"

func zkJava(tb testing.TB) string {
	tb.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		tb.Skip("java is not installed (apt-get install -y zookeeper); skipping the ZooKeeper comparison")
	}
	for _, jar := range strings.Split(zkClasspath, ":") {
		if _, err := os.Stat(jar); err != nil {
			tb.Skipf("ZooKeeper is not installed (%s missing; apt-get install -y zookeeper); skipping the ZooKeeper comparison", jar)
		}
	}
	return java
}

func startZK(tb testing.TB, n int) *zkCluster {
	tb.Helper()
	java := zkJava(tb)
	base := tb.TempDir()
	return retryStart(tb, "zookeeper ensemble", func(attempt int) (*zkCluster, error) {
		ps, err := freePorts(3 * n)
		if err != nil {
			return nil, err
		}
		c, err := launchZK(tb, java, filepath.Join(base, fmt.Sprintf("try%d", attempt)), ps[:n], ps[n:2*n], ps[2*n:])
		if err != nil && c != nil {
			stopAll(c.procs, 5*time.Second)
		}
		return c, err
	})
}

func launchZK(tb testing.TB, java, dir string, client, quorum, elect []int) (*zkCluster, error) {
	n := len(client)
	c := &zkCluster{}
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("zk%d", i+1))
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o755); err != nil {
			return c, err
		}
		if err := os.WriteFile(filepath.Join(d, "data", "myid"), fmt.Appendf(nil, "%d\n", i+1), 0o644); err != nil {
			return c, err
		}
		var cfg strings.Builder
		fmt.Fprintf(&cfg, "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n",
			filepath.Join(d, "data"), client[i])
		cfg.WriteString("maxClientCnxns=0\n4lw.commands.whitelist=srvr,stat,mntr,ruok\nadmin.enableServer=false\n")
		for j := range n {
			fmt.Fprintf(&cfg, "server.%d=127.0.0.1:%d:%d\n", j+1, quorum[j], elect[j])
		}
		if err := os.WriteFile(filepath.Join(d, "zoo.cfg"), []byte(cfg.String()), 0o644); err != nil {
			return c, err
		}
		c.endpoints = append(c.endpoints, fmt.Sprintf("127.0.0.1:%d", client[i]))
	}
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("zk%d", i+1))
		p, err := startProc(tb, fmt.Sprintf("zookeeper %d", i+1), filepath.Join(d, "server.log"), java,
			"-Xmx512m", "-cp", zkClasspath,
			"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
			"-Dzookeeper.log.dir="+d,
			"org.apache.zookeeper.server.quorum.QuorumPeerMain", filepath.Join(d, "zoo.cfg"))
		if err != nil {
			return c, err
		}
		c.procs = append(c.procs, p)
	}
	tb.Cleanup(func() { stopAll(c.procs, 5*time.Second) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := describeExit(c.procs); err != nil {
			return c, err
		}
		leader, modes := "", 0
		for _, ep := range c.endpoints {
			m := zkMode(ep)
			if m == "leader" || m == "standalone" { // one server runs standalone
				leader = ep
			}
			if m == "leader" || m == "follower" || m == "standalone" {
				modes++
			}
		}
		if modes == n && leader != "" {
			c.leader = leader
			return c, nil
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("zookeeper not ready after 60s (%d of %d members serving)", modes, n)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

var zkModeRE = regexp.MustCompile(`Mode: (\w+)`)

// zkMode asks a member its mode with the srvr four-letter word.
func zkMode(ep string) string {
	conn, err := net.DialTimeout("tcp", ep, time.Second)
	if err != nil {
		return ""
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("srvr")); err != nil {
		return ""
	}
	b, _ := io.ReadAll(conn)
	if m := zkModeRE.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// newZKConn opens a session of its own to one server, closed in tb's cleanup.
func newZKConn(tb testing.TB, ep string) *zk.Conn {
	tb.Helper()
	conn, events, err := zk.Connect([]string{ep}, 10*time.Second, zk.WithLogger(discardLogger{}), zk.WithLogInfo(false))
	if err != nil {
		tb.Fatalf("zk connect %s: %v", ep, err)
	}
	go func() {
		for range events {
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for conn.State() != zk.StateHasSession {
		if ctx.Err() != nil {
			conn.Close()
			tb.Fatalf("zk %s: no session after 15s (state %v)", ep, conn.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Cleanup(conn.Close)
	return conn
}

func (c *zkCluster) addrs(leaderOnly bool) []string {
	if leaderOnly {
		return []string{c.leader}
	}
	return c.endpoints
}
